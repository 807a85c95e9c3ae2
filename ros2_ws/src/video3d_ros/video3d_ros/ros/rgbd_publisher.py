"""Publishers of what video3d_node listens to: colour, depth, camera infos, camera pose (and TF)."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from . import convert

try:
    import tf2_ros
except ImportError:
    tf2_ros = None


class RgbdPublisher:
    """``color/image`` (rgb8), ``depth/image`` (16UC1 mm or 32FC1 m), ``color/camera_info``,
    ``depth/camera_info``, ``camera_pose`` (PoseStamped in ``world_frame``) and, when tf2_ros is
    installed, the TF world_frame → ``optical_frame``."""

    def __init__(self, node: Node, qos: QoSProfile, world_frame: str, optical_frame: str) -> None:
        self.world_frame, self.optical_frame = world_frame, optical_frame
        self.color = node.create_publisher(Image, "color/image", qos)
        self.depth = node.create_publisher(Image, "depth/image", qos)
        self.color_info = node.create_publisher(CameraInfo, "color/camera_info", qos)
        self.depth_info = node.create_publisher(CameraInfo, "depth/camera_info", qos)
        self.pose = node.create_publisher(PoseStamped, "camera_pose", 50)
        self.tf = tf2_ros.TransformBroadcaster(node) if tf2_ros is not None else None

    def wait_acked(self, timeout_s: float) -> bool:
        """Block until reliable subscribers acknowledged everything published (backpressure for replay)."""
        timeout = Duration(seconds=timeout_s)
        return all(p.wait_for_all_acked(timeout) for p in (self.pose, self.color, self.depth))

    def publish(self, stamp_s: float, rgb: np.ndarray, depth: np.ndarray, K_color: np.ndarray,
                T_world_cam: np.ndarray, K_depth: np.ndarray | None = None) -> None:
        """One posed frame; ``K_depth`` None means depth is registered to colour (same K, same size)."""
        stamp = convert.s_to_stamp(stamp_s)
        header = Header(stamp=stamp, frame_id=self.optical_frame)
        pose = PoseStamped(header=Header(stamp=stamp, frame_id=self.world_frame),
                           pose=convert.matrix_to_pose(T_world_cam))
        self.pose.publish(pose)
        if self.tf is not None:
            t = TransformStamped(header=pose.header, child_frame_id=self.optical_frame)
            t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (
                pose.pose.position.x, pose.pose.position.y, pose.pose.position.z)
            t.transform.rotation = pose.pose.orientation
            self.tf.sendTransform(t)
        h, w = rgb.shape[:2]
        self.color_info.publish(convert.K_to_camera_info(K_color, w, h, header))
        dh, dw = depth.shape
        self.depth_info.publish(convert.K_to_camera_info(K_color if K_depth is None else K_depth, dw, dh, header))
        self.color.publish(convert.rgb_to_image(rgb, header))
        self.depth.publish(convert.depth_to_image(depth, header))
