"""Pictures of a query's result (no ROS): top-down coverage + boxes, and the best keyframe.

Used by the demo and the command-line tools. matplotlib with the Agg backend.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .geometry import Box3D  # noqa: E402
from .keyframes import Frame  # noqa: E402

_EDGES = ((0, 1), (0, 2), (1, 3), (2, 3), (4, 5), (4, 6), (5, 7), (6, 7), (0, 4), (1, 5), (2, 6), (3, 7))


def box_corners_m(box: Box3D) -> np.ndarray:
    """(8, 3) corners; index bits (x, y, z) = (i >> 2, i >> 1, i) & 1 pick min or max."""
    lo, hi = box.min_m, box.max_m
    return np.array([[(hi if (i >> 2) & 1 else lo)[0], (hi if (i >> 1) & 1 else lo)[1],
                      (hi if i & 1 else lo)[2]] for i in range(8)])


def project_points_px(points_m: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) → pixel coordinates (N, 2) and depth in front of the camera (N,), metres."""
    T_cam_world = np.linalg.inv(T_world_cam)
    cam = points_m @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    z = cam[:, 2]
    uv = (cam[:, :2] / np.maximum(z, 1e-6)[:, None]) * np.diag(K)[:2] + K[:2, 2]
    return uv, z


def box_visibility(box: Box3D, frame: Frame, K: np.ndarray) -> float:
    """Share of a frame's valid pixels whose world point lies in ``box`` (how well the box is seen)."""
    lo, hi = box.min_m, box.max_m
    xyz, valid = frame.xyz_m, frame.valid
    inside = np.all((xyz >= lo) & (xyz <= hi), axis=-1) & valid
    return float(inside.mean())


def best_view(box: Box3D, frames: Sequence[Frame], K: np.ndarray) -> int | None:
    """Index of the frame that sees the most of ``box`` (None when no frame sees it)."""
    scores = [box_visibility(box, f, K) for f in frames]
    if not scores or max(scores) <= 0:
        return None
    return int(np.argmax(scores))


def _save(fig, path: Path) -> None:
    """Write atomically: a temp file next to the target, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def plot_answer(path: Path, points_m: np.ndarray, keyframes: Sequence[Frame], K: np.ndarray,
                boxes: Sequence[Box3D], truth: Box3D | None = None, title: str = "",
                labels: Sequence[str] | None = None) -> int | None:
    """Left: top-down view of ``points_m`` with keyframe cameras, ``boxes`` (first = best, green)
    and ``truth`` (blue, dashed). Right: the keyframe that sees boxes[0] (or truth) best, with the
    boxes projected. Returns the index of that keyframe (None when none sees it).

    Args:
        points_m: (N, 3) world points (e.g. covered voxel centres), z up.
        keyframes: frames with ``rgb``, ``xyz_m``, ``valid``, ``T_world_cam``; K: their 3x3 intrinsics
            (of the rgb image).
    """
    fig, (ax, ax_img) = plt.subplots(1, 2, figsize=(13, 6))
    if len(points_m):
        sel = points_m[np.linspace(0, len(points_m) - 1, min(len(points_m), 40000)).astype(int)]
        ax.scatter(sel[:, 0], sel[:, 1], s=1, c=sel[:, 2], cmap="viridis", alpha=0.5, lw=0)
    for kf in keyframes:
        eye, fwd = kf.T_world_cam[:3, 3], kf.T_world_cam[:3, 2]
        ax.plot(*eye[:2], "o", ms=3, c="tab:red")
        ax.arrow(eye[0], eye[1], 0.3 * fwd[0], 0.3 * fwd[1], color="tab:red", width=0.005, head_width=0.06)
    for rank, box in reversed(list(enumerate(boxes))):
        colour = "tab:green" if rank == 0 else "tab:orange"
        ax.add_patch(Rectangle(tuple(box.min_m[:2]), *box.size_m[:2], fill=False, ec=colour,
                               lw=2.5 if rank == 0 else 1.2))
        name = labels[rank] if labels and labels[rank] else f"#{rank + 1}"
        ax.text(box.min_m[0], box.max_m[1] + 0.05, name, color=colour, fontsize=8)
    if truth is not None:
        ax.add_patch(Rectangle(tuple(truth.min_m[:2]), *truth.size_m[:2], fill=False, ec="tab:blue",
                               ls="--", lw=2, label="truth"))
        ax.legend(loc="upper right", fontsize=8)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(title or "coverage, keyframes and grounded boxes", fontsize=9)
    focus = boxes[0] if boxes else truth
    index = best_view(focus, keyframes, K) if focus is not None else None
    if index is not None:
        kf = keyframes[index]
        ax_img.imshow(kf.rgb)
        h, w = kf.rgb.shape[:2]
        for box, colour in [(b, "tab:green" if i == 0 else "tab:orange") for i, b in enumerate(boxes)] + (
                [(truth, "tab:blue")] if truth is not None else []):
            uv, z = project_points_px(box_corners_m(box), K, kf.T_world_cam)
            for a, b in _EDGES:
                if z[a] > 0.05 and z[b] > 0.05:
                    ax_img.plot(uv[[a, b], 0], uv[[a, b], 1], c=colour, lw=1.5)
        ax_img.set_xlim(0, w)
        ax_img.set_ylim(h, 0)
        ax_img.set_title(f"keyframe t={kf.stamp_s:.2f}s (sees the box best)", fontsize=9)
    else:
        ax_img.text(0.5, 0.5, "no keyframe sees the box", ha="center", va="center")
    ax_img.axis("off")
    fig.tight_layout()
    _save(fig, path)
    return index
