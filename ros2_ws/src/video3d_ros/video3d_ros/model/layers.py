"""Small parts between the vision tower and the language model.

Projector (``mlp2x_gelu``), 2-D pooling of a frame's patch grid, and the
per-row newline token layout ("grid").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import NewlinePosition, PoolMode, ProjectorKind


def build_projector(kind: ProjectorKind, in_dim: int, out_dim: int) -> nn.Module:
    """Factory: vision width → text width (keys ``0.*`` and ``2.*`` as released)."""
    if kind is ProjectorKind.MLP2X_GELU:
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ValueError(f"unsupported projector {kind}")


def _avg(x: torch.Tensor, s: int) -> torch.Tensor:
    return F.avg_pool2d(x, s, ceil_mode=True)


def _max(x: torch.Tensor, s: int) -> torch.Tensor:
    return F.max_pool2d(x, s, ceil_mode=True)


def _bilinear(x: torch.Tensor, s: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(math.ceil(h / s), math.ceil(w / s)), mode="bilinear")


_POOLS = {PoolMode.AVERAGE: _avg, PoolMode.MAX: _max, PoolMode.BILINEAR: _bilinear}


def pool_2d(features: torch.Tensor, mode: PoolMode, stride: int) -> torch.Tensor:
    """Pool a patch grid: (N, P, P, D) → (N, G, G, D), G = ceil(P / stride).

    Average and max pooling use ``ceil_mode`` so that an odd grid (27 → 14)
    keeps its last partial row/column, as bilinear resizing does.
    """
    x = features.permute(0, 3, 1, 2)  # (N, D, P, P)
    x = _POOLS[mode](x, stride)  # (N, D, G, G)
    return x.permute(0, 2, 3, 1).contiguous()


def add_newlines(tokens: torch.Tensor, newline: torch.Tensor | None,
                 position: NewlinePosition) -> torch.Tensor:
    """Flatten frames to one sequence: (N, G, G, D) → (N·G·(G+1), D) for GRID.

    GRID appends ``newline`` (D,) after every row of every frame; NONE just flattens.
    """
    n, g, _, d = tokens.shape
    if position is NewlinePosition.NONE:
        return tokens.reshape(n * g * g, d)
    if newline is None:
        raise ValueError("NewlinePosition.GRID needs the learned newline vector")
    nl = newline.to(tokens.dtype).expand(n, g, 1, d)  # (N, G, 1, D)
    return torch.cat([tokens, nl], dim=2).reshape(n * g * (g + 1), d)
