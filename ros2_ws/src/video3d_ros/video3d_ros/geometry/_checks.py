"""Argument checks shared by the geometry and keyframe modules.

Every check raises ``ValueError``/``TypeError`` with the argument's name and
what mismatched, so a bad call is diagnosed at the boundary, not three
functions deeper.
"""

from __future__ import annotations

import numpy as np


def as_matrix(value: object, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``value`` as a float64 array of exactly ``shape`` with finite entries."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got non-finite entries: {arr.tolist()}")
    return arr


def as_intrinsics_3x3(K: object, name: str = "K") -> np.ndarray:
    """Accept a 3×3 intrinsic matrix or ScanNet's 4×4 one; return the 3×3 part.

    Checks fx, fy > 0 (a zero focal length would divide by zero).
    """
    arr = np.asarray(K)
    if arr.shape not in ((3, 3), (4, 4)):
        raise ValueError(f"{name} must be 3x3 or 4x4, got shape {arr.shape}")
    K3 = as_matrix(arr, name, arr.shape)[:3, :3]
    if K3[0, 0] <= 0 or K3[1, 1] <= 0:
        raise ValueError(f"{name} must have positive fx, fy, got fx={K3[0, 0]}, fy={K3[1, 1]}")
    return K3


def check_rigid_pose(T: np.ndarray, name: str, atol: float = 1e-3) -> None:
    """Raise unless ``T`` (4×4) has last row (0, 0, 0, 1)."""
    if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0), atol=atol):
        raise ValueError(f"{name} must have last row (0, 0, 0, 1), got {T[3].tolist()}")


def check_bool_mask(mask: object, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``mask`` as a bool array of ``shape`` (dtype must already be bool)."""
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(f"{name} must have dtype bool, got {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr


def check_points(xyz: object, name: str) -> np.ndarray:
    """Return ``xyz`` as a float array whose last axis has size 3."""
    arr = np.asarray(xyz)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array, got dtype {arr.dtype}")
    if arr.ndim < 2 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., 3), got {arr.shape}")
    return arr


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as float, raising unless it is finite and > 0."""
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return v
