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

import warnings
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


class CellIndex:
    """Per-cell bounds of a frame set, for testing many boxes fast.

    :func:`inside_cells` tests every pixel against a box. For many proposals
    that dominates grounding (≈ N · F · S² tests), so this index keeps each
    cell's valid-point bounds and pixel block once: a cell whose bounds miss
    the box has no pixel inside, a cell whose bounds lie within it has all its
    valid pixels inside, and only the cells cut by a box face are tested pixel
    by pixel. Results equal :func:`inside_cells` exactly (tested).
    """

    def __init__(self, xyz_m: np.ndarray, valid: np.ndarray, cell_px: int, cells_per_side: int):
        """xyz_m (F, S, S, 3), valid (F, S, S); same layout as :func:`inside_cells`."""
        used = cells_per_side * cell_px
        if xyz_m.shape[1] < used or xyz_m.shape[2] < used:
            raise ValueError(f"crop {xyz_m.shape[1:3]} smaller than {cells_per_side} cells of "
                             f"{cell_px} px")
        f, c, k = xyz_m.shape[0], cells_per_side, cell_px
        blocks = xyz_m[:, :used, :used].reshape(f, c, k, c, k, 3).transpose(0, 1, 3, 2, 4, 5)
        self.blocks = np.ascontiguousarray(blocks.reshape(f, c, c, k * k, 3))  # (F, C, C, k², 3)
        self.block_valid = np.ascontiguousarray(
            valid[:, :used, :used].reshape(f, c, k, c, k).transpose(0, 1, 3, 2, 4).reshape(f, c, c, k * k))
        pts = np.where(self.block_valid[..., None], self.blocks, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells in nanmin / nanmax
            self.lo = np.nanmin(pts, axis=3)  # (F, C, C, 3); NaN for cells with no valid pixel
            self.hi = np.nanmax(pts, axis=3)
        self.n_valid = self.block_valid.sum(axis=3)  # (F, C, C)
        self.cell_px = cell_px

    def inside(self, box: Box3D, fraction: float) -> np.ndarray:
        """(F, C, C) bool: cells with at least ``fraction`` of their pixels inside ``box``."""
        need = int(self.cell_px * self.cell_px * fraction)
        lo_b, hi_b = box.min_m, box.max_m
        with np.errstate(invalid="ignore"):
            touches = np.all((self.hi >= lo_b) & (self.lo <= hi_b), axis=-1)  # NaN → False
            within = np.all((self.lo >= lo_b) & (self.hi <= hi_b), axis=-1)
        enough = self.n_valid >= max(need, 1)
        out = within & enough
        partial = touches & ~within & enough
        if partial.any():
            pts = self.blocks[partial]  # (P, k², 3)
            ok = self.block_valid[partial] & np.all((pts >= lo_b) & (pts <= hi_b), axis=-1)
            out[partial] = ok.sum(axis=1) >= need
        if need == 0:
            out[:] = True  # zero threshold: every cell counts, as in inside_cells
        return out


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
