"""Offline frame sampling for a recorded scan: uniform and greedy maximum coverage.

Maximum coverage (the paper's "mc" sampling): every frame is a set of occupied
voxels (packed int64 keys from :func:`video3d_ros.geometry.voxel_keys`);
optionally only voxels that also hold points of the scene's reconstructed
point cloud count. Greedy picks, up to a frame budget, the frame that adds the
most not-yet-covered voxels, ties broken by a seeded random choice, and
records each pick's gain. The ratio variants keep greedy picks until the
summed gains reach 90 % / 95 % of all coverable voxels. The result is sorted by
time (frame index).

Speed: instead of Python sets, the frames × voxels incidence is a
``scipy.sparse`` matrix. Gains are kept exact for every frame and updated
incrementally: when a pick covers new voxels, each frame holding one of them
loses one unit of gain (a CSC column lookup plus a ``bincount``). Every voxel
becomes covered once, so the whole run costs O(nnz) plus O(frames) per pick,
and ties are resolved exactly as a plain implementation would.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..geometry.voxels import _KEY_MASK, KEY_BITS, KEY_OFFSET, unpack_voxel_keys

# Remap keys through a dense index grid when the scan's voxel bounding box
# holds at most this many cells (no sort needed); otherwise sort with np.unique.
_DENSE_GRID_MAX_CELLS = 1 << 26


class SamplingStrategy(enum.Enum):
    """Frame sampling strategies (names as in the paper's configs)."""

    UNIFORM = "uniform"
    MAX_COVERAGE = "max-coverage"
    MAX_COVERAGE_RATIO90 = "max-coverage-0.90"
    MAX_COVERAGE_RATIO95 = "max-coverage-0.95"

    @classmethod
    def parse(cls, name: "str | SamplingStrategy") -> "SamplingStrategy":
        """Parse a strategy name; a misspelt name is an error (no fallback)."""
        if isinstance(name, cls):
            return name
        key = str(name).strip().lower()
        if key in _ALIASES:
            return _ALIASES[key]
        valid = ", ".join(sorted(_ALIASES))
        raise ValueError(f"unknown sampling strategy {name!r}; valid names: {valid}")

    @property
    def coverage_ratio(self) -> float | None:
        """Target fraction of coverable voxels for the ratio variants, else None."""
        return _RATIOS.get(self)


_RATIOS = {
    SamplingStrategy.MAX_COVERAGE_RATIO90: 0.90,
    SamplingStrategy.MAX_COVERAGE_RATIO95: 0.95,
}
_ALIASES: dict[str, SamplingStrategy] = {
    "uniform": SamplingStrategy.UNIFORM,
    "max-coverage": SamplingStrategy.MAX_COVERAGE,
    "mc": SamplingStrategy.MAX_COVERAGE,
    "max-coverage-0.90": SamplingStrategy.MAX_COVERAGE_RATIO90,
    "max-coverage-0.9": SamplingStrategy.MAX_COVERAGE_RATIO90,
    "mc-ratio90": SamplingStrategy.MAX_COVERAGE_RATIO90,
    "max-coverage-0.95": SamplingStrategy.MAX_COVERAGE_RATIO95,
    "mc-ratio95": SamplingStrategy.MAX_COVERAGE_RATIO95,
}


@dataclass(frozen=True)
class CoverageIncidence:
    """Frames × coverable-voxels incidence of a scan.

    Attributes:
        frames_by_voxel: (n_frames, n_voxels) CSR bool; row f holds frame f's
            coverable voxels (columns are dense ids, not keys).
        voxel_keys: (n_voxels,) int64 packed key of each column.
    """

    frames_by_voxel: sp.csr_matrix
    voxel_keys: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.frames_by_voxel.shape[0]

    @property
    def n_voxels(self) -> int:
        return self.frames_by_voxel.shape[1]


def _check_voxel_sets(voxel_sets: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, keys in enumerate(voxel_sets):
        arr = np.asarray(keys)
        if arr.ndim != 1 or arr.dtype != np.int64:
            raise ValueError(
                f"voxel_sets[{i}] must be a 1-D int64 key array, got {arr.shape} {arr.dtype}"
            )
        if arr.size > 1 and not np.all(arr[1:] > arr[:-1]):
            raise ValueError(f"voxel_sets[{i}] must be sorted and unique (as voxel_keys returns)")
        out.append(arr)
    return out


def build_incidence(
    voxel_sets: Sequence[np.ndarray], scene_voxel_keys: np.ndarray | None = None
) -> CoverageIncidence:
    """Build the frames × voxels incidence.

    Args:
        voxel_sets: per frame, (M_f,) int64 sorted unique voxel keys.
        scene_voxel_keys: optional (S,) int64 keys of the scene point cloud's
            voxels; when given only those voxels are coverable.
    """
    sets = _check_voxel_sets(voxel_sets)
    lengths = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    all_keys = np.concatenate(sets) if sets else np.zeros(0, np.int64)
    scene = None
    if scene_voxel_keys is not None:
        scene = np.asarray(scene_voxel_keys)
        if scene.ndim != 1 or scene.dtype != np.int64:
            raise ValueError(
                f"scene_voxel_keys must be a 1-D int64 key array, got {scene.shape} {scene.dtype}"
            )
    col, union_keys = _dense_ids(all_keys, scene)
    keep = col >= 0
    # Rows are already sorted and duplicate-free (sorted unique keys map to increasing
    # column ids), so the CSR arrays are written directly, without a COO sort.
    kept_before = np.r_[0, np.cumsum(keep, dtype=np.int64)]  # kept entries before each position
    row_ends = np.cumsum(lengths)
    indptr = np.r_[0, kept_before[row_ends]].astype(np.int64)
    indices = col[keep]
    mat = sp.csr_matrix(
        (np.ones(indices.size, dtype=bool), indices, indptr),
        shape=(len(sets), len(union_keys)),
    )
    return CoverageIncidence(frames_by_voxel=mat, voxel_keys=union_keys)


def _dense_ids(all_keys: np.ndarray, scene: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Map keys to dense column ids (−1 where not coverable) and return the column keys."""
    if all_keys.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # Per-axis fields of the packed keys (offset, non-negative), as contiguous 1-D arrays.
    fields = [(all_keys >> (2 * KEY_BITS)) & _KEY_MASK, (all_keys >> KEY_BITS) & _KEY_MASK, all_keys & _KEY_MASK]
    lo = np.array([f.min() for f in fields], dtype=np.int64)
    dims = np.array([f.max() for f in fields], dtype=np.int64) - lo + 1
    n_cells = int(np.prod(dims))
    if n_cells > _DENSE_GRID_MAX_CELLS:
        union, inverse = np.unique(all_keys, return_inverse=True)
        if scene is None:
            return inverse.astype(np.int64), union
        coverable = np.isin(union, scene)
        remap = np.where(coverable, np.cumsum(coverable) - 1, -1)
        return remap[inverse], union[coverable]
    # Dense grid over the scan's bounding box: linear cell id, occupancy, prefix sum.
    lin = ((fields[0] - lo[0]) * dims[1] + (fields[1] - lo[1])) * dims[2] + (fields[2] - lo[2])
    occupied = np.zeros(n_cells, dtype=bool)
    occupied[lin] = True
    if scene is not None and scene.size:
        s = unpack_voxel_keys(scene) + KEY_OFFSET - lo
        inside = np.all((s >= 0) & (s < dims), axis=1)
        s = s[inside]
        in_scene = np.zeros(n_cells, dtype=bool)
        in_scene[(s[:, 0] * dims[1] + s[:, 1]) * dims[2] + s[:, 2]] = True
        occupied &= in_scene
    elif scene is not None:
        occupied[:] = False
    cell_to_col = np.cumsum(occupied) - 1
    cells = np.flatnonzero(occupied)
    col = np.where(occupied[lin], cell_to_col[lin], -1)
    # Column keys, in increasing cell id == increasing key order.
    c = np.stack(np.unravel_index(cells, tuple(dims)), axis=1) + lo
    keys = (c[:, 0] << (2 * KEY_BITS)) | (c[:, 1] << KEY_BITS) | c[:, 2]
    return col, keys.astype(np.int64)


def greedy_max_coverage(
    incidence: CoverageIncidence, budget: int, seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximum coverage on an incidence.

    Args:
        incidence: from :func:`build_incidence`.
        budget: number of picks (clipped to the number of frames). Picks go on
            with zero gain once everything is covered, as in the reference.
        seed: seed of the tie-breaking generator (``numpy.random.default_rng``);
            among frames with equal best gain, in index order, one is drawn
            with ``rng.integers(count)``.

    Returns:
        order: (P,) int64 frame indices in pick order; gains: (P,) int64 new
        voxels per pick.
    """
    if int(budget) != budget or budget < 0:
        raise ValueError(f"budget must be a non-negative integer, got {budget}")
    rng = np.random.default_rng(seed)
    csr = incidence.frames_by_voxel
    csc = csr.tocsc()
    gains = np.diff(csr.indptr).astype(np.int64)  # exact current gain of every frame
    covered = np.zeros(incidence.n_voxels, dtype=bool)
    n_frames = incidence.n_frames
    picks = min(int(budget), n_frames)
    order = np.empty(picks, np.int64)
    pick_gains = np.empty(picks, np.int64)
    for p in range(picks):
        best = gains.max()
        ties = np.flatnonzero(gains == best)
        f = int(ties[rng.integers(len(ties))]) if len(ties) > 1 else int(ties[0])
        order[p], pick_gains[p] = f, best
        cols = csr.indices[csr.indptr[f] : csr.indptr[f + 1]]
        new = cols[~covered[cols]]
        covered[new] = True
        if new.size:
            # Every frame holding a newly covered voxel loses one unit of gain per voxel.
            starts, ends = csc.indptr[new], csc.indptr[new + 1]
            holders = csc.indices[_ranges(starts, ends)]
            gains -= np.bincount(holders, minlength=n_frames)
        gains[f] = -1  # never picked again
    return order, pick_gains


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, e) for all pairs, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(total)


def uniform_indices(n_frames: int, n_select: int) -> np.ndarray:
    """``linspace(0, n_frames − 1, n_select)`` truncated to int, as the reference.

    ``n_select`` is clipped to ``n_frames`` so no frame is repeated.
    """
    if n_frames <= 0:
        return np.zeros(0, np.int64)
    k = min(int(n_select), n_frames)
    return np.linspace(0, n_frames - 1, k).astype(np.int64)


def coverage_after_each(incidence: CoverageIncidence, order: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Gains and cumulative covered-voxel counts after each frame of ``order``."""
    csr = incidence.frames_by_voxel
    covered = np.zeros(incidence.n_voxels, dtype=bool)
    gains = np.empty(len(order), np.int64)
    for i, f in enumerate(order):
        cols = csr.indices[csr.indptr[f] : csr.indptr[f + 1]]
        gains[i] = int((~covered[cols]).sum())
        covered[cols] = True
    return gains, np.cumsum(gains)


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of :func:`select_frames`.

    Attributes:
        strategy: the strategy used.
        indices: selected frame indices, sorted by time (ascending).
        pick_order: the same frames in the order they were picked (greedy
            order; time order for uniform).
        gains: new coverable voxels contributed by each pick, in pick order.
        coverage_curve: covered coverable voxels after each pick (cumsum of gains).
        total_voxels: coverable voxels of the whole scan (union of all frames,
            restricted to the scene cloud when given).
        selected_voxels: coverable voxels covered by the selection.
    """

    strategy: SamplingStrategy
    indices: tuple[int, ...]
    pick_order: tuple[int, ...]
    gains: tuple[int, ...]
    coverage_curve: tuple[int, ...]
    total_voxels: int
    selected_voxels: int

    @property
    def coverage_ratio(self) -> float:
        return self.selected_voxels / self.total_voxels if self.total_voxels else 1.0


def select_frames(
    voxel_sets: Sequence[np.ndarray],
    strategy: "SamplingStrategy | str" = SamplingStrategy.MAX_COVERAGE,
    max_frames: int = 32,
    *,
    scene_voxel_keys: np.ndarray | None = None,
    seed: int | None = 0,
    incidence: CoverageIncidence | None = None,
) -> SelectionResult:
    """Select frames of a recorded scan.

    Args:
        voxel_sets: per frame in time order, (M_f,) int64 unique voxel keys.
        strategy: a :class:`SamplingStrategy` or its name.
        max_frames: frame budget (> 0).
        scene_voxel_keys: optional (S,) int64 keys of the scene point cloud;
            only those voxels count for gains and totals.
        seed: tie-breaking seed for greedy.
        incidence: a prebuilt incidence of the same inputs (saves rebuilding it
            when several strategies run on one scan).
    """
    strategy = SamplingStrategy.parse(strategy)
    if int(max_frames) != max_frames or max_frames <= 0:
        raise ValueError(f"max_frames must be a positive integer, got {max_frames}")
    inc = incidence if incidence is not None else build_incidence(voxel_sets, scene_voxel_keys)
    if inc.n_frames != len(voxel_sets):
        raise ValueError(
            f"incidence has {inc.n_frames} frames but voxel_sets has {len(voxel_sets)}"
        )
    total = inc.n_voxels
    if strategy is SamplingStrategy.UNIFORM:
        order = uniform_indices(inc.n_frames, max_frames)
        gains, curve = coverage_after_each(inc, order)
    else:
        order, gains = greedy_max_coverage(inc, max_frames, seed)
        ratio = strategy.coverage_ratio
        if ratio is not None and len(gains):
            curve = np.cumsum(gains)
            reached = np.flatnonzero(curve >= total * ratio)
            stop = int(reached[0]) + 1 if reached.size else len(gains)
            order, gains = order[:stop], gains[:stop]
        curve = np.cumsum(gains)
    return SelectionResult(
        strategy=strategy,
        indices=tuple(int(i) for i in np.sort(order)),
        pick_order=tuple(int(i) for i in order),
        gains=tuple(int(g) for g in gains),
        coverage_curve=tuple(int(c) for c in curve),
        total_voxels=int(total),
        selected_voxels=int(curve[-1]) if len(curve) else 0,
    )
