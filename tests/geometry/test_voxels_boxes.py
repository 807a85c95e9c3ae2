"""Voxel keys and box IoU against independent computations."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from video3d_ros.geometry import (
    Box3D,
    box_iou_3d,
    box_iou_matrix,
    greedy_suppression,
    depth_to_world_m,
    pack_voxel_indices,
    points_in_box_mask,
    unpack_voxel_keys,
    voxel_keys,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(*[st.integers(-(2**20), 2**20 - 1)] * 3), min_size=1, max_size=50))
def test_pack_unpack_roundtrip_and_order(ijk):
    arr = np.array(ijk, np.int64)
    keys = pack_voxel_indices(arr)
    np.testing.assert_array_equal(unpack_voxel_keys(keys), arr)
    # packing preserves lexicographic order, so unique keys == unique rows
    assert len(np.unique(keys)) == len({tuple(r) for r in ijk})


def test_pack_out_of_range():
    with pytest.raises(ValueError, match="voxel indices"):
        pack_voxel_indices(np.array([[2**20, 0, 0]]))


def test_plane_gives_known_voxels():
    # Fronto-parallel plane at z = 2.0 m seen by a 9x9 px camera, fx = fy = 10,
    # cx = cy = 4: x, y = (u - 4) * 0.2 -> -0.8 .. 0.8 m, i.e. voxel indices -4 .. 4
    # (centres of 0.2 m voxels, far from rounding boundaries), z index 2.0/0.2 = 10.
    K = np.array([[10.0, 0, 4.0], [0, 10.0, 4.0], [0, 0, 1]])
    pm = depth_to_world_m(np.full((9, 9), 2000, np.uint16), K, np.eye(4))
    keys = voxel_keys(pm.xyz_m, pm.valid, voxel_size_m=0.2)
    got = {tuple(int(x) for x in r) for r in unpack_voxel_keys(keys)}
    assert got == {(i, j, 10) for i in range(-4, 5) for j in range(-4, 5)}
    # stride 2 keeps pixels 0, 2, 4, 6, 8 in each direction
    keys2 = voxel_keys(pm.xyz_m, pm.valid, voxel_size_m=0.2, pixel_stride=2)
    sub = {tuple(int(x) for x in r) for r in unpack_voxel_keys(keys2)}
    assert sub == {(i, j, 10) for i in range(-4, 5, 2) for j in range(-4, 5, 2)}
    # rotating the camera 90 degrees about the world x axis maps camera z to world -y
    T = np.eye(4)
    T[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
    T[:3, 3] = [0.0, 0.0, 1.0]
    pm = depth_to_world_m(np.full((9, 9), 2000, np.uint16), K, T)
    rot = {tuple(int(x) for x in r) for r in unpack_voxel_keys(voxel_keys(pm.xyz_m, pm.valid, 0.2))}
    # camera (x, y, z) -> world (x, z, -y + 1): y index = 10, z index = -j + 5
    assert rot == {(i, 10, -j + 5) for i in range(-4, 5) for j in range(-4, 5)}


def test_voxel_keys_match_set_of_tuples():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-3, 3, (40, 50, 3)).astype(np.float32)
    valid = rng.random((40, 50)) > 0.2
    xyz[0, 0] = np.nan
    valid[0, 0] = True  # non-finite points are skipped even when marked valid
    keys = voxel_keys(xyz, valid, 0.25, pixel_stride=3)
    ref = set()
    for r in range(0, 40, 3):
        for c in range(0, 50, 3):
            if valid[r, c] and np.isfinite(xyz[r, c]).all():
                ref.add(tuple(np.rint(xyz[r, c].astype(np.float64) / 0.25).astype(int)))
    assert {tuple(r) for r in unpack_voxel_keys(keys)} == ref
    assert np.all(np.diff(keys) > 0)


def test_voxel_keys_bad_input():
    with pytest.raises(ValueError, match="valid"):
        voxel_keys(np.zeros((4, 4, 3), np.float32), np.ones((4, 5), bool))
    with pytest.raises(TypeError, match="xyz_m"):
        voxel_keys(np.zeros((4, 3), np.int32))
    with pytest.raises(ValueError, match="pixel_stride"):
        voxel_keys(np.zeros((4, 4, 3), np.float32), None, 0.1, pixel_stride=0)
    with pytest.raises(ValueError, match="voxel_size_m"):
        voxel_keys(np.zeros((4, 3), np.float32), None, -1.0)


def test_box_iou_known_values():
    a = Box3D(center_m=np.zeros(3), size_m=np.full(3, 2.0))  # volume 8
    b = Box3D(center_m=np.array([1.0, 0, 0]), size_m=np.full(3, 2.0))  # overlap 1x2x2 = 4
    assert box_iou_3d(a, b) == pytest.approx(4 / 12)
    assert box_iou_3d(a, a) == pytest.approx(1.0)
    far = Box3D(center_m=np.array([5.0, 0, 0]), size_m=np.ones(3))
    assert box_iou_3d(a, far) == 0.0


def test_box_iou_matrix_matches_pairwise():
    rng = np.random.default_rng(0)
    A = np.c_[rng.uniform(-1, 1, (7, 3)), rng.uniform(0.1, 2, (7, 3))]
    B = np.c_[rng.uniform(-1, 1, (5, 3)), rng.uniform(0.1, 2, (5, 3))]
    M = box_iou_matrix(A, B)
    for i in range(7):
        for j in range(5):
            lo = np.maximum(A[i, :3] - A[i, 3:] / 2, B[j, :3] - B[j, 3:] / 2)
            hi = np.minimum(A[i, :3] + A[i, 3:] / 2, B[j, :3] + B[j, 3:] / 2)
            inter = np.prod(np.clip(hi - lo, 0, None))
            union = A[i, 3:].prod() + B[j, 3:].prod() - inter
            assert M[i, j] == pytest.approx(inter / (union + 1e-8))
    with pytest.raises(ValueError, match="boxes_b"):
        box_iou_matrix(A, B[:, :5])


def test_points_in_box():
    box = Box3D.from_min_max(np.array([0, 0, 0]), np.array([1, 2, 3]))
    pts = np.array([[0.5, 1, 1], [1, 2, 3], [1.01, 1, 1], [-0.1, 0, 0]])
    np.testing.assert_array_equal(points_in_box_mask(pts, box), [True, True, False, False])
    with pytest.raises(ValueError, match="size_m"):
        Box3D(center_m=np.zeros(3), size_m=np.array([1, -1, 1]))


def test_greedy_suppression_keeps_the_first_of_each_overlapping_group():
    unit = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    inner = [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]  # inside unit: IoU 1/8
    shifted = [0.5, 0.0, 0.0, 1.0, 1.0, 1.0]  # IoU with unit 1/3
    far = [5.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    rows = np.array([unit, inner, shifted, far])
    assert greedy_suppression(rows, 0.1) == [0, 3]
    assert greedy_suppression(rows, 0.2) == [0, 1, 3]  # 1/8 < 0.2 ≤ 1/3
    assert greedy_suppression(rows, 0.12) == [0, 3]
    assert greedy_suppression(rows, 0.13) == [0, 1, 3]
    assert greedy_suppression(rows, 0.5) == [0, 1, 2, 3]
    assert greedy_suppression(rows[::-1], 0.1) == [0, 1, 2]  # the order is the priority: unit goes
    assert greedy_suppression(rows, 0.5, limit=2) == [0, 1]
    assert greedy_suppression(np.zeros((0, 6)), 0.1) == []
