"""3D position encodings: pure sin/cos function, an MLP variant, and coordinate prep.

The encoding of a token's world coordinate is *added* to the pooled visual
token; the same encoding of a box centre is added to object features and to the
``<coord>`` token embedding. ``K`` points per token (1, or 2 for min/max) are
encoded independently and concatenated.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from video3d_ros.geometry import discretize_coords

from .config import CoordMode, PositionEncodingConfig, PositionEncodingKind


def sincos_3d(coords: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sinusoidal encoding of 3D points.

    Args:
        coords: (..., K, 3) points (voxel indices or metres), K ≥ 1.
        dim: output width D.
        temperature: frequency base.
    Returns:
        (..., D): for every point, F = D // (3K) features per axis with
        frequencies temperature^(2·⌊i/2⌋/F), sin at even and cos at odd
        positions (when F is odd a zero is appended before the split and the
        last value dropped), axes x, y, z concatenated, points concatenated,
        zero-padded to D.
    """
    *lead, k, three = coords.shape
    if three != 3:
        raise ValueError(f"coords must have shape (..., K, 3), got {tuple(coords.shape)}")
    f = dim // (3 * k)
    if f == 0:
        raise ValueError(f"dim {dim} is too small for {k} point(s) × 3 axes")
    x = coords.to(torch.float32)
    i = torch.arange(f, dtype=torch.float32, device=coords.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / f)  # (F,)
    pos = x[..., None] / freq  # (..., K, 3, F)
    if f % 2:
        pos = torch.cat([pos, torch.zeros_like(pos[..., :1])], dim=-1)  # (..., K, 3, F+1)
    enc = torch.stack([pos[..., 0::2].sin(), pos[..., 1::2].cos()], dim=-1).flatten(-2)
    enc = enc[..., :f].flatten(-3)  # (..., K·3·F)
    out = torch.zeros(*lead, dim, dtype=torch.float32, device=coords.device)
    out[..., : enc.shape[-1]] = enc
    return out


class SinusoidalEncoding(nn.Module):
    """Parameter-free wrapper of :func:`sincos_3d`."""

    def __init__(self, cfg: PositionEncodingConfig, dim: int):
        super().__init__()
        self.dim, self.temperature = dim, cfg.temperature

    def forward(self, coords: torch.Tensor) -> torch.Tensor:  # (..., K, 3) → (..., D)
        return sincos_3d(coords, self.dim, self.temperature)


class MlpEncoding(nn.Module):
    """3·K → hidden → LayerNorm → ReLU → D (reference key layout ``mlp.{0,1,3}``)."""

    def __init__(self, cfg: PositionEncodingConfig, dim: int):
        super().__init__()
        k = cfg.points_per_token
        self.mlp = nn.Sequential(
            nn.Linear(3 * k, cfg.mlp_hidden_size),
            nn.LayerNorm(cfg.mlp_hidden_size),
            nn.ReLU(),
            nn.Linear(cfg.mlp_hidden_size, dim),
        )

    def forward(self, coords: torch.Tensor) -> torch.Tensor:  # (..., K, 3) → (..., D)
        x = coords.flatten(-2).to(self.mlp[0].weight.dtype)
        return self.mlp(x).float()


_ENCODINGS: dict[PositionEncodingKind, type[nn.Module]] = {
    PositionEncodingKind.SINUSOIDAL: SinusoidalEncoding,
    PositionEncodingKind.MLP: MlpEncoding,
}


def build_position_encoding(cfg: PositionEncodingConfig, dim: int) -> nn.Module | None:
    """Factory: the module for ``cfg.kind`` (None for NONE)."""
    if cfg.kind is PositionEncodingKind.NONE:
        return None
    return _ENCODINGS[cfg.kind](cfg, dim)


def prepare_coords(xyz_m: np.ndarray, cfg: PositionEncodingConfig) -> np.ndarray:
    """Token/box coordinates in metres → the encoding's input points.

    Args:
        xyz_m: (..., 3·K) metres (K = cfg.points_per_token; min/max: min xyz then max xyz).
    Returns:
        (..., K, 3) float32: voxel indices (DISCRETE) or metres (CONTINUOUS).
    """
    k = cfg.points_per_token
    pts = np.asarray(xyz_m, dtype=np.float64)
    if pts.shape[-1] != 3 * k:
        raise ValueError(f"expected (..., {3 * k}) coordinates for {cfg.aggregation.name}, "
                         f"got {pts.shape}")
    pts = pts.reshape(*pts.shape[:-1], k, 3)
    if cfg.coords is CoordMode.DISCRETE:
        pts = discretize_coords(pts, cfg.lo_m, cfg.hi_m, cfg.voxel_size_m)
    return pts.astype(np.float32)


def size_points(size_m: np.ndarray, cfg: PositionEncodingConfig) -> np.ndarray:
    """Box sizes (..., 3) m → (..., 1, 3) input of the size encoding: round(size / size_unit_m)."""
    s = np.asarray(size_m, dtype=np.float64)
    if s.shape[-1:] != (3,):
        raise ValueError(f"box sizes must have shape (..., 3), got {s.shape}")
    return np.round(s / cfg.size_unit_m)[..., None, :].astype(np.float32)


def center_points(center_m: np.ndarray, cfg: PositionEncodingConfig) -> np.ndarray:
    """Box centres (..., 3) m → (..., K, 3) encoding input (the centre repeated K times)."""
    c = np.asarray(center_m, dtype=np.float64)
    return prepare_coords(np.concatenate([c] * cfg.points_per_token, axis=-1), cfg)
