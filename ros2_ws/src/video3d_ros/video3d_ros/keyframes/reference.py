"""Plain set-based greedy maximum coverage: the reference the fast version is checked against.

Written the straightforward way (Python sets, every gain recomputed each
pick), with the same seeded tie rule as :func:`~video3d_ros.keyframes.select_frames`
(``rng.integers`` over the tied frames in index order). The tests compare the
sparse implementation with it pick by pick; the benchmark uses it as the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def set_greedy(voxel_sets: Sequence[np.ndarray], budget: int, seed: int,
               scene_keys: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """Greedy max coverage over per-frame voxel key sets.

    Args:
        voxel_sets: per frame, an int64 array of voxel keys.
        budget: at most this many picks.
        seed: tie-breaking seed.
        scene_keys: when given, only these voxels count.
    Returns:
        (picked frame indices in pick order, voxels gained by each pick).
    """
    rng = np.random.default_rng(seed)
    sets = [set(s.tolist()) for s in voxel_sets]
    if scene_keys is not None:
        scene = set(scene_keys.tolist())
        sets = [s & scene for s in sets]
    used: set[int] = set()
    left, order, gains = list(range(len(sets))), [], []
    for _ in range(min(budget, len(sets))):
        g = [len(sets[f] - used) for f in left]
        best = max(g)
        ties = [f for f, x in zip(left, g) if x == best]
        f = ties[rng.integers(len(ties))] if len(ties) > 1 else ties[0]
        order.append(f)
        gains.append(best)
        used |= sets[f]
        left.remove(f)
    return order, gains
