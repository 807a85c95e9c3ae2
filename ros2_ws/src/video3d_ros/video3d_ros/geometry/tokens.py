"""Per-token world coordinates: resize/crop like the frames, then aggregate per cell.

The vision tower sees a ``size_px × size_px`` square of each frame. In the paper
(``FrameFit.CENTRE_CROP``) it is the centre crop of the frame resized so that its
short side is ``size_px``: the ends of the long side are dropped (a quarter of a
4:3 frame, 44 % of a 16:9 one). ``FrameFit.PAD`` instead resizes the *long* side to
``size_px`` and centres the frame on a square of padding, so every pixel is seen,
smaller. The per-pixel coordinate map goes through the same resize (nearest
neighbour) and window, so ``CropSpec`` is shared with the image pipeline (which
resizes RGB bilinearly with the same numbers).

The tower cuts the crop into ``patches_per_side²`` patches of ``patch_size_px``
(the right/bottom ``image_size_px − used_px`` pixels are dropped), features are
pooled by ``pool_stride`` and every pooled token covers a ``cell_px × cell_px``
pixel cell. For SigLIP so400m/14 at 384 px with 2×2 pooling: 27 patches,
378 px used, 14 pooled tokens per side, 27-px cells. All these sizes come from
:func:`token_grid`; none is written as a literal here.

Difference from the reference: the reference averages every pixel of a cell,
including pixels without depth (which unproject to the camera centre, see
:mod:`.depth`). ``ignore_invalid=False`` reproduces that; ``ignore_invalid=True``
averages only valid pixels and yields NaN for a cell without any valid pixel.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import check_bool_mask, check_points, check_positive


class FrameFit(enum.Enum):
    """How a frame of any aspect ratio becomes the vision tower's square input."""

    CENTRE_CROP = "centre_crop"  # the paper's: short side to size, the centre square kept
    PAD = "pad"  # long side to size, centred on padding: the whole frame is seen


@dataclass(frozen=True)
class CropSpec:
    """How a (src_height_px, src_width_px) image is resized, then windowed to a square.

    The image is resized to (resized_height_px, resized_width_px); output pixel (r, c)
    of the ``size_px × size_px`` window shows resized pixel (r + top_px, c + left_px).
    Centre crop: non-negative offsets. Pad: a negative offset is the padding before the
    image; output pixels outside the resized image are padding (:func:`crop_inside_mask`).
    """

    src_height_px: int
    src_width_px: int
    resized_height_px: int
    resized_width_px: int
    top_px: int
    left_px: int
    size_px: int


def resize_crop_params(height_px: int, width_px: int, size_px: int,
                       fit: FrameFit = FrameFit.CENTRE_CROP) -> CropSpec:
    """Compute the resize-then-window geometry of one image size.

    Args:
        height_px, width_px: source image size in pixels (> 0).
        size_px: side of the square output in pixels (> 0).
        fit: CENTRE_CROP resizes the short side to ``size_px`` (the long side to
            ``int(long·size/short)``, as Hugging Face image processors do) and keeps the
            centre square; PAD resizes the long side to ``size_px`` (the short side to
            ``max(1, int(short·size/long))``) and centres it on the square.
    """
    if not isinstance(fit, FrameFit):
        raise TypeError(f"fit must be a FrameFit, got {fit!r}")
    for name, v in (("height_px", height_px), ("width_px", width_px), ("size_px", size_px)):
        if int(v) != v or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v}")
    height_px, width_px, size_px = int(height_px), int(width_px), int(size_px)
    if fit is FrameFit.CENTRE_CROP:
        if height_px <= width_px:
            rh, rw = size_px, int(width_px * size_px / height_px)
        else:
            rh, rw = int(height_px * size_px / width_px), size_px
    elif height_px <= width_px:
        rh, rw = max(1, int(height_px * size_px / width_px)), size_px
    else:
        rh, rw = size_px, max(1, int(width_px * size_px / height_px))
    return CropSpec(
        src_height_px=height_px,
        src_width_px=width_px,
        resized_height_px=rh,
        resized_width_px=rw,
        top_px=(rh - size_px) // 2,
        left_px=(rw - size_px) // 2,
        size_px=size_px,
    )


def crop_source_indices(spec: CropSpec) -> tuple[np.ndarray, np.ndarray]:
    """Source row and column of every output pixel under nearest-neighbour resize.

    Uses the ``floor(dst · src / resized)`` rule of ``torch.nn.functional.interpolate``
    (mode="nearest"). Padding (a padded spec) takes the nearest edge row/column.
    Returns (rows (size,), cols (size,)) int64 arrays.
    """
    out = np.arange(spec.size_px, dtype=np.int64)
    r = np.clip(out + spec.top_px, 0, spec.resized_height_px - 1)
    c = np.clip(out + spec.left_px, 0, spec.resized_width_px - 1)
    return (r * spec.src_height_px) // spec.resized_height_px, \
        (c * spec.src_width_px) // spec.resized_width_px


def crop_inside_mask(spec: CropSpec) -> np.ndarray:
    """(size, size) bool: True where the output shows the image, False on padding."""
    out = np.arange(spec.size_px)
    r, c = out + spec.top_px, out + spec.left_px
    rows = (r >= 0) & (r < spec.resized_height_px)
    cols = (c >= 0) & (c < spec.resized_width_px)
    return rows[:, None] & cols[None, :]


def resize_crop_nearest(array: np.ndarray, spec: CropSpec, fill: Any = None) -> np.ndarray:
    """Resize (nearest) and window ``array`` (H, W, ...) → (size, size, ...).

    Padding (a padded spec) holds ``fill``, or with ``fill=None`` repeats the nearest
    edge pixel (:func:`crop_inside_mask` says where the padding is).
    """
    array = np.asarray(array)
    if array.shape[:2] != (spec.src_height_px, spec.src_width_px):
        raise ValueError(
            f"array must have leading shape ({spec.src_height_px}, {spec.src_width_px}) "
            f"as in spec, got {array.shape[:2]}"
        )
    rows, cols = crop_source_indices(spec)
    out = array[rows[:, None], cols[None, :]]
    if fill is not None:
        out[~crop_inside_mask(spec)] = fill
    return out


@dataclass(frozen=True)
class TokenGrid:
    """Token layout of one frame, derived from image size, patch size and pool stride."""

    image_size_px: int  # side of the square crop the vision tower sees
    patch_size_px: int  # side of one ViT patch
    pool_stride: int  # spatial pooling factor applied to the patch grid
    patches_per_side: int  # image_size_px // patch_size_px
    used_px: int  # patches_per_side * patch_size_px (the rest is dropped)
    pooled_per_side: int  # ceil(patches_per_side / pool_stride)
    cell_px: int  # used_px // pooled_per_side: pixels per pooled token side


def token_grid(image_size_px: int, patch_size_px: int, pool_stride: int) -> TokenGrid:
    """Derive the token grid; raise if pooled cells do not tile the used pixels exactly."""
    for name, v in (
        ("image_size_px", image_size_px),
        ("patch_size_px", patch_size_px),
        ("pool_stride", pool_stride),
    ):
        if int(v) != v or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v}")
    if patch_size_px > image_size_px:
        raise ValueError(
            f"patch_size_px ({patch_size_px}) must not exceed image_size_px ({image_size_px})"
        )
    patches = image_size_px // patch_size_px
    used = patches * patch_size_px
    pooled = math.ceil(patches / pool_stride)
    if used % pooled != 0:
        raise ValueError(
            f"used pixels ({used} = {patches} patches × {patch_size_px} px) are not divisible by "
            f"the pooled grid ({pooled} = ceil({patches} / pool_stride {pool_stride}))"
        )
    return TokenGrid(
        image_size_px=int(image_size_px),
        patch_size_px=int(patch_size_px),
        pool_stride=int(pool_stride),
        patches_per_side=patches,
        used_px=used,
        pooled_per_side=pooled,
        cell_px=used // pooled,
    )


class Aggregation(enum.Enum):
    """How the pixels of one token cell become the token's coordinate."""

    MEAN = "mean"  # paper default ("avg")
    CENTER = "center"  # the cell's centre pixel
    MIN_MAX = "min_max"  # per-axis min then max: 6 numbers per token


def _cells(array: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """(S, S, ...) → (G, G, cell*cell, ...) view-based regrouping of the used pixels."""
    g, c = grid.pooled_per_side, grid.cell_px
    a = array[: grid.used_px, : grid.used_px]
    a = a.reshape(g, c, g, c, *array.shape[2:]).swapaxes(1, 2)
    return a.reshape(g, g, c * c, *array.shape[2:])


def patch_coords_m(
    xyz_m: np.ndarray,
    valid: np.ndarray,
    grid: TokenGrid,
    aggregation: Aggregation = Aggregation.MEAN,
    ignore_invalid: bool = False,
) -> np.ndarray:
    """One world coordinate per pooled token.

    Args:
        xyz_m: (S, S, 3) float world coordinates of the cropped frame, metres,
            S = grid.image_size_px.
        valid: (S, S) bool.
        grid: from :func:`token_grid`.
        aggregation: MEAN, CENTER or MIN_MAX.
        ignore_invalid: if True, only valid pixels count (NaN where a cell has
            none); if False every pixel counts, as in the reference.

    Returns:
        (G, G, 3) float32 (MIN_MAX: (G, G, 6), min xyz then max xyz), metres.
    """
    if not isinstance(aggregation, Aggregation):
        raise TypeError(f"aggregation must be an Aggregation, got {aggregation!r}")
    xyz = check_points(xyz_m, "xyz_m")
    S = grid.image_size_px
    if xyz.shape != (S, S, 3):
        raise ValueError(f"xyz_m must have shape ({S}, {S}, 3) for this grid, got {xyz.shape}")
    mask = check_bool_mask(valid, "valid", (S, S))
    cells = _cells(xyz.astype(np.float64, copy=False), grid)  # (G, G, c*c, 3)
    cmask = _cells(mask, grid)  # (G, G, c*c)
    if aggregation is Aggregation.CENTER:
        mid = grid.cell_px // 2
        centre = mid * grid.cell_px + mid
        out = cells[:, :, centre].copy()
        if ignore_invalid:
            out[~cmask[:, :, centre]] = np.nan
        return out.astype(np.float32)
    if aggregation is Aggregation.MEAN:
        if not ignore_invalid:
            return cells.mean(axis=2).astype(np.float32)
        count = cmask.sum(axis=2)[..., None]  # (G, G, 1)
        total = np.einsum("ijkc,ijk->ijc", cells, cmask.astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = total / count
        out[count[..., 0] == 0] = np.nan
        return out.astype(np.float32)
    # MIN_MAX
    if not ignore_invalid:
        lo, hi = cells.min(axis=2), cells.max(axis=2)
    else:
        m = cmask[..., None]
        lo = np.where(m, cells, np.inf).min(axis=2)
        hi = np.where(m, cells, -np.inf).max(axis=2)
        empty = ~cmask.any(axis=2)
        lo[empty] = np.nan
        hi[empty] = np.nan
    return np.concatenate([lo, hi], axis=-1).astype(np.float32)


def patch_valid_fraction(valid: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """Fraction of valid pixels per token cell: (S, S) bool → (G, G) float32."""
    S = grid.image_size_px
    mask = check_bool_mask(valid, "valid", (S, S))
    return _cells(mask, grid).mean(axis=2).astype(np.float32)


def discretize_coords(
    xyz_m: np.ndarray,
    lo_m: tuple[float, float, float] = (-15.0, -15.0, -5.0),
    hi_m: tuple[float, float, float] = (15.0, 15.0, 5.0),
    voxel_size_m: float = 0.1,
) -> np.ndarray:
    """Clamp to [lo_m, hi_m], subtract lo_m, divide by voxel_size_m, round (half to even).

    Args:
        xyz_m: (..., 3) finite float coordinates in metres.
    Returns:
        (..., 3) int64 voxel indices in [0, round((hi − lo)/voxel)].
    """
    xyz = check_points(xyz_m, "xyz_m") if np.ndim(xyz_m) >= 2 else np.asarray(xyz_m)
    if xyz.shape[-1:] != (3,):
        raise ValueError(f"xyz_m must have shape (..., 3), got {xyz.shape}")
    if not np.all(np.isfinite(xyz)):
        raise ValueError("xyz_m must be finite (aggregate with ignore_invalid=False or drop NaN cells)")
    check_positive(voxel_size_m, "voxel_size_m")
    lo = np.asarray(lo_m, dtype=np.float64)
    hi = np.asarray(hi_m, dtype=np.float64)
    if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
        raise ValueError(f"lo_m and hi_m must be 3 numbers with lo_m < hi_m, got {lo_m}, {hi_m}")
    clamped = np.clip(xyz.astype(np.float64), lo, hi)
    return np.round((clamped - lo) / voxel_size_m).astype(np.int64)
