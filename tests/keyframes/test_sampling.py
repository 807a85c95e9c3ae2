"""Offline sampling: hand-built instances, ratio stopping, and an independent set-based greedy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from video3d_ros.geometry import pack_voxel_indices
from video3d_ros.keyframes.reference import set_greedy
from video3d_ros.keyframes import SamplingStrategy, build_incidence, select_frames
from video3d_ros.keyframes import sampling as sampling_mod


def keys(*ids):
    """Voxel keys for voxels (i, 0, 0)."""
    ijk = np.zeros((len(ids), 3), np.int64)
    ijk[:, 0] = ids
    return np.unique(pack_voxel_indices(ijk))


def test_parse_strategy_names():
    assert SamplingStrategy.parse("uniform") is SamplingStrategy.UNIFORM
    assert SamplingStrategy.parse("max-coverage") is SamplingStrategy.MAX_COVERAGE
    assert SamplingStrategy.parse("max-coverage-0.95") is SamplingStrategy.MAX_COVERAGE_RATIO95
    assert SamplingStrategy.parse("MAX-COVERAGE-0.90") is SamplingStrategy.MAX_COVERAGE_RATIO90
    with pytest.raises(ValueError, match="valid names: .*max-coverage.*uniform"):
        SamplingStrategy.parse("unifrom")
    with pytest.raises(ValueError, match="unknown sampling strategy"):
        select_frames([keys(1)], "max_coverage_95")


def test_greedy_known_answer():
    # A covers 1..6, B 1..3, C 4..7, D 7..8, E nothing new beyond A.
    sets = [keys(1, 2, 3), keys(1, 2, 3, 4, 5, 6), keys(4, 5, 6, 7), keys(7, 8), keys(2, 5)]
    r = select_frames(sets, SamplingStrategy.MAX_COVERAGE, max_frames=3)
    # A(6), then D(2) beats C(1); then everything is covered: a zero-gain tie among 0, 2, 4
    assert r.pick_order[:2] == (1, 3) and r.pick_order[2] in (0, 2, 4)
    assert r.gains[:2] == (6, 2)
    assert r.gains[2] == 0
    assert r.total_voxels == 8 and r.selected_voxels == 8
    assert r.indices == tuple(sorted(r.pick_order))
    assert r.coverage_curve == (6, 8, 8)


def test_greedy_is_not_optimal_but_matches_reference_rule():
    # Classic instance: optimum {B, C} covers 8, greedy takes A (5) first.
    sets = [keys(1, 2, 3, 4, 5), keys(1, 2, 3, 6), keys(4, 5, 7, 8)]
    r = select_frames(sets, "max-coverage", max_frames=2)
    assert r.pick_order[0] == 0 and r.gains == (5, 2)
    assert r.selected_voxels == 7 < 8


def test_scene_restriction_counts_only_cloud_voxels():
    sets = [keys(1, 2, 3, 4), keys(5, 6), keys(7)]
    scene = keys(5, 6, 7, 99)
    r = select_frames(sets, "max-coverage", max_frames=2, scene_voxel_keys=scene)
    assert r.total_voxels == 3
    assert r.pick_order == (1, 2) and r.gains == (2, 1)


@pytest.mark.parametrize(
    "strategy, n_picks", [("max-coverage-0.90", 3), ("max-coverage-0.95", 4), ("max-coverage", 5)]
)
def test_ratio_stopping(strategy, n_picks):
    # Disjoint frames with 50, 30, 12, 8, 0 voxels: cumsum 50, 80, 92, 100, 100 of 100.
    sizes = [12, 50, 0, 30, 8]
    start = np.cumsum([0] + sizes)
    sets = [keys(*range(start[i], start[i] + s)) for i, s in enumerate(sizes)]
    r = select_frames(sets, strategy, max_frames=32)
    assert len(r.pick_order) == n_picks
    assert list(r.pick_order) == [1, 3, 0, 4, 2][:n_picks]
    assert r.indices == tuple(sorted(r.pick_order))


def test_ratio_budget_applies_first():
    sets = [keys(*range(10 * i, 10 * i + 10)) for i in range(10)]  # 10 disjoint frames
    r = select_frames(sets, "max-coverage-0.95", max_frames=4)
    assert len(r.indices) == 4 and r.selected_voxels == 40 and r.total_voxels == 100


def test_uniform_is_linspace():
    sets = [keys(i) for i in range(100)]
    r = select_frames(sets, "uniform", max_frames=7)
    assert r.indices == tuple(np.linspace(0, 99, 7).astype(int).tolist())
    assert r.gains == (1,) * 7 and r.selected_voxels == 7
    r = select_frames(sets[:5], "uniform", max_frames=32)
    assert r.indices == (0, 1, 2, 3, 4)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sets(st.integers(0, 60), max_size=25), min_size=1, max_size=30),
    st.integers(1, 12),
    st.integers(0, 2**31),
    st.booleans(),
)
def test_matches_set_based_greedy(raw_sets, budget, seed, with_scene):
    sets = [keys(*sorted(s)) if s else np.zeros(0, np.int64) for s in raw_sets]
    scene = keys(*range(0, 61, 2)) if with_scene else None
    r = select_frames(sets, "max-coverage", max_frames=budget, seed=seed, scene_voxel_keys=scene)
    order, gains = set_greedy(sets, budget, seed, scene)
    assert list(r.pick_order) == order
    assert list(r.gains) == gains
    union = set().union(*[set(s.tolist()) for s in sets])
    if scene is not None:
        union &= set(scene.tolist())
    assert r.total_voxels == len(union)


def test_sorting_fallback_equals_dense_grid(monkeypatch):
    rng = np.random.default_rng(0)
    sets = [np.unique(pack_voxel_indices(rng.integers(-50, 50, (40, 3)))) for _ in range(30)]
    scene = np.unique(pack_voxel_indices(rng.integers(-50, 50, (20000, 3))))
    a = build_incidence(sets, scene)
    monkeypatch.setattr(sampling_mod, "_DENSE_GRID_MAX_CELLS", 0)
    b = build_incidence(sets, scene)
    np.testing.assert_array_equal(a.voxel_keys, b.voxel_keys)
    assert (a.frames_by_voxel != b.frames_by_voxel).nnz == 0


def test_bad_inputs_name_argument():
    with pytest.raises(ValueError, match=r"voxel_sets\[1\]"):
        select_frames([keys(1), np.array([1.0, 2.0])])
    with pytest.raises(ValueError, match=r"voxel_sets\[0\] must be sorted and unique"):
        select_frames([np.array([3, 1, 1], np.int64)])
    with pytest.raises(ValueError, match="scene_voxel_keys"):
        select_frames([keys(1)], scene_voxel_keys=np.array([[1, 2]]))
    with pytest.raises(ValueError, match="max_frames"):
        select_frames([keys(1)], max_frames=0)
