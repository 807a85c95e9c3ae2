"""Unprojection against hand-computed geometry."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from video3d_ros.geometry import depth_to_world_m

K3 = np.array([[400.0, 0.0, 31.5], [0.0, 420.0, 23.5], [0.0, 0.0, 1.0]])


def _pixel_grid(h, w):
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return u, v


def test_plane_at_known_depth_identity_pose():
    h, w = 48, 64
    depth = np.full((h, w), 2500, np.uint16)  # 2.5 m
    pm = depth_to_world_m(depth, K3, np.eye(4))
    u, v = _pixel_grid(h, w)
    np.testing.assert_allclose(pm.xyz_m[..., 0], (u - 31.5) * 2.5 / 400.0, atol=1e-5)
    np.testing.assert_allclose(pm.xyz_m[..., 1], (v - 23.5) * 2.5 / 420.0, atol=1e-5)
    np.testing.assert_allclose(pm.xyz_m[..., 2], 2.5, atol=1e-6)
    assert pm.valid.all()
    assert pm.xyz_m.dtype == np.float32 and pm.xyz_m.shape == (h, w, 3)


def test_scannet_4x4_intrinsic_equals_3x3():
    K4 = np.eye(4)
    K4[:3, :3] = K3
    depth = np.random.default_rng(0).uniform(0.5, 4.0, (20, 30)).astype(np.float32)
    a = depth_to_world_m(depth, K3, np.eye(4))
    b = depth_to_world_m(depth, K4, np.eye(4))
    np.testing.assert_array_equal(a.xyz_m, b.xyz_m)


def test_rotation_and_translation_move_points_as_expected():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 5.0, (12, 16)).astype(np.float32)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("zyx", [30, -20, 70], degrees=True).as_matrix()
    T[:3, 3] = [1.0, -2.0, 0.5]
    A = np.eye(4)
    A[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    A[:3, 3] = [3.0, 0.0, 0.0]
    cam = depth_to_world_m(depth, K3, np.eye(4)).xyz_m.reshape(-1, 3).astype(np.float64)
    world = depth_to_world_m(depth, K3, T, T_align=A).xyz_m.reshape(-1, 3)
    expected = (A @ T @ np.c_[cam, np.ones(len(cam))].T).T[:, :3]
    np.testing.assert_allclose(world, expected, atol=2e-5)
    # A 90° yaw about z maps (x, y) -> (-y, x): check one point explicitly.
    p = depth_to_world_m(depth, K3, np.eye(4), T_align=A).xyz_m[3, 5]
    c = cam.reshape(12, 16, 3)[3, 5]
    np.testing.assert_allclose(p, [3.0 - c[1], c[0], c[2]], atol=1e-5)


def test_invalid_depth_uint16_and_float():
    d16 = np.array([[0, 50, 1000], [12000, 3000, 0]], np.uint16)
    pm = depth_to_world_m(d16, K3, np.eye(4), min_depth_m=0.1, max_depth_m=10.0)
    np.testing.assert_array_equal(pm.valid, [[False, False, True], [False, True, False]])
    df = np.array([[np.nan, np.inf, -1.0], [0.0, 1.0, 11.0]], np.float32)
    pm = depth_to_world_m(df, K3, np.eye(4))
    np.testing.assert_array_equal(pm.valid, [[False, False, False], [False, True, False]])
    # invalid pixels unproject with z = 0, i.e. to the camera centre
    T = np.eye(4)
    T[:3, 3] = [1, 2, 3]
    pm = depth_to_world_m(df, K3, T)
    np.testing.assert_allclose(pm.xyz_m[~pm.valid], np.tile([1, 2, 3], (5, 1)))
    assert np.isfinite(pm.xyz_m).all()


def test_depth_scale():
    d = np.full((2, 2), 500, np.uint16)
    pm = depth_to_world_m(d, K3, np.eye(4), depth_scale_m=0.002)
    np.testing.assert_allclose(pm.xyz_m[..., 2], 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=np.zeros((4, 4), np.int32)), "depth"),
        (dict(depth=np.zeros((4, 4, 1), np.uint16)), "depth"),
        (dict(K=np.eye(2)), "K"),
        (dict(K=np.zeros((3, 3))), "K"),
        (dict(T_world_cam=np.full((4, 4), np.nan)), "T_world_cam"),
        (dict(T_world_cam=np.eye(3)), "T_world_cam"),
        (dict(T_align=np.ones((4, 4))), "T_align"),
        (dict(min_depth_m=5.0, max_depth_m=1.0), "min_depth_m"),
    ],
)
def test_bad_input_names_argument(kwargs, match):
    args = dict(depth=np.ones((4, 4), np.uint16), K=K3, T_world_cam=np.eye(4))
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in args}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        depth_to_world_m(args["depth"], args["K"], args["T_world_cam"], **extra)
