"""Write one set of posed RGB-D observations in the TUM-style and rosbag2 layouts.

The observations come from the ScanNet-layout reader on a generated scan, so
every layout holds the same pixels, stamps and poses (poses as quaternions).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from video3d_ros.ingest import RgbdObservation

TS = get_typestore(Stores.LATEST)
T = TS.types


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def quat_xyzw(T_: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(T_[:3, :3]).as_quat()


def write_tum(obs: Sequence[RgbdObservation], root: Path, *, depth_dt_s: float = 0.004,
              depth_factor: int = 1, write_intrinsics: bool = True, write_poses: bool = True) -> Path:
    """rgb/<t>.png, depth/<t>.png (uint16 ×depth_factor), rgb.txt, depth.txt, groundtruth.txt, intrinsics.yaml."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines, gt = ["# timestamp filename"], ["# timestamp filename"], ["# timestamp tx ty tz qx qy qz qw"]
    for o in obs:
        tc, td = f"{o.stamp_s:.6f}", f"{o.stamp_s + depth_dt_s:.6f}"
        (root / "rgb" / f"{tc}.png").write_bytes(png_bytes(o.rgb))
        (root / "depth" / f"{td}.png").write_bytes(png_bytes((o.depth.astype(np.uint32) * depth_factor).astype(np.uint16)))
        rgb_lines.append(f"{tc} rgb/{tc}.png")
        depth_lines.append(f"{td} depth/{td}.png")
        q, t = quat_xyzw(o.T_world_cam), o.T_world_cam[:3, 3]
        gt.append(" ".join([tc] + [repr(float(v)) for v in (*t, *q)]))
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    if write_poses:
        (root / "groundtruth.txt").write_text("\n".join(gt) + "\n")
    if write_intrinsics:
        K = np.asarray(obs[0].K_color)
        (root / "intrinsics.yaml").write_text(
            f"fx: {float(K[0, 0])!r}\nfy: {float(K[1, 1])!r}\ncx: {float(K[0, 2])!r}\ncy: {float(K[1, 2])!r}\n")
    return root


def _header(t_s: float, frame: str):
    sec = int(np.floor(t_s))
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((t_s - sec) * 1e9))),
                                    frame_id=frame)


def _image(arr: np.ndarray, encoding: str, t_s: float, frame: str):
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return T["sensor_msgs/msg/Image"](header=_header(t_s, frame), height=h, width=w, encoding=encoding,
                                      is_bigendian=0, step=arr.nbytes // h,
                                      data=np.frombuffer(arr.tobytes(), np.uint8))


def _info(K: np.ndarray, w: int, h: int, t_s: float, frame: str):
    P = np.zeros((3, 4))
    P[:3, :3] = K
    return T["sensor_msgs/msg/CameraInfo"](
        header=_header(t_s, frame), height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.asarray(K, float).reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _transform(T_: np.ndarray):
    q, t = quat_xyzw(T_), T_[:3, 3]
    return T["geometry_msgs/msg/Transform"](
        translation=T["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=T["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))


# camera_link → optical frame (REP 103: optical z forward = link x forward)
T_LINK_OPTICAL = np.array([[0.0, 0, 1, 0.02], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


def write_rosbag(obs: Sequence[RgbdObservation], path: Path, *, storage: StoragePlugin,
                 pose_source: str = "tf", depth_encoding: str = "16UC1", depth_dt_s: float = 0.004,
                 with_pose: bool = True, extra_colour_topic: bool = False) -> Path:
    """A rosbag2 with colour (rgb8), depth, camera_info and TF (map → camera_link → optical) or a PoseStamped topic.

    ``depth_encoding``: "16UC1" (mm as stored), "32FC1" (metres, float32(mm)·float32(0.001)) or
    "32FC1mm" (float millimetres, to test the unit check).
    """
    with Writer(path, version=9, storage_plugin=storage) as w:
        c_rgb = w.add_connection("/camera/color/image_raw", "sensor_msgs/msg/Image", typestore=TS)
        c_dep = w.add_connection("/camera/depth/image_rect_raw", "sensor_msgs/msg/Image", typestore=TS)
        c_info = w.add_connection("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo", typestore=TS)
        c_extra = (w.add_connection("/camera/ir/image_raw", "sensor_msgs/msg/Image", typestore=TS)
                   if extra_colour_topic else None)
        if with_pose and pose_source == "tf":
            c_tf = w.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=TS)
            c_static = w.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=TS)
            static = T["geometry_msgs/msg/TransformStamped"](header=_header(obs[0].stamp_s, "camera_link"),
                                                             child_frame_id="camera_optical_frame",
                                                             transform=_transform(T_LINK_OPTICAL))
            w.write(c_static, int(obs[0].stamp_s * 1e9),
                    TS.serialize_cdr(T["tf2_msgs/msg/TFMessage"](transforms=[static]), "tf2_msgs/msg/TFMessage"))
        elif with_pose:
            c_pose = w.add_connection("/camera/pose", "geometry_msgs/msg/PoseStamped", typestore=TS)
        for o in obs:
            t_ns = int(round(o.stamp_s * 1e9))
            h, wd = o.rgb.shape[:2]
            msgs = [(c_rgb, _image(o.rgb, "rgb8", o.stamp_s, "camera_optical_frame"), "sensor_msgs/msg/Image"),
                    (c_info, _info(o.K_color, wd, h, o.stamp_s, "camera_optical_frame"), "sensor_msgs/msg/CameraInfo")]
            if depth_encoding == "16UC1":
                d, enc = o.depth, "16UC1"
            elif depth_encoding == "32FC1":
                d, enc = o.depth.astype(np.float32) * np.float32(0.001), "32FC1"
            else:
                d, enc = o.depth.astype(np.float32), "32FC1"
            msgs.append((c_dep, _image(d, enc, o.stamp_s + depth_dt_s, "camera_optical_frame"), "sensor_msgs/msg/Image"))
            if c_extra is not None:
                msgs.append((c_extra, _image(o.rgb[:, :, 0], "mono8", o.stamp_s, "camera_ir"), "sensor_msgs/msg/Image"))
            if with_pose and pose_source == "tf":
                T_map_link = o.T_world_cam @ np.linalg.inv(T_LINK_OPTICAL)
                tr = T["geometry_msgs/msg/TransformStamped"](header=_header(o.stamp_s, "map"),
                                                         child_frame_id="camera_link", transform=_transform(T_map_link))
                msgs.append((c_tf, T["tf2_msgs/msg/TFMessage"](transforms=[tr]), "tf2_msgs/msg/TFMessage"))
            elif with_pose:
                tr = _transform(o.T_world_cam)
                pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](
                    x=tr.translation.x, y=tr.translation.y, z=tr.translation.z), orientation=tr.rotation)
                msgs.append((c_pose, T["geometry_msgs/msg/PoseStamped"](header=_header(o.stamp_s, "map"), pose=pose),
                             "geometry_msgs/msg/PoseStamped"))
            for k, (conn, msg, typ) in enumerate(msgs):
                w.write(conn, t_ns + k * 1000, TS.serialize_cdr(msg, typ))
    return path
