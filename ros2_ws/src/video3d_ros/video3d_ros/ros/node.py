"""video3d_node: RGB-D + pose → rolling keyframes → Query service → RViz markers.

A lifecycle node, thin by design: it converts messages and wires callbacks.
Keyframe selection (:mod:`video3d_ros.ingest`), queries
(:mod:`video3d_ros.query`, :mod:`video3d_ros.scene_qa`) and proposals live in
plain Python.

Threads: one executor thread runs every callback (rclpy's SingleThreadedExecutor);
sensor callbacks only convert and enqueue; the ingest worker unprojects and
updates the buffer; the service callback is a coroutine that hands the query to
the single query worker (the model on an immutable buffer snapshot) and awaits
it, so the camera streams are served while the model runs and extra calls are
answered BUSY at once. (With rclpy's MultiThreadedExecutor the same node took
under a fifth of a 30 Hz 320x240 stream published in its process, and an erratic
share of 640x480 from another process: BENCHMARKS.md, "Ingest".)

Topics (relative, remap as usual):
  in:  color/image, color/camera_info, depth/image, depth/camera_info (optional),
       proposals (video3d_interfaces/DetectedObjectArray, optional),
       camera_pose (PoseStamped) / odom (Odometry) when the pose comes from a topic
  out: ~/markers (MarkerArray), ~/keyframes (MarkerArray), ~/coverage (PointCloud2),
       ~/detections (vision_msgs/Detection3DArray, when vision_msgs is installed),
       /diagnostics
  srv: ~/query (video3d_interfaces/Query)
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import threading
import time
import traceback
from dataclasses import fields

import numpy as np
import rclpy
import torch  # noqa: F401  imported before any thread starts: scipy's array-API checks race a half-imported torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from video3d_interfaces.msg import DetectedObject, DetectedObjectArray
from video3d_interfaces.srv import Query

from ..geometry import Box3D, unpack_voxel_keys
from ..ingest import FrameIngestor, RgbdObservation
from ..keyframes import RollingKeyframeBuffer
from ..node_config import NodeConfig, PoseSource
from ..query import (
    QueryRequest,
    QueryResult,
    QueryStatus,
    QueryTask,
    QueryWorker,
    resolve_task,
    validate_request,
)
from ..scene_qa import SceneQA, load_engine
from ..streams import ApproximateTimeSync, PoseHistory
from . import convert
from ._spin import spin_node

try:  # present on a robot with a ROS distribution; not on PyPI
    import tf2_ros
except ImportError:
    tf2_ros = None
try:
    import message_filters
except ImportError:
    message_filters = None
try:
    from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose
except ImportError:
    Detection3DArray = None


_MAX_PROPOSAL_SIZE_M = 50.0  # a detector box larger than this is a bug upstream, not an object


@dataclasses.dataclass
class _Pending:
    """A synchronised colour/depth pair waiting for its camera pose."""

    stamp_s: float
    optical_frame: str
    rgb: np.ndarray
    depth: np.ndarray
    K_color: np.ndarray
    K_depth: np.ndarray | None
    waited_since: float


@dataclasses.dataclass
class _Counters:
    pose_failures: int = 0  # frames dropped: their pose never became available
    pose_queue_drops: int = 0
    bad_messages: int = 0
    last_bad_message: str = ""
    queries: int = 0
    prepared: int = 0  # keyframe sets prepared ahead of a query (prepare_after_s)
    prepared_version: int = -1  # buffer version the last of them had
    last_query_latency_s: float = 0.0
    last_query_status: str = ""


class Video3DNode(LifecycleNode):
    def __init__(self, node_name: str = "video3d_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        for f in fields(NodeConfig):
            self.declare_parameter(f.name, f.default,
                                   ParameterDescriptor(description=f.metadata["doc"]))
        self.config: NodeConfig | None = None
        self.buffer: RollingKeyframeBuffer | None = None
        self.ingestor: FrameIngestor | None = None
        self.worker: QueryWorker | None = None
        self.scene_qa: SceneQA | None = None
        self.counters = _Counters()
        self.configure_error = ""  # why the last configure failed (also logged)
        self._active = False
        self._subs: list = []
        self._timers: list = []
        self._pubs: dict[str, object] = {}
        self._service = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._pending_lock = threading.Lock()
        self._sync: ApproximateTimeSync | None = None  # built-in pairing (no message_filters)
        self._K: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}  # "color"/"depth" -> (K, (h, w))
        # pairs that arrived before the camera_info they need (at start-up an image callback
        # can run before the first info callback); replayed when it comes
        self._before_info: collections.deque[tuple[Image, np.ndarray, np.ndarray]] = \
            collections.deque()
        self._before_info_lock = threading.Lock()
        self._poses = PoseHistory()
        self._last_pose_wall = 0.0  # monotonic time of the last accepted pose message
        self._tf_buffer = None
        self._detector: tuple[float, list[Box3D], list[str]] | None = None
        # the groups matter only on a multi-threaded executor (a container that spins the node
        # so); video3d_node's own entry point runs every callback on one thread
        self._sensor_group = MutuallyExclusiveCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._query_group = ReentrantCallbackGroup()
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    # ---- lifecycle ----------------------------------------------------------------------

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def read_config(self) -> NodeConfig:
        values = {f.name: self.get_parameter(f.name).value for f in fields(NodeConfig)}
        return NodeConfig(**values)

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.config = cfg = self.read_config()
        except (ValueError, TypeError) as exc:
            return self._configure_failed(f"invalid parameters: {exc}")
        try:
            engine = load_engine(cfg.model_path or None, cfg.device or None, cfg.max_new_tokens)
        except Exception as exc:  # a bad checkpoint must not take the node down
            return self._configure_failed(f"cannot load the model: {type(exc).__name__}: {exc}")
        try:
            self.scene_qa = SceneQA(engine, cfg.scene_qa_config())
        except ValueError as exc:  # a parameter that does not fit this model
            return self._configure_failed(f"invalid parameters for this model: {exc}")
        self.buffer = RollingKeyframeBuffer(cfg.buffer_config())
        self.ingestor = FrameIngestor(self.buffer, queue_size=cfg.ingest_queue_size,
                                      depth_scale_m=cfg.depth_scale_m, min_depth_m=cfg.min_depth_m,
                                      max_depth_m=cfg.max_depth_m)
        self.worker = QueryWorker(cfg.max_pending_queries)
        # (buffer version last seen, when it was first seen, version last prepared)
        self._prepare_state = (-1, 0.0, -1)
        self._pubs = {
            "markers": self.create_publisher(MarkerArray, "~/markers", 10),
            "keyframes": self.create_publisher(MarkerArray, "~/keyframes", 1),
            "coverage": self.create_publisher(PointCloud2, "~/coverage", 1),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", 10),
        }
        if Detection3DArray is not None:
            self._pubs["detections"] = self.create_publisher(Detection3DArray, "~/detections", 10)
        self._service = self.create_service(Query, "~/query", self._on_query,
                                            callback_group=self._query_group)
        pose = cfg.pose
        if pose is PoseSource.AUTO:
            pose = PoseSource.TF if tf2_ros is not None else PoseSource.TOPIC
        if pose is PoseSource.TF and tf2_ros is None:
            self._release()
            return self._configure_failed("pose_source 'tf' needs tf2_ros, which is not installed; "
                                          "use pose_source 'topic'")
        self._pose_source = pose
        if pose is PoseSource.TF:
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        self.configure_error = ""
        self.get_logger().info(
            f"configured: model {'embedded' if not cfg.model_path else cfg.model_path}, pose from "
            f"{pose.value}, sync {'message_filters' if message_filters else 'built-in'}, "
            f"K={cfg.buffer_capacity}, {self.scene_qa.default_max_keyframes or 'all'} keyframes per query "
            f"group, up to {self.scene_qa.config.keyframe_groups} group(s)")
        return TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, why: str) -> TransitionCallbackReturn:
        self.configure_error = why
        self.get_logger().error(why)
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        cfg = self.config
        qos = qos_profile_sensor_data if cfg.sensor_qos else QoSProfile(depth=10)
        grp = self._sensor_group
        if message_filters is not None:
            color = message_filters.Subscriber(self, Image, "color/image", qos_profile=qos,
                                               callback_group=grp)
            depth = message_filters.Subscriber(self, Image, "depth/image", qos_profile=qos,
                                               callback_group=grp)
            self._mf_sync = message_filters.ApproximateTimeSynchronizer(
                [color, depth], cfg.sync_queue_size, cfg.sync_slop_s)
            self._mf_sync.registerCallback(self._on_pair)
            self._subs += [color.sub, depth.sub]
        else:
            self._sync = ApproximateTimeSync(2, cfg.sync_slop_s, cfg.sync_queue_size, self._on_pair)
            self._subs += [
                self.create_subscription(Image, "color/image",
                                         lambda m: self._sync.add(0, convert.stamp_to_s(m.header.stamp), m),
                                         qos, callback_group=grp),
                self.create_subscription(Image, "depth/image",
                                         lambda m: self._sync.add(1, convert.stamp_to_s(m.header.stamp), m),
                                         qos, callback_group=grp),
            ]
        self._subs += [
            self.create_subscription(CameraInfo, "color/camera_info",
                                     lambda m: self._on_info("color", m), qos, callback_group=grp),
            self.create_subscription(CameraInfo, "depth/camera_info",
                                     lambda m: self._on_info("depth", m), qos, callback_group=grp),
            self.create_subscription(DetectedObjectArray, "proposals", self._on_proposals, 10,
                                     callback_group=grp),
        ]
        if self._pose_source is PoseSource.TOPIC:
            self._subs += [
                self.create_subscription(PoseStamped, "camera_pose", self._on_pose, 50,
                                         callback_group=grp),
                self.create_subscription(Odometry, "odom", self._on_odom, 50, callback_group=grp),
            ]
        self._timers = [self.create_timer(0.05, self._resolve_pending, callback_group=self._timer_group)]
        if cfg.coverage_period_s > 0:
            self._timers.append(self.create_timer(cfg.coverage_period_s, self._publish_coverage,
                                                  callback_group=self._timer_group))
        if cfg.diagnostics_period_s > 0:
            self._timers.append(self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics,
                                                  callback_group=self._timer_group))
        if cfg.prepare_after_s > 0:
            self._timers.append(self.create_timer(min(0.25, cfg.prepare_after_s / 2), self._prepare_ahead,
                                                  callback_group=self._timer_group))
        self._active = True
        self.get_logger().info("active: listening to color/image, depth/image")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        for sub in self._subs:
            self.destroy_subscription(sub)
        for timer in self._timers:
            self.destroy_timer(timer)
        self._subs, self._timers = [], []
        with self._pending_lock:
            self._pending.clear()
        with self._before_info_lock:
            self._before_info.clear()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self._active:
            self.on_deactivate(state)
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop and join the worker threads (queries and preparation, ingest) before the node
        goes, whatever lifecycle state it is in: a daemon thread still inside torch when the
        interpreter exits (the prepare job encoding keyframes) aborts the process at exit with
        "terminate called without an active exception"."""
        self._active = False
        self._release()
        super().destroy_node()

    def _release(self) -> None:
        if self.worker is not None:
            self.worker.close()
        if self.ingestor is not None:
            self.ingestor.close()
        if self._service is not None:
            self.destroy_service(self._service)
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs, self._service = {}, None
        self.worker = self.ingestor = self.buffer = self.scene_qa = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the GPU memory back on cleanup
        except ImportError:
            pass

    # ---- sensors ------------------------------------------------------------------------

    def _bad(self, what: str) -> None:
        self.counters.bad_messages += 1
        self.counters.last_bad_message = what
        self.get_logger().warning(what, throttle_duration_sec=5.0)

    def _on_info(self, which: str, msg: CameraInfo) -> None:
        try:
            self._K[which] = (convert.camera_info_to_K(msg), (msg.height, msg.width))
        except ValueError as exc:
            self._bad(f"{which}/camera_info: {exc}")
            return
        self._replay_held()

    def _replay_held(self) -> None:
        with self._before_info_lock:
            held, self._before_info = list(self._before_info), collections.deque()
        for color, rgb, depth_arr in held:
            self._enqueue(color, rgb, depth_arr)

    def _hold_for_info(self, color: Image, rgb: np.ndarray, depth_arr: np.ndarray) -> None:
        """Keep a pair until the first color/camera_info arrives (at most
        ``pose_queue_size`` pairs; older ones are dropped)."""
        with self._before_info_lock:
            self._before_info.append((color, rgb, depth_arr))
            overflow = len(self._before_info) > self.config.pose_queue_size
            if overflow:
                self._before_info.popleft()
        if overflow:
            self._bad("image dropped: no color/camera_info received yet")
        if "color" in self._K:  # it arrived meanwhile (from another callback thread)
            self._replay_held()

    def _on_pair(self, color: Image, depth: Image) -> None:
        """Synchronised colour + depth: convert, then wait for the pose. Never blocks."""
        if not self._active:
            return
        try:
            rgb = convert.image_to_rgb(color)
            depth_arr = convert.image_to_depth(depth)
        except ValueError as exc:
            self._bad(f"image dropped: {exc}")
            return
        self._enqueue(color, rgb, depth_arr)

    def _enqueue(self, color: Image, rgb: np.ndarray, depth_arr: np.ndarray) -> None:
        """Check a converted pair against the camera_info and queue it for its pose."""
        if "color" not in self._K:
            self._hold_for_info(color, rgb, depth_arr)
            return
        K_color, hw = self._K["color"]
        if hw != rgb.shape[:2]:
            self._bad(f"image dropped: colour is {rgb.shape[1]}x{rgb.shape[0]} but color/camera_info "
                      f"says {hw[1]}x{hw[0]}")
            return
        K_depth = None
        if depth_arr.shape != rgb.shape[:2]:
            if "depth" not in self._K:
                # (not held like a missing color/camera_info: a depth image of another size
                # with no depth/camera_info at all is a set-up error to report at once)
                self._bad(f"image dropped: depth {depth_arr.shape[1]}x{depth_arr.shape[0]} differs from "
                          f"colour {rgb.shape[1]}x{rgb.shape[0]} and no depth/camera_info was received")
                return
            K_depth = self._K["depth"][0]
        pending = _Pending(convert.stamp_to_s(color.header.stamp), color.header.frame_id, rgb,
                           depth_arr, K_color, K_depth, time.monotonic())
        with self._pending_lock:
            if len(self._pending) >= self.config.pose_queue_size:
                self._pending.popleft()
                self.counters.pose_queue_drops += 1
            self._pending.append(pending)
        self._resolve_pending()

    def _on_pose(self, msg: PoseStamped) -> None:
        self._add_pose(msg.header, msg.pose)

    def _on_odom(self, msg: Odometry) -> None:
        self._add_pose(msg.header, msg.pose.pose)

    def _add_pose(self, header: Header, pose) -> None:
        if header.frame_id and header.frame_id != self.config.world_frame:
            self._bad(f"pose in frame {header.frame_id!r} ignored: expected world_frame "
                      f"{self.config.world_frame!r}")
            return
        try:
            self._poses.add(convert.stamp_to_s(header.stamp), convert.pose_to_matrix(pose))
        except ValueError as exc:
            self._bad(f"pose ignored: {exc}")
            return
        self._last_pose_wall = time.monotonic()
        self._resolve_pending()

    def _lookup_pose(self, p: _Pending) -> np.ndarray | None:
        if self._pose_source is PoseSource.TOPIC:
            return self._poses.lookup(p.stamp_s)
        stamp = rclpy.time.Time(seconds=p.stamp_s)
        world = self.config.world_frame
        if not self._tf_buffer.can_transform(world, p.optical_frame, stamp):  # zero-wait check
            return None
        t = self._tf_buffer.lookup_transform(world, p.optical_frame, stamp)
        return convert.transform_to_matrix(t.transform)

    def _pose_expired(self, p: _Pending, now: float) -> str:
        """Why a frame's pose is given up on ("" = keep waiting).

        From a pose topic: when poses ``pose_wait_s`` newer than the frame have
        arrived (its own will not come; not for frames older than the whole
        history, which follow a jump back in time), or when the pose topic has been
        silent for ``pose_silence_s``. Silence gets the longer allowance because a
        reliable topic delivers in order: one lost sample holds back every later pose
        until it is resent, which can take seconds, and the frames waiting meanwhile
        are good. A backlog (a flood, a busy executor) likewise delays frames instead
        of dropping them; the bounded queue caps the wait. From TF: after
        ``pose_wait_s`` of waiting, like a TF lookup timeout.
        """
        cfg = self.config
        if self._pose_source is PoseSource.TOPIC:
            newest = self._poses.newest_stamp_s
            # A frame far older than the history (a bag that loops, a clock jump) is
            # not judged by stamps: its poses reset the history when they come.
            if newest is not None and cfg.pose_wait_s < newest - p.stamp_s <= self._poses.max_age_s:
                return f"poses up to {newest - p.stamp_s:.1f}s newer arrived, not its own"
            silent_s = min(now - p.waited_since, now - self._last_pose_wall)
            if silent_s > cfg.pose_silence_s:
                return f"pose topic silent for {silent_s:.1f}s"
            return ""
        return f"no transform after {cfg.pose_wait_s:.1f}s" if now - p.waited_since > cfg.pose_wait_s else ""

    def _resolve_pending(self) -> None:
        """Hand frames whose pose is known to the ingestor; drop those that waited too long."""
        if not self._active:
            return
        ready: list[tuple[_Pending, np.ndarray]] = []
        now = time.monotonic()
        with self._pending_lock:
            keep: collections.deque[_Pending] = collections.deque()
            for p in self._pending:
                try:
                    T = self._lookup_pose(p)
                except Exception as exc:  # tf2 raises several types for a bad frame / extrapolation
                    T = None
                    self._bad(f"pose lookup for frame {p.optical_frame!r} failed: {exc}")
                if T is not None:
                    ready.append((p, T))
                elif why := self._pose_expired(p, now):
                    self.counters.pose_failures += 1
                    self.get_logger().warning(
                        f"image at t={p.stamp_s:.3f}s dropped, no camera pose: {why} "
                        f"(pose source: {self._pose_source.value})", throttle_duration_sec=5.0)
                else:
                    keep.append(p)
            self._pending = keep
        for p, T in ready:
            self.ingestor.put(RgbdObservation(p.stamp_s, p.rgb, p.depth, p.K_color, T, p.K_depth))

    def _on_proposals(self, msg: DetectedObjectArray) -> None:
        try:
            T = self._world_from(msg.header.frame_id or self.config.world_frame, msg.header.stamp)
            boxes = [convert.transform_box(convert.box_from_msg(o.box), T) for o in msg.objects]
            too_big = [i for i, b in enumerate(boxes) if b.size_m.max() > _MAX_PROPOSAL_SIZE_M]
            if too_big:
                raise ValueError(f"objects {too_big} are larger than {_MAX_PROPOSAL_SIZE_M:.0f} m")
        except (ValueError, LookupError) as exc:
            self._bad(f"proposals ignored: {exc}")
            return
        self._detector = (time.monotonic(), boxes, [o.label for o in msg.objects])

    # ---- frames -------------------------------------------------------------------------

    def _world_from(self, frame: str, stamp=None) -> np.ndarray:
        """T_world_frame (4x4); LookupError when unavailable."""
        world = self.config.world_frame
        if not frame or frame == world:
            return np.eye(4)
        if self._tf_buffer is None:
            raise LookupError(f"frame {frame!r} is not the world frame {world!r} and tf2_ros is not "
                              "installed to transform it")
        try:
            t = self._tf_buffer.lookup_transform(world, frame, rclpy.time.Time())
        except Exception as exc:
            raise LookupError(f"no transform {world!r} <- {frame!r}: {exc}") from exc
        return convert.transform_to_matrix(t.transform)

    # ---- queries ------------------------------------------------------------------------

    async def _on_query(self, req: Query.Request, resp: Query.Response) -> Query.Response:
        start = time.perf_counter()
        try:
            result, frame = await self._run_query(req)
        except Exception as exc:  # never leave a caller without an answer
            self.get_logger().error(f"query failed inside the node: {traceback.format_exc()}")
            result = QueryResult(QueryStatus.MODEL_ERROR, message=f"internal error: {type(exc).__name__}: {exc}")
            frame = self.config.world_frame if self.config else ""
        elapsed = time.perf_counter() - start
        self.counters.queries += 1
        self.counters.last_query_latency_s = elapsed
        self.counters.last_query_status = result.status.name
        resp.success = result.success
        resp.status = int(result.status)
        resp.message = result.message
        resp.answer = result.answer
        resp.header.frame_id = frame
        resp.header.stamp = self.get_clock().now().to_msg()
        resp.keyframe_stamps = [convert.s_to_stamp(s) for s in result.keyframe_stamps_s]
        resp.keyframe_groups = int(result.keyframe_groups)
        resp.inference_time_s = float(result.inference_time_s or elapsed)
        for obj in result.objects:
            resp.objects.append(DetectedObject(id=obj.proposal_id, label=obj.label, score=obj.score,
                                               box=convert.box_to_msg(obj.box)))
        line = (f"query [{result.task.name.lower()}] {req.text[:80]!r} -> {result.status.name} "
                f"in {elapsed * 1e3:.0f} ms{': ' + result.message if result.message else ''}")
        # rclpy fixes a call site's severity on first use: one call site per level
        if result.success:
            self.get_logger().info(line)
        else:
            self.get_logger().warning(line)
        return resp

    async def _run_query(self, req: Query.Request) -> tuple[QueryResult, str]:
        world = self.config.world_frame if self.config else ""
        if not self._active or self.scene_qa is None:
            return QueryResult(QueryStatus.NO_DATA, message="the node is not active (lifecycle state)"), world
        try:
            task = QueryTask(req.task)
        except ValueError:
            return QueryResult(QueryStatus.INVALID, message=f"unknown task code {req.task}; expected 0..4"), world
        target = None
        if req.has_target:
            try:
                T = self._world_from(req.target_header.frame_id)
                target = convert.transform_box(convert.box_from_msg(req.target), T)
            except LookupError as exc:
                return QueryResult(QueryStatus.TF_ERROR, message=f"caption target: {exc}"), world
            except ValueError as exc:
                return QueryResult(QueryStatus.INVALID, message=f"caption target: {exc}"), world
        result_frame = req.result_frame or world
        try:
            T_result_world = np.linalg.inv(self._world_from(result_frame))
        except LookupError as exc:
            return QueryResult(QueryStatus.TF_ERROR, message=f"result_frame: {exc}"), world
        request = QueryRequest(resolve_task(task, req.text, req.has_target), req.text, target,
                               int(req.max_keyframes))
        problem = validate_request(request, self.config.max_text_chars)
        if problem:
            return QueryResult(QueryStatus.INVALID, message=problem, task=request.task), world
        self._apply_detector_proposals()
        snapshot = self.buffer.snapshot()  # immutable: ingestion goes on meanwhile
        scene_qa = self.scene_qa
        result = await self._on_worker(lambda: scene_qa.answer(request, snapshot))
        self._forget_preparation_if_read_otherwise(scene_qa, snapshot, request.max_keyframes)
        result = dataclasses.replace(result, task=request.task)
        if result.objects:
            result = dataclasses.replace(result, objects=tuple(
                dataclasses.replace(o, box=convert.transform_box(o.box, T_result_world))
                for o in result.objects))
        if result.success and req.publish_markers and self._active:  # (not deactivated meanwhile)
            self._publish_result(result, result_frame, target, req.text)
        return result, result_frame

    async def _on_worker(self, fn) -> QueryResult:
        """Run ``fn`` on the query worker; the executor serves other callbacks meanwhile."""
        executor = self.executor
        done: Future = Future(executor=executor)

        def deliver(result: QueryResult) -> None:  # the worker's, a timer's or this thread
            done.set_result(result)
            executor.wake()  # resume this coroutine now, not at the executor's next event

        self.worker.run_async(fn, self.config.query_timeout_s, deliver)
        return await done

    def _prepare_ahead(self) -> None:
        """Once the keyframes have not changed for prepare_after_s, hand SceneQA.prepare to the
        query worker if it is idle (a query arriving meanwhile runs after it and finds the
        work done when the keyframes are still the same)."""
        snap, now = self.buffer.snapshot(), time.monotonic()
        seen, since, prepared = self._prepare_state
        if snap.version != seen:
            self._prepare_state = (snap.version, now, prepared)
            return
        if snap.version == prepared or not snap.keyframes or now - since < self.config.prepare_after_s:
            return
        self._apply_detector_proposals()
        scene_qa = self.scene_qa
        future = self.worker.submit_when_idle(lambda: scene_qa.prepare(snap))
        if future is not None:
            self._prepare_state = (seen, since, snap.version)
            future.add_done_callback(lambda f, version=snap.version: self._prepared(f, version))

    def _forget_preparation_if_read_otherwise(self, scene_qa, snapshot, max_keyframes: int) -> None:
        """A query with its own max_keyframes that read other keyframes than a default query
        would leaves the engine holding those: the buffer version is no longer prepared
        (``keyframes_prepared`` false), and _prepare_ahead prepares it again once idle."""
        if not max_keyframes or not snapshot.keyframes:
            return
        read, default = scene_qa.reading(snapshot, max_keyframes)[0], scene_qa.reading(snapshot)[0]
        if [kf.stamp_s for kf in read.keyframes] == [kf.stamp_s for kf in default.keyframes]:
            return
        if self.counters.prepared_version == snapshot.version:
            self.counters.prepared_version = -1
        seen, since, prepared = self._prepare_state
        if prepared == snapshot.version:
            self._prepare_state = (seen, since, -1)

    def _prepared(self, future, version: int) -> None:  # on the query worker's thread
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self.counters.prepared += 1
            self.counters.prepared_version = version
        else:  # the next query does the work itself and reports what fails
            self.get_logger().warning(f"preparing the keyframes ahead failed: "
                                      f"{type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _apply_detector_proposals(self) -> None:
        det = self._detector
        fresh = det is not None and time.monotonic() - det[0] <= self.config.proposals_timeout_s
        self.scene_qa.set_external_proposals(det[1] if fresh else None, det[2] if fresh else None)

    def _publish_result(self, result: QueryResult, frame: str, target: Box3D | None, text: str) -> None:
        header = Header(frame_id=frame, stamp=self.get_clock().now().to_msg())
        markers = convert.result_markers(list(result.objects), header, self.config.marker_lifetime_s,
                                         target=target, query_text=text)
        self._pubs["markers"].publish(markers)
        if "detections" in self._pubs and result.objects:
            arr = Detection3DArray(header=header)
            for obj in result.objects:
                det = Detection3D(header=header)
                det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.center.position.z = (
                    float(v) for v in obj.box.center_m)
                det.bbox.center.orientation.w = 1.0
                det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = (float(v) for v in obj.box.size_m)
                hyp = ObjectHypothesisWithPose()
                hyp.hypothesis.class_id = obj.label or text[:64]
                hyp.hypothesis.score = float(obj.score)
                det.results.append(hyp)
                arr.detections.append(det)
            self._pubs["detections"].publish(arr)

    # ---- periodic outputs ---------------------------------------------------------------

    def _publish_coverage(self) -> None:
        if not self._active:
            return
        snapshot = self.buffer.snapshot()
        header = Header(frame_id=self.config.world_frame, stamp=self.get_clock().now().to_msg())
        K = self._K.get("color")
        self._pubs["keyframes"].publish(convert.frustum_markers(
            [kf.T_world_cam for kf in snapshot.keyframes], K[0] if K else None, K[1] if K else None, header))
        keys = self.buffer.covered_voxel_keys()
        if len(keys) > self.config.coverage_max_points:
            keys = keys[np.linspace(0, len(keys) - 1, self.config.coverage_max_points).astype(int)]
        centres = unpack_voxel_keys(keys).astype(np.float32) * np.float32(self.config.voxel_size_m)
        self._pubs["coverage"].publish(convert.points_to_cloud(centres, header))

    def diagnostics_values(self) -> dict[str, object]:
        st = self.ingestor.stats if self.ingestor else None
        snap = self.buffer.snapshot() if self.buffer else None
        return {
            "keyframes": len(snap.keyframes) if snap else 0,
            "covered_voxels": snap.covered_voxels if snap else 0,
            "ingest_rate_hz": f"{st.ingest_rate_hz():.1f}" if st else 0,
            "frames_received": st.received if st else 0,
            "frames_ingested": st.ingested if st else 0,
            "frames_dropped_queue_full": st.dropped_queue_full if st else 0,
            "frames_rejected": st.rejected if st else 0,
            "last_rejection": st.last_error if st else "",
            "sync_unpaired": (self._sync.unmatched + self._sync.overflowed) if self._sync else 0,
            "pose_failures": self.counters.pose_failures,
            "frames_waiting_for_pose": len(self._pending),
            "pose_queue_drops": self.counters.pose_queue_drops,
            "bad_messages": self.counters.bad_messages,
            "last_bad_message": self.counters.last_bad_message,
            "queries": self.counters.queries,
            "keyframe_sets_prepared": self.counters.prepared,
            # SceneQA.prepare has run on the buffer's current keyframes and no query has read
            # other keyframes since (a default query finds
            # them encoded, their prefixes and the built-in proposals ready)
            "keyframes_prepared": bool(snap and snap.keyframes
                                       and self.counters.prepared_version == snap.version),
            "last_query_latency_s": f"{self.counters.last_query_latency_s:.3f}",
            "last_query_status": self.counters.last_query_status,
        }

    def _publish_diagnostics(self) -> None:
        values = self.diagnostics_values()
        level = DiagnosticStatus.OK
        message = "ok"
        if values["keyframes"] == 0:
            level, message = DiagnosticStatus.WARN, "no keyframes yet"
        elif self.counters.pose_failures or values["frames_rejected"]:
            level, message = DiagnosticStatus.WARN, "some frames dropped (see values)"
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status.append(convert.diagnostic_status(f"{self.get_name()}: keyframes", self.get_name(),
                                                    level, message, values))
        self._pubs["diagnostics"].publish(arr)


def main(args: list[str] | None = None) -> None:
    spin_node(Video3DNode, args)  # SingleThreadedExecutor: see "Threads" above


if __name__ == "__main__":
    main()
