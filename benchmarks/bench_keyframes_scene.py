"""Analytic RGB-D scans of a box-shaped room with a few boxes (numpy only).

Used by the keyframe benchmarks and tests. Depth is exact: every pixel's ray is
intersected with the room's inner walls and with axis-aligned boxes (slab
method); the nearest hit gives z in the camera frame. The camera walks a loop
through the room while sweeping its heading, like a robot looking around.

    scan = make_scan(n_frames=200, height_px=120, width_px=160)
    scan.depth_m[i]  # (H, W) float32 metres, NaN = dropout
    write_scannet_layout(scan, "some/dir")  # color/ depth/ pose/ intrinsic/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOM_MIN_M = np.array([0.0, 0.0, 0.0])
ROOM_MAX_M = np.array([7.0, 5.5, 2.8])
# (min corner, max corner) of furniture-like boxes, metres
BOXES_M = (
    (np.array([0.4, 0.4, 0.0]), np.array([1.6, 1.2, 0.8])),
    (np.array([5.2, 0.5, 0.0]), np.array([6.6, 1.4, 1.9])),
    (np.array([2.8, 2.3, 0.0]), np.array([4.0, 3.2, 0.75])),
    (np.array([0.3, 4.2, 0.0]), np.array([1.1, 5.2, 1.2])),
    (np.array([5.6, 4.3, 0.0]), np.array([6.7, 5.3, 0.5])),
)


@dataclass(frozen=True)
class SyntheticScan:
    """A rendered scan: (N, H, W) depth_m, (N, H, W, 3) rgb, (N, 4, 4) T_world_cam, (3, 3) K."""

    depth_m: np.ndarray
    rgb: np.ndarray
    T_world_cam: np.ndarray
    K: np.ndarray
    stamps_s: np.ndarray


def intrinsics(height_px: int, width_px: int) -> np.ndarray:
    """Kinect-like intrinsics (ScanNet depth: fx ≈ 577 at 640×480), scaled to the size."""
    f = 577.6 * width_px / 640.0
    return np.array([[f, 0.0, (width_px - 1) / 2], [0.0, f, (height_px - 1) / 2], [0.0, 0.0, 1.0]])


def look_pose(position_m: np.ndarray, yaw_rad: float, pitch_rad: float) -> np.ndarray:
    """Camera-to-world pose (optical frame: x right, y down, z forward; world z up)."""
    f = np.array([np.cos(yaw_rad) * np.cos(pitch_rad), np.sin(yaw_rad) * np.cos(pitch_rad), np.sin(pitch_rad)])
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    T = np.eye(4)
    T[:3, :3] = np.stack([r, d, f], axis=1)
    T[:3, 3] = position_m
    return T


def trajectory(n_frames: int) -> np.ndarray:
    """(N, 4, 4) poses: one loop around the room centre with a sweeping heading."""
    s = np.linspace(0.0, 2 * np.pi, n_frames, endpoint=False)
    centre = (ROOM_MIN_M + ROOM_MAX_M) / 2
    poses = []
    for a in s:
        pos = np.array([centre[0] + 1.9 * np.cos(a), centre[1] + 1.2 * np.sin(a), 1.4 + 0.15 * np.sin(3 * a)])
        yaw = a + np.pi / 2 + 1.3 * np.sin(4 * a)  # mostly along the path, looking around
        pitch = -0.35 + 0.2 * np.sin(5 * a)
        poses.append(look_pose(pos, yaw, pitch))
    return np.stack(poses)


def render_depth(T_world_cam: np.ndarray, K: np.ndarray, height_px: int, width_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact depth (H, W) float32 metres and surface id (H, W) int (0..5 walls, 6.. boxes)."""
    v, u = np.mgrid[0:height_px, 0:width_px].astype(np.float64)
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d = rays_cam @ T_world_cam[:3, :3].T  # (H, W, 3) world direction with camera z = 1
    o = T_world_cam[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        # inside the room: exit distance = min over axes of the far wall
        t_walls = np.where(d > 0, (ROOM_MAX_M - o) * inv, (ROOM_MIN_M - o) * inv)
        t_walls = np.where(np.isfinite(t_walls), t_walls, np.inf)
        axis = np.argmin(t_walls, axis=-1)
        t = np.take_along_axis(t_walls, axis[..., None], -1)[..., 0]
        surface = axis * 2 + (np.take_along_axis(d, axis[..., None], -1)[..., 0] > 0)
        for b, (lo, hi) in enumerate(BOXES_M):
            t0, t1 = (lo - o) * inv, (hi - o) * inv
            t_near = np.nanmax(np.minimum(t0, t1), axis=-1)
            t_far = np.nanmin(np.maximum(t0, t1), axis=-1)
            hit = (t_near <= t_far) & (t_near > 0) & (t_near < t)
            t = np.where(hit, t_near, t)
            surface = np.where(hit, 6 + b, surface)
    return t.astype(np.float32), surface  # t along a ray with camera z = 1 is the depth


_COLOURS = np.random.default_rng(7).integers(40, 230, size=(6 + len(BOXES_M), 3))


def make_scan(
    n_frames: int = 300,
    height_px: int = 480,
    width_px: int = 640,
    dropout: float = 0.02,
    seed: int = 0,
    fps: float = 3.0,
) -> SyntheticScan:
    """Render a scan; ``dropout`` of the pixels get NaN depth (sensor holes)."""
    rng = np.random.default_rng(seed)
    K = intrinsics(height_px, width_px)
    poses = trajectory(n_frames)
    depth = np.empty((n_frames, height_px, width_px), np.float32)
    rgb = np.empty((n_frames, height_px, width_px, 3), np.uint8)
    for i, T in enumerate(poses):
        z, surf = render_depth(T, K, height_px, width_px)
        z[rng.random(z.shape) < dropout] = np.nan
        depth[i] = z
        shade = np.clip(1.2 - 0.12 * np.nan_to_num(z, nan=5.0), 0.3, 1.0)[..., None]
        rgb[i] = (_COLOURS[surf] * shade).astype(np.uint8)
    return SyntheticScan(depth, rgb, poses, K, np.arange(n_frames) / fps)


def write_scannet_layout(scan: SyntheticScan, root: str | Path) -> Path:
    """Write color/NNNNN.jpg, depth/NNNNN.png (uint16 mm), pose/NNNNN.txt, intrinsic/."""
    from PIL import Image

    root = Path(root)
    for sub in ("color", "depth", "pose", "intrinsic"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    K4 = np.eye(4)
    K4[:3, :3] = scan.K
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", K4, fmt="%.6f")
    for i in range(len(scan.depth_m)):
        mm = np.nan_to_num(scan.depth_m[i] * 1000.0, nan=0.0).round().astype(np.uint16)
        Image.fromarray(mm).save(root / "depth" / f"{i:05d}.png")
        Image.fromarray(scan.rgb[i]).save(root / "color" / f"{i:05d}.jpg", quality=90)
        np.savetxt(root / "pose" / f"{i:05d}.txt", scan.T_world_cam[i], fmt="%.8f")
    return root
