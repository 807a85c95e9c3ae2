"""A running graph in one process: synthetic camera + video3d_node + a client (demo, tests).

The executor spins in a background thread; tests call the service through
:meth:`Graph.query` and read topics through :meth:`Graph.latest`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from visualization_msgs.msg import MarkerArray

from video3d_interfaces.srv import Query
from video3d_ros.ros.node import Video3DNode
from video3d_ros.ros.synthetic_camera import SyntheticCamera


def write_untrained_tiny(directory: Path) -> Path:
    """An untrained `tiny` checkpoint in our format (real tokenizer, random weights)."""
    from video3d_ros.model.build import build_empty, materialize
    from video3d_ros.model.checkpoint import save_pretrained
    from video3d_ros.model.runtime import detect_runtime
    from video3d_ros.model.shapes import tiny
    from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of

    words = ["chair", "table", "lamp", "bed", "sofa", "red", "blue", "left", "right", "how", "many",
             "what", "is", "the", "of", "on", "there", "are", "colour", "a", "this"]
    corpus = [" ".join(words[(i * k) % len(words)] for k in range(1, 9)) for i in range(300)]
    tokenizer = build_tokenizer(corpus, vocab_size=400)
    config = tiny(len(tokenizer), token_ids_of(tokenizer))
    model = materialize(build_empty(config), detect_runtime("cpu"), seed=0)
    save_pretrained(model, tokenizer, directory)
    return directory


class Graph:
    def __init__(self, model_dir: Path, node_params: dict | None = None,
                 camera_params: dict | None = None, with_camera: bool = True) -> None:
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
        self.executor = MultiThreadedExecutor(num_threads=8, context=self.context)
        for n in (self.node, self.client_node) + ((self.camera,) if self.camera else ()):
            self.executor.add_node(n)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

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
        self.executor.shutdown(timeout_sec=5.0)
        for n in (self.camera, self.node, self.client_node):
            if n is not None:
                n.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=10.0)
