"""A running graph in one process: synthetic camera + video3d_node + a client (demo, tests).

The executor spins in a background thread; tests call the service through
:meth:`Graph.query` and read topics through :meth:`Graph.latest`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
import time
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.parameter import Parameter
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from video3d_interfaces.msg import DetectedObjectArray

from video3d_interfaces.srv import Query
from video3d_ros.ros import convert
from video3d_ros.ros.node import Video3DNode
from video3d_ros.ros.synthetic_camera import SyntheticCamera
from video3d_ros.scenes import RenderConfig, SceneCamera, generate_scene


class Graph:
    def __init__(self, model_dir: Path, node_params: dict | None = None,
                 camera_params: dict | None = None, with_camera: bool = True,
                 make_executor: Callable[[Context], Executor] | None = None) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        params = {"model_path": str(model_dir), "pose_source": "topic", "max_new_tokens": 4,
                  "buffer_capacity": 16, "coverage_period_s": 0.5, "diagnostics_period_s": 0.5,
                  "query_timeout_s": 60.0}
        params.update(node_params or {})
        self.node = Video3DNode(context=self.context,
                                parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.camera = None
        if with_camera:
            cam = {"width": 160, "height": 120, "rate_hz": 30.0, "frame_step": 3}
            cam.update(camera_params or {})
            self.camera = SyntheticCamera(context=self.context,
                                          parameter_overrides=[Parameter(k, value=v) for k, v in cam.items()])
        self.client_node = rclpy.create_node("v3d_test_client", context=self.context)
        self.client = self.client_node.create_client(Query, "/video3d_node/query")
        self.messages: dict[str, list] = {"markers": [], "keyframes": [], "coverage": []}
        self.client_node.create_subscription(MarkerArray, "/video3d_node/markers",
                                             self.messages["markers"].append, 10)
        self.client_node.create_subscription(MarkerArray, "/video3d_node/keyframes",
                                             self.messages["keyframes"].append, 10)
        # as the node runs in its own process (video3d_node main): one thread for every callback
        # (benchmarks pass another executor to compare)
        self.executor = (make_executor or (lambda c: SingleThreadedExecutor(context=c)))(self.context)
        for n in (self.node, self.client_node) + ((self.camera,) if self.camera else ()):
            self.executor.add_node(n)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.1)

    def wait_for(self, predicate, timeout_s: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def wait_active(self, timeout_s: float = 60.0) -> None:
        self.wait_for(lambda: self.node._active, timeout_s, "the node to become active")

    def keyframes(self) -> int:
        return len(self.node.buffer.snapshot().keyframes) if self.node.buffer else 0

    def query(self, timeout_s: float = 120.0, **fields) -> Query.Response:
        assert self.client.wait_for_service(timeout_sec=20.0), "query service not on the graph"
        future = self.client.call_async(Query.Request(**fields))
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                raise AssertionError(f"no response to {fields} within {timeout_s} s")
            time.sleep(0.01)
        return future.result()

    def close(self) -> None:
        # stop spinning (the spin thread finishes the callback it is in), and only then destroy
        # the nodes: a callback running on a destroyed node fails ("cannot use Destroyable …")
        self._stop.set()
        self._thread.join(timeout=10.0)
        self.executor.shutdown(timeout_sec=5.0)
        for n in (self.camera, self.node, self.client_node):
            if n is not None:
                n.destroy_node()
        self.context.try_shutdown()


class FramePublisher:
    """Publishes pre-rendered (or hand-made) sensor messages into the node's inputs.

    Tests use it to inject faults; benchmarks to feed frames at a set rate
    independent of rendering speed.
    """

    def __init__(self, context: Context, n_frames: int = 24, width: int = 96, height: int = 72,
                 seed: int = 11) -> None:
        self.node = rclpy.create_node("v3d_fault_feeder", context=context)
        self.color = self.node.create_publisher(Image, "color/image", 50)
        self.depth = self.node.create_publisher(Image, "depth/image", 50)
        self.color_info = self.node.create_publisher(CameraInfo, "color/camera_info", 50)
        self.depth_info = self.node.create_publisher(CameraInfo, "depth/camera_info", 50)
        self.pose = self.node.create_publisher(PoseStamped, "camera_pose", 50)
        self.proposals = self.node.create_publisher(DetectedObjectArray, "proposals", 10)
        scene = generate_scene(seed=seed, scene_id=f"scene{seed:04d}_00")
        cam = SceneCamera(scene, RenderConfig(width=width, height=height))
        step = max(1, len(cam) // n_frames)
        self.frames = [cam.render(i) for i in range(0, len(cam), step)][:n_frames]
        self.t = 1000.0
        self.i = 0
        self.wait_matched()

    def wait_matched(self, timeout_s: float = 20.0) -> None:
        """Block until the node subscribes to every input (DDS discovery takes a moment)."""
        pubs = (self.color, self.depth, self.color_info, self.depth_info, self.pose)
        deadline = time.monotonic() + timeout_s
        while any(p.get_subscription_count() == 0 for p in pubs):
            if time.monotonic() > deadline:
                raise TimeoutError("video3d_node did not subscribe to the frame publisher's topics")
            time.sleep(0.05)

    def header(self, stamp_s: float, frame: str = "cam") -> Header:
        return Header(stamp=convert.s_to_stamp(stamp_s), frame_id=frame)

    def send(self, *, rgb=None, depth=None, color_msg=None, depth_msg=None, info=True, pose=True,
             stamp_s=None, T=None, K=None, pose_delay_s=0.0) -> float:
        f = self.frames[self.i % len(self.frames)]
        self.i += 1
        if stamp_s is None:
            self.t += 0.1
            stamp_s = self.t
        h = self.header(stamp_s)
        rgb = f.rgb if rgb is None else rgb
        depth = f.depth_mm if depth is None else depth
        if info:
            K_ = f.K if K is None else K
            self.color_info.publish(convert.K_to_camera_info(K_, rgb.shape[1], rgb.shape[0], h))
        self.color.publish(color_msg or convert.rgb_to_image(rgb, h))
        self.depth.publish(depth_msg or convert.depth_to_image(depth, h))
        if pose:
            msg = PoseStamped(header=self.header(stamp_s, "map"),
                              pose=convert.matrix_to_pose(f.T_world_cam if T is None else T))
            if pose_delay_s:
                threading.Timer(pose_delay_s, self.pose.publish, (msg,)).start()
            else:
                self.pose.publish(msg)
        return stamp_s

    def good(self, n: int = 6, period_s: float = 0.03) -> None:
        for _ in range(n):
            self.send()
            time.sleep(period_s)


@contextlib.contextmanager
def fed_node(model_dir: Path, node_params: dict,
             **frames) -> Iterator[tuple[Graph, FramePublisher]]:
    """A node of its own (no synthetic camera) with ``node_params``, and a
    :class:`FramePublisher` of ``frames`` (its n_frames / width / height / seed) matched to
    it; both are closed on exit, also when the publisher could not be made."""
    graph = Graph(model_dir, with_camera=False, node_params=node_params)
    feeder = None
    try:
        graph.wait_active()
        feeder = FramePublisher(graph.context, **frames)
        yield graph, feeder
    finally:
        if feeder is not None:
            feeder.node.destroy_node()
        graph.close()
