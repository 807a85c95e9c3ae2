"""Figures and atomic output files of query results: CLI and demo (no ROS).

:func:`grounding_figure` draws (left) the keyframes' points seen from above
with the grounded boxes' footprints and the camera positions, and (right) the
keyframe that sees the best box with the most points, with the box's edges
projected into it. Files are written to a temporary name in the target
folder and renamed, so a failure never leaves a half-written file.
"""

from __future__ import annotations

import io

import numpy as np

from .geometry import Box3D, points_in_box_mask
from .keyframes import BufferSnapshot, Frame
from .query import GroundedObject

# Box corner index pairs of the 12 edges; corners are ordered by (x, y, z) bits.
_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def box_corners_m(box: Box3D) -> np.ndarray:
    """(8, 3) corners; corner k has max x if bit 0 of k is set, max y for bit 1, max z for bit 2."""
    lo, hi = box.min_m, box.max_m
    return np.array([[hi[0] if k & 1 else lo[0], hi[1] if k & 2 else lo[1], hi[2] if k & 4 else lo[2]]
                     for k in range(8)])


def best_view(snapshot: BufferSnapshot, box: Box3D, pixel_stride: int = 2) -> Frame | None:
    """The keyframe with the most valid points inside ``box`` (None when no keyframe sees it)."""
    best, count = None, 0
    for kf in snapshot.keyframes:
        xyz = kf.xyz_m[::pixel_stride, ::pixel_stride]
        valid = kf.valid[::pixel_stride, ::pixel_stride]
        n = int(points_in_box_mask(xyz[valid], box).sum())
        if n > count:
            best, count = kf, n
    return best


def project_edges_px(box: Box3D, K: np.ndarray, T_world_cam: np.ndarray,
                     near_m: float = 0.05) -> list[tuple[np.ndarray, np.ndarray]]:
    """Box edges in pixels, each as two (u, v) ends; edges are clipped at ``near_m`` in front of the camera.

    Args:
        K: (3, 3) intrinsics of the image, pixels. T_world_cam: (4, 4) camera-to-world, metres.
    """
    T_cam_world = np.linalg.inv(T_world_cam)
    c = box_corners_m(box) @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]  # (8, 3) camera frame
    out = []
    for a, b in _EDGES:
        pa, pb = c[a], c[b]
        if pa[2] < near_m and pb[2] < near_m:
            continue
        if pa[2] < near_m or pb[2] < near_m:  # clip the behind-camera end to the near plane
            t = (near_m - pa[2]) / (pb[2] - pa[2])
            q = pa + t * (pb - pa)
            pa, pb = (q, pb) if pa[2] < near_m else (pa, q)
        ends = []
        for p in (pa, pb):
            uvw = K @ p
            ends.append(uvw[:2] / uvw[2])
        out.append((ends[0], ends[1]))
    return out


def grounding_figure(snapshot: BufferSnapshot, objects: tuple[GroundedObject, ...], K_color: dict[int, np.ndarray],
                     title: str, max_points: int = 60000, seed: int = 0, truth: Box3D | None = None) -> bytes:
    """PNG bytes: top-down points + boxes (best in red), and the best box projected into its best keyframe.

    ``truth`` (optional, e.g. a generated scene's box) is drawn green and dashed in both panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    kfs = snapshot.keyframes
    xyz = np.concatenate([kf.xyz_m[kf.valid] for kf in kfs]) if kfs else np.zeros((0, 3))
    same_size = all(kf.rgb.shape[:2] == kf.valid.shape for kf in kfs)
    rgb = np.concatenate([kf.rgb[kf.valid] for kf in kfs]) if kfs and same_size else None
    if len(xyz) > max_points:
        keep = np.random.default_rng(seed).choice(len(xyz), max_points, replace=False)
        xyz = xyz[keep]
        rgb = None if rgb is None else rgb[keep]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), dpi=100)
    ax = axes[0]
    colours = "0.6" if rgb is None else rgb / 255.0
    ax.scatter(xyz[:, 0], xyz[:, 1], s=0.3, c=colours, linewidths=0)
    cams = np.array([kf.T_world_cam[:3, 3] for kf in snapshot.keyframes]).reshape(-1, 3)
    ax.plot(cams[:, 0], cams[:, 1], "k.", ms=3, label="keyframe cameras")
    for rank, o in reversed(list(enumerate(objects))):
        lo, size = o.box.min_m, o.box.size_m
        colour = "red" if rank == 0 else "tab:blue"
        ax.add_patch(Rectangle((lo[0], lo[1]), size[0], size[1], fill=False, ec=colour, lw=2 if rank == 0 else 1))
        ax.annotate(f"{o.score:.2f}", (lo[0], lo[1] + size[1]), color=colour, fontsize=8)
    if truth is not None:
        ax.add_patch(Rectangle(tuple(truth.min_m[:2]), truth.size_m[0], truth.size_m[1], fill=False,
                               ec="tab:green", ls="--", lw=2, label="truth"))
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title("top-down view (world frame)")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    focus = objects[0].box if objects else truth
    view = best_view(snapshot, focus) if focus is not None else None
    if view is not None:
        ax.imshow(view.rgb)
        K = K_color.get(view.frame_id)
        drawn = ([(objects[0].box, "red", "-")] if objects else []) + (
            [(truth, "tab:green", "--")] if truth is not None else [])
        for box, colour, style in drawn if K is not None else []:
            for a, b in project_edges_px(box, K, view.T_world_cam):
                ax.plot([a[0], b[0]], [a[1], b[1]], color=colour, ls=style, lw=1.5)
        h, w = view.rgb.shape[:2]
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"keyframe {view.frame_id} (t = {view.stamp_s:.2f} s)")
    else:
        ax.text(0.5, 0.5, "no keyframe sees the box", ha="center", va="center")
    ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
