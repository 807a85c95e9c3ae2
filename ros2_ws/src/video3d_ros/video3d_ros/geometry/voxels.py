"""Occupied voxels of a frame as packed int64 keys.

A world point p (metres) falls in voxel ``round(p / voxel_size_m)`` per axis —
the rounding the reference uses for frame selection. The three signed indices
are packed into one int64 (21 bits each, offset by 2**20), so a set of voxels
is a sorted int64 array and set algebra is ``np.unique``/``np.isin``/sparse
incidence — no Python tuples. Indices must lie in [−2**20, 2**20), i.e.
±104 km at 0.1 m.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_bool_mask, check_points, check_positive

KEY_BITS = 21  # bits per axis in a packed key
KEY_OFFSET = 1 << (KEY_BITS - 1)  # added to signed indices so they are non-negative
_KEY_MASK = (1 << KEY_BITS) - 1


def pack_voxel_indices(ijk: np.ndarray) -> np.ndarray:
    """(N, 3) integer voxel indices → (N,) int64 keys (same order)."""
    ijk = np.asarray(ijk)
    if ijk.ndim != 2 or ijk.shape[1] != 3 or ijk.dtype.kind not in "iu":
        raise ValueError(f"ijk must be an (N, 3) integer array, got {ijk.shape} {ijk.dtype}")
    shifted = ijk.astype(np.int64) + KEY_OFFSET
    if shifted.size and (shifted.min() < 0 or shifted.max() > _KEY_MASK):
        raise ValueError(
            f"voxel indices must lie in [{-KEY_OFFSET}, {KEY_OFFSET}); got range "
            f"[{ijk.min()}, {ijk.max()}] (points too far for this voxel size)"
        )
    return (shifted[:, 0] << (2 * KEY_BITS)) | (shifted[:, 1] << KEY_BITS) | shifted[:, 2]


def unpack_voxel_keys(keys: np.ndarray) -> np.ndarray:
    """(N,) int64 keys → (N, 3) int64 signed voxel indices (inverse of packing)."""
    keys = np.asarray(keys)
    if keys.ndim != 1 or keys.dtype != np.int64:
        raise ValueError(f"keys must be a 1-D int64 array, got {keys.shape} {keys.dtype}")
    out = np.empty((keys.size, 3), dtype=np.int64)
    out[:, 0] = (keys >> (2 * KEY_BITS)) & _KEY_MASK
    out[:, 1] = (keys >> KEY_BITS) & _KEY_MASK
    out[:, 2] = keys & _KEY_MASK
    return out - KEY_OFFSET


def voxel_indices(xyz_m: np.ndarray, voxel_size_m: float) -> np.ndarray:
    """(..., 3) metres → (..., 3) int64 voxel indices ``round(xyz / voxel_size_m)``."""
    check_positive(voxel_size_m, "voxel_size_m")
    return np.rint(np.asarray(xyz_m) / voxel_size_m).astype(np.int64)


def voxel_keys(
    xyz_m: np.ndarray,
    valid: np.ndarray | None = None,
    voxel_size_m: float = 0.1,
    pixel_stride: int = 1,
) -> np.ndarray:
    """Unique occupied voxels of a point set or point map.

    Args:
        xyz_m: (N, 3) points or (H, W, 3) point map, metres.
        valid: (N,) or (H, W) bool, or None (all valid). Invalid and
            non-finite points are skipped.
        voxel_size_m: voxel edge length, metres.
        pixel_stride: for a point map, keep every ``pixel_stride``-th row and
            column (1 = all pixels).

    Returns:
        (M,) int64 sorted unique packed keys.
    """
    xyz = check_points(xyz_m, "xyz_m")
    if xyz.ndim not in (2, 3):
        raise ValueError(f"xyz_m must have shape (N, 3) or (H, W, 3), got {xyz.shape}")
    if int(pixel_stride) != pixel_stride or pixel_stride < 1:
        raise ValueError(f"pixel_stride must be an integer >= 1, got {pixel_stride}")
    if pixel_stride != 1 and xyz.ndim != 3:
        raise ValueError("pixel_stride > 1 needs an (H, W, 3) point map for xyz_m")
    mask = None if valid is None else check_bool_mask(valid, "valid", xyz.shape[:-1])
    if xyz.ndim == 3 and pixel_stride > 1:
        xyz = xyz[::pixel_stride, ::pixel_stride]
        mask = None if mask is None else mask[::pixel_stride, ::pixel_stride]
    pts = xyz[mask] if mask is not None else xyz.reshape(-1, 3)
    finite = np.isfinite(pts).all(axis=1)
    if not finite.all():
        pts = pts[finite]
    return np.unique(pack_voxel_indices(voxel_indices(pts, voxel_size_m)))
