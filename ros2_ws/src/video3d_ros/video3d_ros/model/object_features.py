"""Object-proposal features for grounding.

An object's feature is the mean of the visual features whose pixel area lies
sufficiently inside its box, over all frames (a zero vector when none does),
plus (in the model) the 3D encoding of the box centre.

- PATCH14: un-pooled patch features (before pooling and position encoding);
  a patch counts when ≥ 50 % of its ``patch_size_px²`` pixels are in the box.
- PATCH27: pooled features (before position encoding); a cell counts when
  ≥ 25 % of its ``cell_px²`` pixels are in the box.

"At least a fraction" is ``count ≥ int(area · fraction)`` as in the reference.
Pixels without valid depth never count as inside (the reference would test
their camera-centre coordinate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from video3d_ros.geometry import Box3D, points_in_box_mask


def inside_cells(xyz_m: np.ndarray, valid: np.ndarray, box: Box3D, cell_px: int,
                 cells_per_side: int, fraction: float) -> np.ndarray:
    """Which cells of each frame are inside ``box``.

    Args:
        xyz_m: (F, S, S, 3) per-pixel world coordinates of the cropped frames, metres.
        valid: (F, S, S) bool.
        box: the proposal.
        cell_px: side of one cell in pixels (patch size or pooled cell size).
        cells_per_side: C; the first C·cell_px pixels of each side are used.
        fraction: minimum fraction of a cell's pixels inside the box.
    Returns:
        (F, C, C) bool.
    """
    used = cells_per_side * cell_px
    if xyz_m.shape[1] < used or xyz_m.shape[2] < used:
        raise ValueError(f"crop {xyz_m.shape[1:3]} smaller than {cells_per_side} cells of "
                         f"{cell_px} px")
    pts = xyz_m[:, :used, :used]
    inside = points_in_box_mask(pts, box) & valid[:, :used, :used]  # (F, U, U)
    f = inside.shape[0]
    counts = inside.reshape(f, cells_per_side, cell_px, cells_per_side, cell_px).sum(axis=(2, 4))
    return counts >= int(cell_px * cell_px * fraction)


def mean_features(features: torch.Tensor, masks: Sequence[np.ndarray]) -> torch.Tensor:
    """Mean feature per object.

    Args:
        features: (F, C, C, D).
        masks: N masks of shape (F, C, C) bool.
    Returns:
        (N, D); an object with an empty mask gets zeros.
    """
    flat = features.reshape(-1, features.shape[-1])  # (F·C·C, D)
    if not masks:
        return flat.new_zeros(0, flat.shape[-1])
    m = torch.as_tensor(np.stack([np.asarray(k).reshape(-1) for k in masks]),
                        device=flat.device, dtype=flat.dtype)  # (N, F·C·C)
    count = m.sum(dim=1, keepdim=True)  # (N, 1)
    return (m @ flat) / count.clamp(min=1)
