"""Axis-aligned 3D boxes: IoU (single and vectorised pairwise) and point masks.

Boxes as arrays are rows of 6 numbers: centre (x, y, z) then size (dx, dy, dz),
metres. IoU = intersection volume / (union volume + 1e-8), as in the
benchmarks' evaluation code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_EPS = 1e-8  # added to the union so empty boxes give IoU 0, not NaN


@dataclass(frozen=True)
class Box3D:
    """An axis-aligned box: center_m (3,) and size_m (3,) (full edge lengths, ≥ 0)."""

    center_m: np.ndarray
    size_m: np.ndarray

    def __post_init__(self) -> None:
        c = np.asarray(self.center_m, dtype=np.float64)
        s = np.asarray(self.size_m, dtype=np.float64)
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise ValueError(f"center_m must be 3 finite numbers, got {self.center_m!r}")
        if s.shape != (3,) or not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError(f"size_m must be 3 finite numbers >= 0, got {self.size_m!r}")
        c.flags.writeable = False
        s.flags.writeable = False
        object.__setattr__(self, "center_m", c)
        object.__setattr__(self, "size_m", s)

    @classmethod
    def from_min_max(cls, min_m: np.ndarray, max_m: np.ndarray) -> "Box3D":
        lo, hi = np.asarray(min_m, dtype=np.float64), np.asarray(max_m, dtype=np.float64)
        return cls(center_m=(lo + hi) / 2, size_m=hi - lo)

    @property
    def min_m(self) -> np.ndarray:
        return self.center_m - self.size_m / 2

    @property
    def max_m(self) -> np.ndarray:
        return self.center_m + self.size_m / 2

    def as_row(self) -> np.ndarray:
        """(6,) centre then size."""
        return np.concatenate([self.center_m, self.size_m])


def _as_rows(boxes: object, name: str) -> np.ndarray:
    if isinstance(boxes, Box3D):
        return boxes.as_row()[None]
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"{name} must have shape (N, 6) (centre, size), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr[:, 3:] < 0):
        raise ValueError(f"{name} must be finite with sizes >= 0")
    return arr


def box_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise axis-aligned IoU: (N, 6) × (M, 6) → (N, M) float64."""
    a = _as_rows(boxes_a, "boxes_a")
    b = _as_rows(boxes_b, "boxes_b")
    a_lo, a_hi = a[:, :3] - a[:, 3:] / 2, a[:, :3] + a[:, 3:] / 2
    b_lo, b_hi = b[:, :3] - b[:, 3:] / 2, b[:, :3] + b[:, 3:] / 2
    edge = np.minimum(a_hi[:, None], b_hi[None]) - np.maximum(a_lo[:, None], b_lo[None])
    inter = np.clip(edge, 0.0, None).prod(axis=-1)  # (N, M)
    vol_a = a[:, 3:].prod(axis=1)
    vol_b = b[:, 3:].prod(axis=1)
    return inter / (vol_a[:, None] + vol_b[None] - inter + IOU_EPS)


def greedy_suppression(rows: np.ndarray, suppress_iou: float, limit: int | None = None) -> list[int]:
    """Greedy non-maximum suppression of (N, 6) boxes given best first: a box is dropped when
    its axis-aligned IoU with one already kept is ≥ ``suppress_iou``; at most ``limit`` kept.
    Returns the kept indices, in order."""
    rows = _as_rows(rows, "rows")
    iou = box_iou_matrix(rows, rows)
    kept: list[int] = []
    suppressed = np.zeros(len(rows), bool)
    for i in range(len(rows)):
        if suppressed[i]:
            continue
        kept.append(i)
        if len(kept) == limit:
            break
        suppressed |= iou[i] >= suppress_iou
    return kept


def _bounds_m(rows: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (N, 6) rows and their (N, 3) min and max corners; ``index`` must name one."""
    r = _as_rows(rows, "rows")
    if not 0 <= index < len(r):
        raise ValueError(f"box index {index} out of range for {len(r)} boxes")
    return r, r[:, :3] - r[:, 3:] / 2, r[:, :3] + r[:, 3:] / 2


def _gap_m(lo: np.ndarray, hi: np.ndarray, index: int) -> np.ndarray:
    """(N,) length of the shortest segment between each box and box ``index`` over the axes
    given (0 where they touch or overlap)."""
    return np.linalg.norm(np.maximum(0.0, np.maximum(lo - hi[index], lo[index] - hi)), axis=1)


def nearest_boxes(rows: np.ndarray, index: int, k: int) -> list[int]:
    """The ``k`` boxes of (N, 6) ``rows`` nearest box ``index`` (itself excluded), nearest
    first: by the gap between the boxes in metres (the length of the shortest segment between
    them; 0 where they touch or overlap, as an object and what it stands on), ties by the
    distance between centres."""
    r, lo, hi = _bounds_m(rows, index)
    gap_m = _gap_m(lo, hi, index)
    centre_m = np.linalg.norm(r[:, :3] - r[index, :3], axis=1)
    order = [int(i) for i in np.lexsort((centre_m, gap_m)) if i != index]
    return order[:max(k, 0)]


ANCHOR_RELATION_COLUMNS = ("dx_m", "dy_m", "dz_m", "xy_centre_distance_m", "xy_gap_m",
                           "bottom_above_anchor_top_m", "anchor_bottom_above_top_m", "is_anchor")


def anchor_relations_m(rows: np.ndarray, index: int) -> np.ndarray:
    """(N, 8) float32: where each box of (N, 6) ``rows`` is relative to box ``index`` (the
    anchor), columns :data:`ANCHOR_RELATION_COLUMNS`: the centre offset (x, y, z), the xy
    distance between centres, the gap between the xy footprints (0 where they overlap), the
    height of the box's bottom above the anchor's top (≈ 0: it stands on the anchor), the height
    of the anchor's bottom above the box's top (≈ 0: the anchor stands on it), all in metres,
    and 1 for the anchor itself (else 0)."""
    r, lo, hi = _bounds_m(rows, index)
    d = r[:, :3] - r[index, :3]
    gap_xy = _gap_m(lo[:, :2], hi[:, :2], index)
    out = np.stack([d[:, 0], d[:, 1], d[:, 2], np.linalg.norm(d[:, :2], axis=1), gap_xy,
                    lo[:, 2] - hi[index, 2], lo[index, 2] - hi[:, 2],
                    (np.arange(len(r)) == index).astype(float)], axis=1)
    return out.astype(np.float32)


def box_iou_3d(a: Box3D, b: Box3D) -> float:
    """IoU of two axis-aligned boxes."""
    return float(box_iou_matrix(a, b)[0, 0])


def points_in_box_mask(points_m: np.ndarray, box: Box3D) -> np.ndarray:
    """(..., 3) points → (...) bool, True inside the box (faces included)."""
    pts = np.asarray(points_m)
    if pts.shape[-1:] != (3,):
        raise ValueError(f"points_m must have shape (..., 3), got {pts.shape}")
    if not isinstance(box, Box3D):
        raise TypeError(f"box must be a Box3D, got {type(box).__name__}")
    return np.all((pts >= box.min_m) & (pts <= box.max_m), axis=-1)
