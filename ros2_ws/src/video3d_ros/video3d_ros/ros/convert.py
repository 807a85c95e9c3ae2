"""Message ↔ numpy / plain-Python conversions (the only ROS-typed helpers).

Image decoding is shared with the rosbag reader (:mod:`video3d_ros.image_msgs`).
"""

from __future__ import annotations

import sys

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, Transform
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from video3d_interfaces.msg import Box3D as Box3DMsg

from .. import image_msgs
from ..geometry import Box3D
from ..query import GroundedObject
from ..streams import pose_from_translation_quaternion

COLOR_ENCODINGS = tuple(image_msgs.COLOR_ENCODINGS)
DEPTH_ENCODINGS = tuple(image_msgs.DEPTH_ENCODINGS)
image_to_rgb = image_msgs.image_to_rgb  # (H, W, 3) uint8 from rgb8/bgr8/rgba8/bgra8/mono8
image_to_depth = image_msgs.image_to_depth  # (H, W) uint16 mm or float32 m (REP 118)


def stamp_to_s(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def s_to_stamp(t_s: float) -> Time:
    sec = int(np.floor(t_s))
    return Time(sec=sec, nanosec=min(int(round((t_s - sec) * 1e9)), 999_999_999))


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                 data=rgb.tobytes())


def depth_to_image(depth: np.ndarray, header: Header) -> Image:
    depth = np.ascontiguousarray(depth)
    if depth.dtype == np.uint16:
        encoding = "16UC1"
    elif depth.dtype == np.float32:
        encoding = "32FC1"
    else:
        raise ValueError(f"depth must be uint16 or float32, got {depth.dtype}")
    h, w = depth.shape
    return Image(header=header, height=h, width=w, encoding=encoding,
                 is_bigendian=int(sys.byteorder == "big"), step=w * depth.itemsize,
                 data=depth.tobytes())


def camera_info_to_K(msg: CameraInfo) -> np.ndarray:
    """3x3 intrinsics from CameraInfo.k; rejects an all-zero (uncalibrated) matrix."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"camera_info k has no usable focal length (fx={K[0, 0]}, fy={K[1, 1]}); "
                         "is the camera calibrated?")
    return K


def K_to_camera_info(K: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    info.k = [float(v) for v in np.asarray(K, dtype=np.float64).reshape(-1)]
    info.d = [0.0] * 5
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:3, :3] = K
    info.p = [float(v) for v in P.reshape(-1)]
    return info


def transform_to_matrix(t: Transform) -> np.ndarray:
    return pose_from_translation_quaternion(
        (t.translation.x, t.translation.y, t.translation.z),
        (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w))


def pose_to_matrix(p: Pose) -> np.ndarray:
    return pose_from_translation_quaternion(
        (p.position.x, p.position.y, p.position.z),
        (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w))


def matrix_to_pose(T: np.ndarray) -> Pose:
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(np.asarray(T)[:3, :3]).as_quat()  # x, y, z, w
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in np.asarray(T)[:3, 3])
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
    return pose


def box_from_msg(msg: Box3DMsg) -> Box3D:
    """video3d_interfaces/Box3D → Box3D (ValueError on NaN or negative sizes)."""
    return Box3D((msg.center.x, msg.center.y, msg.center.z), (msg.size.x, msg.size.y, msg.size.z))


def box_to_msg(box: Box3D) -> Box3DMsg:
    msg = Box3DMsg()
    msg.center.x, msg.center.y, msg.center.z = (float(v) for v in box.center_m)
    msg.size.x, msg.size.y, msg.size.z = (float(v) for v in box.size_m)
    return msg


def transform_box(box: Box3D, T_to_from: np.ndarray) -> Box3D:
    """Axis-aligned box moved into another frame: the AABB of its rotated corners."""
    T = np.asarray(T_to_from, dtype=np.float64)
    if np.allclose(T, np.eye(4)):
        return box
    corners = box.center_m + box.size_m / 2 * np.array(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    moved = corners @ T[:3, :3].T + T[:3, 3]
    return Box3D.from_min_max(moved.min(axis=0), moved.max(axis=0))


_BOX_EDGES = ((0, 1), (0, 2), (1, 3), (2, 3), (4, 5), (4, 6), (5, 7), (6, 7),
              (0, 4), (1, 5), (2, 6), (3, 7))


def _box_lines(box: Box3D) -> list[Point]:
    lo, hi = box.min_m, box.max_m
    corners = [(x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    pts = []
    for a, b in _BOX_EDGES:
        for c in (corners[a], corners[b]):
            pts.append(Point(x=float(c[0]), y=float(c[1]), z=float(c[2])))
    return pts


def result_markers(objects: list[GroundedObject], header: Header, lifetime_s: float,
                   target: Box3D | None = None, query_text: str = "") -> MarkerArray:
    """RViz markers of a query's result.

    A DELETEALL (with ``header.frame_id``) comes first; then namespace ``boxes``
    (wireframe per object, id = rank, best drawn green), ``labels`` (rank,
    label and score above each box, id = rank) and ``target`` (the caption
    target, id 0).
    """
    out = MarkerArray()
    clear = Marker(header=header, action=Marker.DELETEALL)
    out.markers.append(clear)
    life = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    for rank, obj in enumerate(objects):
        colour = ColorRGBA(r=0.1, g=0.9, b=0.2, a=1.0) if rank == 0 else ColorRGBA(r=1.0, g=0.6, b=0.1, a=0.7)
        box = Marker(header=header, ns="boxes", id=rank, type=Marker.LINE_LIST, action=Marker.ADD,
                     lifetime=life, color=colour, points=_box_lines(obj.box))
        box.pose.orientation.w = 1.0
        box.scale.x = 0.03 if rank == 0 else 0.015
        out.markers.append(box)
        label = Marker(header=header, ns="labels", id=rank, type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, lifetime=life, color=colour)
        label.pose.position.x, label.pose.position.y = (float(v) for v in obj.box.center_m[:2])
        label.pose.position.z = float(obj.box.max_m[2] + 0.15)
        label.pose.orientation.w = 1.0
        label.scale.z = 0.15
        name = obj.label or (query_text[:40] if rank == 0 else "")
        label.text = f"#{rank + 1} {name} ({obj.score:.2f})".replace("  ", " ")
        out.markers.append(label)
    if target is not None:
        t = Marker(header=header, ns="target", id=0, action=Marker.ADD, lifetime=life,
                   color=ColorRGBA(r=0.2, g=0.5, b=1.0, a=0.5))
        t.type = Marker.CUBE if np.any(target.size_m > 0) else Marker.SPHERE
        t.pose.position.x, t.pose.position.y, t.pose.position.z = (float(v) for v in target.center_m)
        t.pose.orientation.w = 1.0
        size = np.where(target.size_m > 0, target.size_m, 0.1)
        t.scale.x, t.scale.y, t.scale.z = (float(v) for v in size)
        out.markers.append(t)
    return out


def frustum_markers(poses: list[np.ndarray], K: np.ndarray | None, image_hw: tuple[int, int] | None,
                    header: Header, depth_m: float = 0.3) -> MarkerArray:
    """Keyframe camera frustums (namespace ``keyframes``, one LINE_LIST, id 0)."""
    out = MarkerArray()
    m = Marker(header=header, ns="keyframes", id=0, type=Marker.LINE_LIST, action=Marker.ADD,
               color=ColorRGBA(r=0.3, g=0.7, b=1.0, a=0.9))
    m.pose.orientation.w = 1.0
    m.scale.x = 0.01
    if K is not None and image_hw is not None:
        h, w = image_hw
        uv = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
        rays = np.c_[(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1], np.ones(4)] * depth_m
    else:
        rays = np.array([[-0.4, -0.3, 1], [0.4, -0.3, 1], [0.4, 0.3, 1], [-0.4, 0.3, 1]]) * depth_m
    for T in poses:
        origin = T[:3, 3]
        corners = rays @ T[:3, :3].T + origin
        for i in range(4):
            for a, b in ((origin, corners[i]), (corners[i], corners[(i + 1) % 4])):
                m.points.append(Point(x=float(a[0]), y=float(a[1]), z=float(a[2])))
                m.points.append(Point(x=float(b[0]), y=float(b[1]), z=float(b[2])))
    out.markers.append(m)
    return out


def points_to_cloud(points_m: np.ndarray, header: Header) -> PointCloud2:
    """(N, 3) float points → PointCloud2 with x, y, z float32 fields."""
    pts = np.ascontiguousarray(points_m, dtype=np.float32).reshape(-1, 3)
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate("xyz")]
    return PointCloud2(header=header, height=1, width=len(pts), fields=fields,
                       is_bigendian=sys.byteorder == "big", point_step=12, row_step=12 * len(pts),
                       data=pts.tobytes(), is_dense=True)


def cloud_to_points(msg: PointCloud2) -> np.ndarray:
    """(N, 3) float32 x, y, z of a PointCloud2 written by :func:`points_to_cloud`-like producers."""
    offsets = {f.name: f.offset for f in msg.fields if f.datatype == PointField.FLOAT32}
    if not {"x", "y", "z"} <= set(offsets):
        raise ValueError(f"PointCloud2 needs float32 x, y, z fields, got {[f.name for f in msg.fields]}")
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(-1, msg.point_step)
    cols = [raw[:, offsets[k]:offsets[k] + 4].copy().view(np.float32)[:, 0] for k in "xyz"]
    return np.stack(cols, axis=1)


def diagnostic_status(name: str, hardware_id: str, level: bytes | int, message: str,
                      values: dict[str, object]) -> DiagnosticStatus:
    """``level`` is DiagnosticStatus.OK/WARN/ERROR (a byte in rclpy's message classes)."""
    if isinstance(level, int):
        level = bytes([level])
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
