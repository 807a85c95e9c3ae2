"""synthetic_camera: a generated room seen by a moving RGB-D camera, in real time.

Stands in for a robot in tests and the demo. Publishes, looping over the
scan: ``color/image`` (rgb8), ``depth/image`` (16UC1, mm), ``color/camera_info``,
``depth/camera_info``, the camera pose as ``camera_pose`` (PoseStamped in
``world_frame``) and, when tf2_ros is installed, as TF (world_frame →
``optical_frame``). Frames are rendered with open3d raycasting
(:mod:`video3d_ros.scenes`); the scene's true object boxes are available as
``~/truth`` (video3d_interfaces/DetectedObjectArray, latched).
"""

from __future__ import annotations

import threading

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from std_msgs.msg import Header

from video3d_interfaces.msg import DetectedObject, DetectedObjectArray

from ..geometry import Box3D
from ..scenes import RenderConfig, SceneCamera, generate_scene
from . import convert
from .rgbd_publisher import RgbdPublisher
from ._spin import spin_node

_PARAMS = {
    "seed": (0, "scene seed (same seed, same room and scan)"),
    "width": (320, "image width, pixels"),
    "height": (240, "image height, pixels"),
    "rate_hz": (30.0, "publishing rate; frames are rendered ahead in a background thread"),
    "frame_step": (1, "advance this many trajectory frames per published frame"),
    "world_frame": ("map", "frame of the camera poses"),
    "optical_frame": ("camera_color_optical_frame", "frame_id of images and camera_info"),
    "sensor_qos": (True, "publish images with the sensor-data QoS"),
    "loop": (True, "start over at the end of the scan (stamps keep increasing)"),
}


class SyntheticCamera(Node):
    def __init__(self, node_name: str = "synthetic_camera", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, doc) in _PARAMS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=doc))
        p = {name: self.get_parameter(name).value for name in _PARAMS}
        if p["rate_hz"] <= 0 or p["frame_step"] < 1:
            raise ValueError(f"rate_hz must be > 0 and frame_step >= 1, got {p['rate_hz']}, {p['frame_step']}")
        self.params = p
        self.scene = generate_scene(seed=int(p["seed"]), scene_id=f"scene{int(p['seed']):04d}_00")
        self.camera = SceneCamera(self.scene, RenderConfig(width=int(p["width"]), height=int(p["height"])))
        qos = qos_profile_sensor_data if p["sensor_qos"] else QoSProfile(depth=10)
        self.out = RgbdPublisher(self, qos, p["world_frame"], p["optical_frame"])
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_truth = self.create_publisher(DetectedObjectArray, "~/truth", latched)
        self.published = 0
        self._index = 0
        self._ahead: dict[int, object] = {}
        self._lock = threading.Condition()
        self._stop = False
        self._renderer = threading.Thread(target=self._render_ahead, daemon=True, name="render-ahead")
        self._renderer.start()
        self._publish_truth()
        self._timer = self.create_timer(1.0 / p["rate_hz"], self._tick)

    def _render_ahead(self) -> None:
        """Keep the next few frames rendered so publishing keeps the rate."""
        step = int(self.params["frame_step"])
        i = 0
        while True:
            with self._lock:
                while len(self._ahead) >= 4 and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
            index = (i * step) % len(self.camera)
            frame = self.camera.render(index)
            with self._lock:
                self._ahead[i] = frame
                self._lock.notify_all()
            i += 1
            if not self.params["loop"] and i * step >= len(self.camera):
                return

    def _tick(self) -> None:
        with self._lock:
            frame = self._ahead.pop(self._index, None)
            self._lock.notify_all()
        if frame is None:
            return  # rendering fell behind: skip this tick rather than block the executor
        self._index += 1
        stamp_s = self.get_clock().now().nanoseconds * 1e-9
        self.out.publish(stamp_s, frame.rgb, frame.depth_mm, frame.K, frame.T_world_cam)
        self.published += 1

    def _publish_truth(self) -> None:
        msg = DetectedObjectArray(header=Header(frame_id=self.params["world_frame"]))
        for obj in self.scene.objects:
            msg.objects.append(DetectedObject(id=int(obj.object_id), label=obj.category.value, score=1.0,
                                              box=convert.box_to_msg(Box3D(obj.center_m, obj.extent_m))))
        self.pub_truth.publish(msg)

    def destroy_node(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._renderer.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    spin_node(SyntheticCamera, args)


if __name__ == "__main__":
    main()
