"""Message conversions: images (padding, byte order, encodings), camera info, poses, markers, clouds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
from geometry_msgs.msg import Transform  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from video3d_ros.geometry import Box3D  # noqa: E402
from video3d_ros.query import GroundedObject  # noqa: E402
from video3d_ros.ros import convert  # noqa: E402

pytestmark = pytest.mark.ros
RNG = np.random.default_rng(0)


def test_rgb_round_trip_and_channel_orders() -> None:
    rgb = RNG.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    msg = convert.rgb_to_image(rgb, Header())
    assert np.array_equal(convert.image_to_rgb(msg), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)
    msg = Image(height=5, width=7, encoding="bgra8", step=28, data=bgra.tobytes())
    assert np.array_equal(convert.image_to_rgb(msg), rgb)
    mono = rgb[:, :, 0].copy()
    msg = Image(height=5, width=7, encoding="mono8", step=7, data=mono.tobytes())
    assert np.array_equal(convert.image_to_rgb(msg), np.repeat(mono[:, :, None], 3, axis=2))


def test_row_padding_and_big_endian_depth() -> None:
    depth = RNG.integers(0, 5000, (4, 3), dtype=np.uint16)
    padded = np.zeros((4, 8), np.uint8)  # step 8 bytes > 3·2
    padded[:, :6] = depth.astype(">u2").view(np.uint8).reshape(4, 6)
    msg = Image(height=4, width=3, encoding="16UC1", is_bigendian=1, step=8, data=padded.tobytes())
    assert np.array_equal(convert.image_to_depth(msg), depth)
    f = RNG.random((4, 3)).astype(np.float32)
    msg = convert.depth_to_image(f, Header())
    assert msg.encoding == "32FC1" and np.array_equal(convert.image_to_depth(msg), f)


@pytest.mark.parametrize("bad,needle", [
    (dict(encoding="16UC1", step=6, data=bytes(10)), "expected step"),
    (dict(encoding="rgb8", step=2, data=bytes(8)), "step 2 <"),
    (dict(encoding="rgb8", height=0, step=0, data=b""), "empty"),
])
def test_bad_images_raise_with_the_reason(bad, needle) -> None:
    fields = dict(height=2, width=3)
    fields.update(bad)
    msg = Image(**fields)
    fn = convert.image_to_depth if msg.encoding == "16UC1" else convert.image_to_rgb
    with pytest.raises(ValueError, match=needle):
        fn(msg)


def test_transform_and_pose_conversions_agree() -> None:
    T = np.eye(4)
    c, s = np.cos(0.3), np.sin(0.3)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = [1.0, -2.0, 0.5]
    pose = convert.matrix_to_pose(T)
    assert np.allclose(convert.pose_to_matrix(pose), T)
    t = Transform()
    t.translation.x, t.translation.y, t.translation.z = 1.0, -2.0, 0.5
    t.rotation = pose.orientation
    assert np.allclose(convert.transform_to_matrix(t), T)


def test_transform_box_is_the_aabb_of_rotated_corners() -> None:
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90° about z
    T[:3, 3] = [10, 0, 0]
    out = convert.transform_box(Box3D((1, 0, 0), (2, 1, 1)), T)
    assert np.allclose(out.center_m, [10, 1, 0]) and np.allclose(out.size_m, [1, 2, 1])


def test_result_markers_layout() -> None:
    objs = [GroundedObject(3, 0.9, Box3D((0, 0, 0.5), (1, 1, 1)), "chair"),
            GroundedObject(5, 0.4, Box3D((2, 0, 0.5), (1, 1, 1)))]
    arr = convert.result_markers(objs, Header(frame_id="map"), lifetime_s=2.5,
                                 target=Box3D((1, 1, 1), (0, 0, 0)), query_text="the chair")
    m = arr.markers
    assert m[0].action == Marker.DELETEALL and m[0].header.frame_id == "map"
    assert [(x.ns, x.id) for x in m[1:]] == [("boxes", 0), ("labels", 0), ("boxes", 1), ("labels", 1), ("target", 0)]
    assert m[1].lifetime.sec == 2 and m[1].lifetime.nanosec == 500_000_000
    assert "chair" in m[2].text and "0.90" in m[2].text
    assert m[5].type == Marker.SPHERE  # a zero-size target is a point
    xs = sorted({round(p.x, 3) for p in m[1].points})
    assert xs == [-0.5, 0.5]


def test_point_cloud_round_trip() -> None:
    pts = RNG.random((100, 3)).astype(np.float32)
    msg = convert.points_to_cloud(pts, Header(frame_id="map"))
    assert msg.width == 100 and np.array_equal(convert.cloud_to_points(msg), pts)


def test_camera_info_round_trip_and_uncalibrated() -> None:
    K = np.array([[500.0, 0, 320], [0, 505.0, 240], [0, 0, 1]])
    info = convert.K_to_camera_info(K, 640, 480, Header())
    assert np.allclose(convert.camera_info_to_K(info), K)
    info.k = [0.0] * 9
    with pytest.raises(ValueError, match="calibrated"):
        convert.camera_info_to_K(info)
