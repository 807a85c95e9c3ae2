"""Depth image → per-pixel world coordinates (the paper's unprojection).

For pixel (u, v) (u = column, v = row) with depth z in metres the camera point
is ((u − cx)·z/fx, (v − cy)·z/fy, z) and the world point is
``T_align @ T_world_cam @ (x, y, z, 1)`` — exactly the formula of the paper and
its released code, where ``T_align`` is ScanNet's per-scene axis-alignment
matrix (identity when absent).

Invalid pixels (uint16 depth 0; float depth NaN, ±inf or ≤ 0; depth outside
[min_depth_m, max_depth_m]) are marked in ``PointMap.valid``. Their ``xyz_m``
holds what the formula gives for z = 0, i.e. the camera centre in world
coordinates: that is what the reference computes for a zero depth pixel (it
unprojects every pixel, invalid ones included), so averaging with invalid
pixels included (``patch_coords_m(..., ignore_invalid=False)``) reproduces the
reference bit for bit in intent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import as_intrinsics_3x3, as_matrix, check_positive, check_rigid_pose


@dataclass(frozen=True)
class PointMap:
    """Per-pixel world coordinates of one depth image.

    Attributes:
        xyz_m: (H, W, 3) float32, world coordinates in metres.
        valid: (H, W) bool, True where the depth was usable.
    """

    xyz_m: np.ndarray
    valid: np.ndarray

    def __post_init__(self) -> None:
        if self.xyz_m.ndim != 3 or self.xyz_m.shape[-1] != 3:
            raise ValueError(f"xyz_m must have shape (H, W, 3), got {self.xyz_m.shape}")
        if self.valid.shape != self.xyz_m.shape[:2]:
            raise ValueError(
                f"valid must have shape {self.xyz_m.shape[:2]} (as xyz_m), got {self.valid.shape}"
            )


def depth_to_metres(
    depth: np.ndarray,
    *,
    depth_scale_m: float = 0.001,
    min_depth_m: float = 0.1,
    max_depth_m: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Convert a depth image to metres and its validity mask.

    Args:
        depth: (H, W) uint16 (units of ``depth_scale_m``; 0 = invalid) or float
            (metres; NaN, ±inf and ≤ 0 are invalid).
        depth_scale_m: metres per uint16 unit (ScanNet: 0.001).
        min_depth_m, max_depth_m: keep depths in [min, max].

    Returns:
        depth_m: (H, W) float32 with 0 at invalid pixels; valid: (H, W) bool.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
    check_positive(depth_scale_m, "depth_scale_m")
    if not (0.0 <= min_depth_m < max_depth_m):
        raise ValueError(
            f"need 0 <= min_depth_m < max_depth_m, got min_depth_m={min_depth_m}, "
            f"max_depth_m={max_depth_m}"
        )
    if depth.dtype == np.uint16:
        depth_m = depth.astype(np.float32) * np.float32(depth_scale_m)
        valid = depth > 0
    elif depth.dtype in (np.float32, np.float64):
        depth_m = depth.astype(np.float32, copy=True)
        valid = np.isfinite(depth_m) & (depth_m > 0)
    else:
        raise TypeError(f"depth must be uint16 (scaled) or float32/float64 (metres), got {depth.dtype}")
    valid &= (depth_m >= min_depth_m) & (depth_m <= max_depth_m)
    depth_m[~valid] = 0.0
    return depth_m, valid


def depth_to_world_m(
    depth: np.ndarray,
    K: np.ndarray,
    T_world_cam: np.ndarray,
    *,
    T_align: np.ndarray | None = None,
    depth_scale_m: float = 0.001,
    min_depth_m: float = 0.1,
    max_depth_m: float = 10.0,
) -> PointMap:
    """Unproject a depth image to world coordinates.

    Args:
        depth: (H, W) uint16 (× ``depth_scale_m`` → metres, 0 invalid) or float
            metres (NaN/inf/≤0 invalid).
        K: (3, 3) or ScanNet (4, 4) intrinsics of the depth camera, pixels.
        T_world_cam: (4, 4) camera-to-world pose (optical frame: x right,
            y down, z forward), metres.
        T_align: optional (4, 4) axis-alignment matrix applied on the left.
        depth_scale_m, min_depth_m, max_depth_m: see :func:`depth_to_metres`.

    Returns:
        PointMap with xyz_m (H, W, 3) float32 and valid (H, W) bool.
    """
    K3 = as_intrinsics_3x3(K, "K")
    T = as_matrix(T_world_cam, "T_world_cam", (4, 4))
    check_rigid_pose(T, "T_world_cam")
    if T_align is not None:
        A = as_matrix(T_align, "T_align", (4, 4))
        check_rigid_pose(A, "T_align")
        T = A @ T
    depth_m, valid = depth_to_metres(
        depth, depth_scale_m=depth_scale_m, min_depth_m=min_depth_m, max_depth_m=max_depth_m
    )
    H, W = depth_m.shape
    fx, fy, cx, cy = K3[0, 0], K3[1, 1], K3[0, 2], K3[1, 2]
    x_per_z = ((np.arange(W, dtype=np.float64) - cx) / fx).astype(np.float32)  # (W,)
    y_per_z = ((np.arange(H, dtype=np.float64) - cy) / fy).astype(np.float32)  # (H,)
    R = T[:3, :3].astype(np.float32)
    t = T[:3, 3].astype(np.float32)
    # world_i = z · (R_i0·x/z + R_i1·y/z + R_i2) + t_i: the bracket is an outer sum of a
    # row vector and a column vector, so each axis costs three (H, W) operations.
    xyz = np.empty((H, W, 3), dtype=np.float32)
    for i in range(3):
        ray = (R[i, 0] * x_per_z)[None, :] + (R[i, 1] * y_per_z + R[i, 2])[:, None]  # (H, W)
        ray *= depth_m
        ray += t[i]
        xyz[..., i] = ray
    return PointMap(xyz_m=xyz, valid=valid)
