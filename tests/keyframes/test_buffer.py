"""Rolling keyframe buffer: policy on hand-built frames, invariants (hypothesis), threads."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from video3d_ros.geometry import pack_voxel_indices
from video3d_ros.keyframes import BufferConfig, Frame, InsertReason, RollingKeyframeBuffer

from .conftest import frame_from_voxels


def line(a, b):
    """Voxels (i, 0, 0) for i in [a, b)."""
    return [(i, 0, 0) for i in range(a, b)]


def cfg(**kw):
    kw.setdefault("pixel_stride", 1)
    return BufferConfig(**kw)


def test_policy_add_swap_reject():
    buf = RollingKeyframeBuffer(cfg(capacity=2))
    r = buf.insert(frame_from_voxels(0, line(0, 10)))
    assert r.reason is InsertReason.ADDED and r.new_voxels == 10 and r.covered_voxels == 10
    r = buf.insert(frame_from_voxels(1, line(10, 15)))
    assert r.reason is InsertReason.ADDED and buf.covered_voxels == 15
    # Frame 2 covers all of frame 0 plus 3 new voxels: evicting 0 loses nothing -> swap.
    r = buf.insert(frame_from_voxels(2, line(0, 10) + line(20, 23)))
    assert r.reason is InsertReason.SWAPPED and r.evicted_ids == (0,) and r.new_voxels == 3
    assert buf.covered_voxels == 18 and buf.snapshot().frame_ids == (1, 2)
    # Frame 3 adds 2 new voxels but evicting 1 loses 5, evicting 2 loses 13 -> rejected.
    r = buf.insert(frame_from_voxels(3, line(40, 42)))
    assert r.reason is InsertReason.REJECTED_NO_GAIN and not r.added and buf.covered_voxels == 18
    # Nothing new at all -> rejected before any eviction is considered.
    r = buf.insert(frame_from_voxels(4, line(0, 5)))
    assert r.reason is InsertReason.REJECTED_TOO_FEW_NEW and r.new_voxels == 0
    assert buf.unique_voxel_counts() == {1: 5, 2: 13}


def test_thresholds():
    buf = RollingKeyframeBuffer(cfg(capacity=4, min_new_voxels=3, min_new_ratio=0.5))
    buf.insert(frame_from_voxels(0, line(0, 10)))
    assert buf.insert(frame_from_voxels(1, line(8, 10) + line(10, 12))).reason is (
        InsertReason.REJECTED_TOO_FEW_NEW  # 2 new < 3
    )
    assert buf.insert(frame_from_voxels(2, line(0, 8) + line(10, 14))).reason is (
        InsertReason.REJECTED_TOO_FEW_NEW  # 4 new of 12 < 50 %
    )
    assert buf.insert(frame_from_voxels(3, line(6, 10) + line(10, 14))).added  # 4 of 8


def test_swap_with_equal_coverage_only_when_allowed():
    a, b = line(0, 5), line(0, 5)
    strict = RollingKeyframeBuffer(cfg(capacity=1))
    strict.insert(frame_from_voxels(0, a))
    assert strict.insert(frame_from_voxels(1, b + line(9, 10))).reason is InsertReason.SWAPPED
    # 5 new voxels but losing the 6 unique of the keyframe: coverage would drop.
    assert strict.insert(frame_from_voxels(2, line(20, 25))).reason is InsertReason.REJECTED_NO_GAIN
    lenient = RollingKeyframeBuffer(cfg(capacity=1, min_swap_gain_voxels=0))
    lenient.insert(frame_from_voxels(0, line(0, 5)))
    r = lenient.insert(frame_from_voxels(1, line(20, 25)))  # same coverage -> allowed
    assert r.reason is InsertReason.SWAPPED and lenient.covered_voxels == 5


def test_forget_by_age_and_distance():
    buf = RollingKeyframeBuffer(cfg(capacity=4, max_age_s=10.0))
    buf.insert(frame_from_voxels(0, line(0, 3), stamp_s=0.0))
    buf.insert(frame_from_voxels(1, line(3, 6), stamp_s=5.0))
    r = buf.insert(frame_from_voxels(2, line(6, 9), stamp_s=12.0))
    assert r.forgotten_ids == (0,) and buf.snapshot().frame_ids == (1, 2)
    assert buf.covered_voxels == 6
    buf = RollingKeyframeBuffer(cfg(capacity=4, max_distance_m=2.0))
    buf.insert(frame_from_voxels(0, line(0, 3), position_m=(0, 0, 0)))
    buf.insert(frame_from_voxels(1, line(3, 6), position_m=(1.5, 0, 0)))
    r = buf.insert(frame_from_voxels(2, line(6, 9), position_m=(3.0, 0, 0)))
    assert r.forgotten_ids == (0,) and buf.snapshot().frame_ids == (1, 2)


def test_pixel_stride_and_voxel_size_are_used():
    # 4x4 point map, one voxel per pixel at 0.1 m; stride 2 keeps 4 of 16.
    ij = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1)
    xyz = np.concatenate([ij, np.zeros((4, 4, 1))], -1).astype(np.float32) * 0.1
    f = Frame(0, 0.0, np.zeros((4, 4, 3), np.uint8), xyz, np.ones((4, 4), bool), np.eye(4))
    assert RollingKeyframeBuffer(cfg(pixel_stride=2)).insert(f).new_voxels == 4
    assert RollingKeyframeBuffer(cfg(pixel_stride=1)).insert(f).new_voxels == 16
    assert RollingKeyframeBuffer(cfg(voxel_size_m=0.4)).insert(f).new_voxels == 4


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(capacity=0), "capacity"),
        (dict(voxel_size_m=0.0), "voxel_size_m"),
        (dict(pixel_stride=0), "pixel_stride"),
        (dict(min_new_ratio=1.5), "min_new_ratio"),
        (dict(min_new_voxels=-1), "min_new_voxels"),
        (dict(max_age_s=-1.0), "max_age_s"),
        (dict(max_distance_m=float("nan")), "max_distance_m"),
    ],
)
def test_config_validation_names_field(kw, name):
    with pytest.raises(ValueError, match=name):
        BufferConfig(**kw)


def test_frame_validation_names_argument():
    good = dict(
        frame_id=1, stamp_s=0.0, rgb=np.zeros((4, 4, 3), np.uint8),
        xyz_m=np.zeros((4, 4, 3), np.float32), valid=np.ones((4, 4), bool), T_world_cam=np.eye(4),
    )
    bad = [
        (dict(rgb=np.zeros((4, 4, 3), np.float32)), "rgb"),
        (dict(xyz_m=np.zeros((4, 4, 3), np.float64)), "xyz_m"),
        (dict(valid=np.ones((4, 5), bool)), "valid"),
        (dict(valid=np.ones((4, 4), np.uint8)), "valid"),
        (dict(T_world_cam=np.full((4, 4), np.inf)), "T_world_cam"),
        (dict(T_world_cam=np.eye(3)), "T_world_cam"),
        (dict(stamp_s=float("nan")), "stamp_s"),
        (dict(frame_id="a"), "frame_id"),
    ]
    for change, name in bad:
        with pytest.raises((ValueError, TypeError), match=name):
            Frame(**{**good, **change})
    f = Frame(**good)
    with pytest.raises(ValueError):
        f.xyz_m[0, 0, 0] = 1.0  # read-only view
    buf = RollingKeyframeBuffer(cfg())
    buf.insert(frame_from_voxels(7, line(0, 3)))
    with pytest.raises(ValueError, match="frame_id 7"):
        buf.insert(frame_from_voxels(7, line(5, 9)))
    with pytest.raises(TypeError, match="frame"):
        buf.insert("not a frame")


def _check_invariants(buf, capacity):
    kf = buf.keyframe_voxel_keys()
    assert len(kf) <= capacity
    union = set()
    ref = {}
    for keys in kf.values():
        union |= set(keys.tolist())
        for k in keys.tolist():
            ref[k] = ref.get(k, 0) + 1
    assert set(buf.covered_voxel_keys().tolist()) == union
    assert buf.covered_voxels == len(union)
    assert buf.reference_counts() == ref
    expected_unique = {fid: sum(ref[k] == 1 for k in keys.tolist()) for fid, keys in kf.items()}
    assert buf.unique_voxel_counts() == expected_unique
    snap = buf.snapshot()
    assert set(snap.frame_ids) == set(kf) and snap.covered_voxels == len(union)


frame_voxels = st.lists(
    st.tuples(st.integers(0, 12), st.integers(0, 3), st.integers(0, 1)), min_size=0, max_size=30
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(frame_voxels, min_size=1, max_size=25),
    st.integers(1, 5),
    st.integers(0, 3),
    st.integers(0, 2),
)
def test_buffer_invariants(frames, capacity, min_new, min_gain):
    buf = RollingKeyframeBuffer(
        cfg(capacity=capacity, min_new_voxels=min_new, min_swap_gain_voxels=min_gain)
    )
    history = []
    for i, vox in enumerate(frames):
        before = buf.snapshot()
        before_ids, before_cov = before.frame_ids, before.covered_voxels
        r = buf.insert(frame_from_voxels(i, vox))
        _check_invariants(buf, capacity)
        after = buf.snapshot()
        # earlier snapshot untouched; version changes iff the keyframe set changed
        assert before.frame_ids == before_ids and before.covered_voxels == before_cov
        assert (after.version != before.version) == (set(after.frame_ids) != set(before_ids))
        if r.reason is InsertReason.SWAPPED:
            assert after.covered_voxels - before_cov >= min_gain
            assert len(after) == capacity
        if r.added:
            assert i in after.frame_ids and r.new_voxels >= max(min_new, 1)
        else:
            assert after.frame_ids == before_ids
        history.append(before)
    for snap in history:  # all earlier snapshots still self-consistent
        assert len(snap) <= capacity


def test_snapshot_is_immutable_and_sorted_by_stamp():
    buf = RollingKeyframeBuffer(cfg(capacity=3))
    buf.insert(frame_from_voxels(5, line(0, 3), stamp_s=2.0))
    buf.insert(frame_from_voxels(6, line(3, 6), stamp_s=1.0))
    snap = buf.snapshot()
    assert snap.frame_ids == (6, 5) and isinstance(snap.keyframes, tuple)
    with pytest.raises(AttributeError):
        snap.version = 3
    with pytest.raises(ValueError):
        snap.keyframes[0].xyz_m[0, 0, 0] = 0.0
    buf.insert(frame_from_voxels(7, line(6, 9), stamp_s=3.0))
    assert snap.frame_ids == (6, 5) and buf.snapshot().frame_ids == (6, 5, 7)


def test_ingest_and_snapshot_threads():
    rng = np.random.default_rng(0)
    capacity = 6
    frames = [
        frame_from_voxels(i, [tuple(v) for v in rng.integers(0, 25, (40, 3))]) for i in range(400)
    ]
    buf = RollingKeyframeBuffer(cfg(capacity=capacity))
    done = threading.Event()
    errors, seen = [], []

    def ingest():
        try:
            for f in frames:
                buf.insert(f)
        except Exception as e:  # surfaced by the assertion below
            errors.append(e)
        finally:
            done.set()

    def read():
        last = -1
        while not done.is_set() or last < buf.snapshot().version:
            s = buf.snapshot()
            assert s.version >= last
            if s.version != last:
                # recompute coverage from the snapshot's own arrays, independently
                union = set()
                for kf in s.keyframes:
                    ijk = np.rint(kf.xyz_m[kf.valid].astype(np.float64) / 0.1).astype(np.int64)
                    union |= set(pack_voxel_indices(ijk).tolist())
                assert len(union) == s.covered_voxels and len(s) <= capacity
                seen.append(s.version)
            last = s.version

    readers = [threading.Thread(target=read) for _ in range(2)]
    writer = threading.Thread(target=ingest)
    for t in readers + [writer]:
        t.start()
    for t in readers + [writer]:
        t.join(timeout=60)
    assert not errors
    assert len(set(seen)) > 1  # readers really observed the buffer changing
    _check_invariants(buf, capacity)
