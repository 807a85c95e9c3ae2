"""recording_player: replay an RGB-D recording into video3d_node's inputs — no rosbag2 install needed.

    python -m video3d_ros.ros.recording_player --ros-args -p path:=my_bag.mcap -p rate:=1.0
    ros2 run video3d_ros recording_player --ros-args -p path:=scans/scene0000_00

Reads a rosbag2 recording (MCAP or sqlite3, through the ``rosbags`` library), a
ScanNet posed-images folder or a TUM-style folder with the same readers as
``video3d ask`` (:mod:`video3d_ros.recordings`), and publishes what the node
listens to: ``color/image`` (rgb8), ``depth/image`` (16UC1 or 32FC1, as
recorded), ``color/camera_info``, ``depth/camera_info`` and ``camera_pose``
(PoseStamped in ``world_frame``). Stamps are the recording's, shifted to now,
so the node's pairing and pose lookup work as live; with ``loop`` the
recording starts over with stamps that keep increasing.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile

from ..recordings import open_recording
from .rgbd_publisher import RgbdPublisher
from ._spin import spin_node

_PARAMS = {
    "path": ("", "recording: rosbag2 file/folder, ScanNet posed-images folder or TUM-style folder"),
    "layout": ("", "force a layout (scannet, rosbag2, tum); empty = detect"),
    "rate": (1.0, "playback speed (1.0 = real time)"),
    "loop": (False, "start over at the end"),
    "wait_for_subscribers": (True, "start only once something subscribes to the images and poses"),
    "wait_for_acks": (True, "after each frame, wait (up to 1 s) until reliable subscribers acknowledged it"),
    "world_frame": ("map", "frame_id of the published poses"),
    "optical_frame": ("camera_color_optical_frame", "frame_id of images and camera_info"),
}


class RecordingPlayer(Node):
    def __init__(self, node_name: str = "recording_player", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, doc) in _PARAMS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=doc))
        p = {name: self.get_parameter(name).value for name in _PARAMS}
        if not p["path"]:
            raise ValueError("parameter 'path' is required (the recording to replay)")
        if p["rate"] <= 0:
            raise ValueError(f"parameter 'rate' must be > 0, got {p['rate']}")
        self.params = p
        self.reader = open_recording(p["path"], layout=p["layout"] or None)
        self.out = RgbdPublisher(self, QoSProfile(depth=10), p["world_frame"], p["optical_frame"])
        self.published = 0
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, daemon=True, name="recording-player")
        self._thread.start()
        self.get_logger().info(f"replaying {len(self.reader)} frames of {p['path']} "
                               f"({self.reader.layout.value}) at {p['rate']}x")

    def _play(self) -> None:
        """Publish frames paced by their recorded stamps, shifted to the current clock."""
        if self.params["wait_for_subscribers"]:
            pubs = (self.out.color, self.out.depth, self.out.color_info, self.out.depth_info,
                    self.out.pose)
            while any(p.get_subscription_count() == 0 for p in pubs):  # else the first frames are lost
                if self._stop.wait(0.05):
                    return
        offset_s = None
        last_s = 0.0
        while not self._stop.is_set():
            start_wall = time.monotonic()
            first_stamp = None
            for _, obs in self.reader.observations(desc="replaying"):
                if self._stop.is_set():
                    return
                first_stamp = obs.stamp_s if first_stamp is None else first_stamp
                due = start_wall + (obs.stamp_s - first_stamp) / self.params["rate"]
                self._stop.wait(max(0.0, due - time.monotonic()))
                if offset_s is None:
                    offset_s = self.get_clock().now().nanoseconds * 1e-9 - obs.stamp_s
                stamp_s = max(obs.stamp_s + offset_s, last_s + 1e-3)  # increasing across loops
                last_s = stamp_s
                self._publish(obs, stamp_s)
            self.passes += 1
            if not self.params["loop"]:
                return
            offset_s = None

    def _publish(self, obs, stamp_s: float) -> None:
        depth = obs.depth
        if depth.dtype == np.uint16 and abs(self.reader.depth_scale_m - 0.001) > 1e-12:
            # 16UC1 means millimetres on the wire (REP 118): send other scales as float metres
            depth = np.where(depth > 0, depth * np.float32(self.reader.depth_scale_m), np.nan).astype(np.float32)
        self.out.publish(stamp_s, obs.rgb, depth, obs.K_color, obs.T_world_cam, obs.K_depth)
        if self.params["wait_for_acks"]:
            self.out.wait_acked(1.0)  # like `ros2 bag play --wait-for-all-acked`: no frame lost to a slow reader
        self.published += 1

    def destroy_node(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    spin_node(RecordingPlayer, args)


if __name__ == "__main__":
    main()
