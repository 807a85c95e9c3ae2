"""The node's ROS-free core: queries, the worker, stream pairing, poses, ingestion, config."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from video3d_ros.geometry import Box3D, depth_to_world_m
from video3d_ros.ingest import FrameIngestor, RgbdObservation, observation_to_frame, register_depth_to_color
from video3d_ros.keyframes import BufferConfig, BufferSnapshot, RollingKeyframeBuffer
from video3d_ros.node_config import NodeConfig, PoseSource
from video3d_ros.query import (
    QueryRequest,
    QueryResult,
    QueryStatus,
    QueryTask,
    QueryWorker,
    resolve_task,
    validate_request,
)
from video3d_ros.scene_qa import split_situation, subsample_snapshot
from video3d_ros.streams import ApproximateTimeSync, PoseHistory, interpolate_pose, pose_from_translation_quaternion

K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])


def plane_obs(stamp_s: float, depth_m: float = 2.0, T=None, hw=(48, 64)) -> RgbdObservation:
    depth = np.full(hw, int(depth_m * 1000), np.uint16)
    rgb = np.full(hw + (3,), 128, np.uint8)
    return RgbdObservation(stamp_s, rgb, depth, K, np.eye(4) if T is None else T)


# ---- tasks and requests ---------------------------------------------------------------------

@pytest.mark.parametrize("text,has_target,expected", [
    ("how many chairs are there?", False, QueryTask.QUESTION),
    ("What colour is the sofa", False, QueryTask.QUESTION),
    ("the lamp left of the bed", False, QueryTask.GROUND),
    ("I am sitting on the bed facing the window. What is on my left?", False, QueryTask.QUESTION),
    ("", True, QueryTask.CAPTION),
    ("the brown table?", False, QueryTask.QUESTION),
])
def test_auto_task_resolution(text, has_target, expected) -> None:
    assert resolve_task(QueryTask.AUTO, text, has_target) is expected


def test_explicit_task_is_kept_and_names_parse() -> None:
    assert resolve_task(QueryTask.GROUND_MULTI, "how many?", True) is QueryTask.GROUND_MULTI
    assert QueryTask.parse("ground-multi") is QueryTask.GROUND_MULTI
    with pytest.raises(ValueError, match="expected one of: auto, question, ground"):
        QueryTask.parse("grounding")


def test_request_validation_messages() -> None:
    box = Box3D((0, 0, 0), (1, 1, 1))
    assert validate_request(QueryRequest(QueryTask.QUESTION, "hi?"), 10) is None
    assert "limit is 10" in validate_request(QueryRequest(QueryTask.QUESTION, "x" * 11), 10)
    assert "needs a target" in validate_request(QueryRequest(QueryTask.CAPTION, ""), 10)
    assert validate_request(QueryRequest(QueryTask.CAPTION, "", target=box), 10) is None
    assert "non-empty" in validate_request(QueryRequest(QueryTask.GROUND, "  "), 10)
    assert "max_keyframes" in validate_request(QueryRequest(QueryTask.GROUND, "a", max_keyframes=-1), 10)


def test_situated_text_splits_into_situation_and_question() -> None:
    assert split_situation("I stopped by the table and I am facing the desk. Which way is the door?") == (
        "I stopped by the table and I am facing the desk.", "Which way is the door?")
    assert split_situation("How many chairs are there?") is None
    assert split_situation("I am here.") is None


# ---- the query worker -----------------------------------------------------------------------

def test_worker_answers_busy_at_once_when_full() -> None:
    worker = QueryWorker(max_pending=1)
    gate = threading.Event()
    try:
        first = worker.submit(lambda: (gate.wait(5), QueryResult(QueryStatus.OK, answer="1"))[1])
        time.sleep(0.05)  # the worker takes the first; the queue has one free slot
        second = worker.submit(lambda: QueryResult(QueryStatus.OK, answer="2"))
        start = time.perf_counter()
        busy = worker.run(lambda: QueryResult(QueryStatus.OK), timeout_s=5)
        assert busy.status is QueryStatus.BUSY and time.perf_counter() - start < 0.5
        gate.set()
        assert first.result(5).answer == "1" and second.result(5).answer == "2"
    finally:
        gate.set()
        worker.close()


def test_worker_background_work_runs_only_when_idle_and_makes_no_query_busy() -> None:
    worker = QueryWorker(max_pending=1)
    gate = threading.Event()
    try:
        background = worker.submit_when_idle(lambda: gate.wait(5))
        assert background is not None
        assert worker.submit_when_idle(lambda: None) is None  # not while a job is unfinished
        time.sleep(0.05)  # the worker is now running the background job
        # a query is not refused for it: it waits, and the next one is BUSY as before
        query = worker.submit(lambda: QueryResult(QueryStatus.OK, answer="after"))
        assert worker.run(lambda: QueryResult(QueryStatus.OK), timeout_s=5).status is QueryStatus.BUSY
        assert not query.done()
        gate.set()
        assert background.result(5) is True and query.result(5).answer == "after"
        deadline = time.monotonic() + 5
        while (again := worker.submit_when_idle(lambda: "idle again")) is None:
            assert time.monotonic() < deadline, "the worker never became idle"
            time.sleep(0.01)
        assert again.result(5) == "idle again"
        # background work queued behind nothing: a query submitted at once still gets its turn
        worker.submit_when_idle(lambda: time.sleep(0.1))
        assert worker.run(lambda: QueryResult(QueryStatus.OK, answer="x"), timeout_s=5).answer == "x"
    finally:
        gate.set()
        worker.close()


def test_worker_run_async_delivers_exactly_once() -> None:
    """A timed-out query's late answer is not delivered a second time; a query still queued
    when the worker closes is delivered as cancelled (NO_DATA), not left without an answer."""
    worker = QueryWorker(max_pending=2)
    got: list[QueryResult] = []
    gate = threading.Event()
    try:
        worker.run_async(lambda: (gate.wait(5), QueryResult(QueryStatus.OK, answer="late"))[1], 0.1, got.append)
        worker.run_async(lambda: QueryResult(QueryStatus.OK, answer="never run"), 30.0, got.append)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r.status for r in got] == [QueryStatus.TIMEOUT]
    finally:
        closer = threading.Thread(target=worker.close)
        closer.start()
        time.sleep(0.1)  # close() cancels the queued query, then waits for the running one
        gate.set()
        closer.join(5)
    time.sleep(0.1)
    assert [r.status for r in got] == [QueryStatus.TIMEOUT, QueryStatus.NO_DATA], got
    assert "shutting down" in got[1].message


def test_worker_timeout_and_model_error_become_results() -> None:
    worker = QueryWorker(max_pending=2)
    try:
        slow = worker.run(lambda: (time.sleep(0.5), QueryResult(QueryStatus.OK))[1], timeout_s=0.1)
        assert slow.status is QueryStatus.TIMEOUT and "query_timeout_s" in slow.message

        def boom():
            raise RuntimeError("CUDA out of memory")

        err = worker.run(boom, timeout_s=5)
        assert err.status is QueryStatus.MODEL_ERROR and "out of memory" in err.message
        ok = worker.run(lambda: QueryResult(QueryStatus.OK, answer="fine"), timeout_s=5)
        assert ok.answer == "fine"
    finally:
        worker.close()


# ---- stream pairing -------------------------------------------------------------------------

def test_approximate_sync_pairs_within_slop_in_order() -> None:
    pairs = []
    sync = ApproximateTimeSync(2, slop_s=0.01, queue_size=5, callback=lambda a, b: pairs.append((a, b)))
    sync.add(0, 1.000, "c1")
    sync.add(1, 0.950, "d0")  # too far from c1
    assert not pairs
    sync.add(1, 1.004, "d1")
    assert pairs == [("c1", "d1")]
    sync.add(0, 1.100, "c2")
    sync.add(0, 1.200, "c3")
    sync.add(1, 1.201, "d3")
    assert pairs[-1] == ("c3", "d3") and len(pairs) == 2


@pytest.mark.parametrize("depth_first", [False, True])
def test_approximate_sync_never_pairs_a_neighbours_depth_at_high_rate(depth_first) -> None:
    """Frames 10 ms apart with a 50 ms slop: every colour gets the depth of its own stamp."""
    pairs = []
    sync = ApproximateTimeSync(2, slop_s=0.05, queue_size=10, callback=lambda a, b: pairs.append((a, b)))
    rng = np.random.default_rng(0)
    for i in range(40):
        t = 1.0 + 0.01 * i
        jitter = float(rng.uniform(-0.002, 0.002))  # depth stamped within 2 ms of its colour
        order = [(1, t + jitter, f"d{i}"), (0, t, f"c{i}")] if depth_first else [(0, t, f"c{i}"), (1, t + jitter, f"d{i}")]
        for index, stamp, name in order:
            sync.add(index, stamp, name)
    assert len(pairs) >= 39  # the last colour may wait for a later depth
    assert all(c[1:] == d[1:] for c, d in pairs), pairs
    assert sync.unmatched == 0


def test_approximate_sync_drops_a_colour_without_depth() -> None:
    pairs = []
    sync = ApproximateTimeSync(2, slop_s=0.01, queue_size=10, callback=lambda a, b: pairs.append((a, b)))
    sync.add(0, 1.0, "c0")  # its depth was lost
    sync.add(0, 1.1, "c1")
    sync.add(1, 1.1, "d1")
    assert pairs == [("c1", "d1")] and sync.unmatched == 1


def test_approximate_sync_recovers_when_time_goes_back() -> None:
    pairs = []
    sync = ApproximateTimeSync(2, slop_s=0.01, queue_size=5, callback=lambda a, b: pairs.append((a, b)))
    sync.add(0, 10.0, "a")
    sync.add(1, 10.0, "b")
    sync.add(0, 1.0, "c")  # a bag loop restarts at an earlier stamp
    sync.add(1, 1.0, "d")
    assert pairs == [("a", "b"), ("c", "d")] and sync.time_resets == 1


# ---- poses ----------------------------------------------------------------------------------

def test_pose_history_interpolates_and_waits_for_the_future() -> None:
    T0 = np.eye(4)
    T1 = pose_from_translation_quaternion((2.0, 0, 0), Rotation.from_euler("z", 90, degrees=True).as_quat())
    hist = PoseHistory(max_gap_s=1.0)
    hist.add(0.0, T0)
    hist.add(1.0, T1)
    mid = hist.lookup(0.5)
    assert np.allclose(mid[:3, 3], [1.0, 0, 0])
    assert np.isclose(Rotation.from_matrix(mid[:3, :3]).as_euler("xyz", degrees=True)[2], 45.0)
    assert hist.lookup(1.5) is None  # not yet
    assert np.allclose(hist.lookup(1.0), T1)
    assert np.allclose(interpolate_pose(T0, T1, 1.0), T1)


def test_pose_history_rejects_gaps_and_bad_poses() -> None:
    hist = PoseHistory(max_gap_s=0.2)
    hist.add(0.0, np.eye(4))
    hist.add(1.0, np.eye(4))
    assert hist.lookup(0.5) is None  # gap of 1 s > 0.2 s
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite 4x4"):
        hist.add(2.0, bad)
    with pytest.raises(ValueError, match="not a rotation"):
        pose_from_translation_quaternion((0, 0, 0), (0, 0, 0, 0.1))


# ---- ingestion ------------------------------------------------------------------------------

def test_register_depth_to_color_matches_direct_unprojection() -> None:
    """A half-resolution depth of a plane, registered to full size, unprojects to the same plane."""
    Kc = K.copy()
    Kd = K.copy()
    Kd[:2] /= 2
    depth_half = np.full((24, 32), 1500, np.uint16)
    reg = register_depth_to_color(depth_half, Kd, Kc, (48, 64))
    assert reg.shape == (48, 64) and reg.dtype == np.uint16
    pm = depth_to_world_m(reg, Kc, np.eye(4))
    assert pm.valid.mean() > 0.95
    assert np.allclose(pm.xyz_m[pm.valid][:, 2], 1.5)


def test_observation_errors_name_the_field() -> None:
    obs = plane_obs(0.0)
    with pytest.raises(ValueError, match="rgb must be"):
        observation_to_frame(RgbdObservation(0.0, obs.rgb[:, :, 0], obs.depth, K, np.eye(4)), 0,
                             depth_scale_m=0.001, min_depth_m=0.1, max_depth_m=10)
    with pytest.raises(ValueError, match="no depth intrinsics"):
        observation_to_frame(RgbdObservation(0.0, obs.rgb, obs.depth[::2, ::2], K, np.eye(4)), 0,
                             depth_scale_m=0.001, min_depth_m=0.1, max_depth_m=10)
    with pytest.raises(TypeError, match="depth must be uint16"):
        observation_to_frame(RgbdObservation(0.0, obs.rgb, obs.depth.astype(np.int32), K, np.eye(4)), 0,
                             depth_scale_m=0.001, min_depth_m=0.1, max_depth_m=10)


def test_ingestor_counts_rejections_and_keeps_going() -> None:
    buffer = RollingKeyframeBuffer(BufferConfig(capacity=4, pixel_stride=2))
    ing = FrameIngestor(buffer, queue_size=16)
    try:
        bad_T = np.eye(4)
        bad_T[0, 0] = np.nan
        ing.put(RgbdObservation(0.0, np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint16), K, bad_T))
        for i, d in enumerate((1.0, 2.0, 3.0)):
            ing.put(plane_obs(1.0 + i, depth_m=d))
        assert ing.wait_idle(10)
        assert ing.stats.rejected == 1 and "T_world_cam" in ing.stats.last_error
        assert ing.stats.ingested == 3 and len(buffer) == 3
    finally:
        ing.close()


def test_ingestor_drops_oldest_when_the_queue_is_full() -> None:
    buffer = RollingKeyframeBuffer(BufferConfig(capacity=4, pixel_stride=2))
    ing = FrameIngestor(buffer, queue_size=2)
    gate = threading.Event()
    original = buffer.insert
    buffer.insert = lambda frame: (gate.wait(5), original(frame))[1]
    try:
        for i in range(6):
            ing.put(plane_obs(float(i), depth_m=1.0 + i))
        gate.set()
        assert ing.wait_idle(10)
        assert ing.stats.received == 6 and ing.stats.dropped_queue_full >= 3
        assert ing.stats.ingested == 6 - ing.stats.dropped_queue_full
    finally:
        gate.set()
        ing.close()


def test_subsample_snapshot_spreads_over_time() -> None:
    buffer = RollingKeyframeBuffer(BufferConfig(capacity=8, pixel_stride=2))
    for i in range(6):
        frame = observation_to_frame(plane_obs(float(i), depth_m=1.0 + 0.5 * i), i, depth_scale_m=0.001,
                                     min_depth_m=0.1, max_depth_m=10)
        buffer.insert(frame)
    snap = buffer.snapshot()
    assert len(snap.keyframes) == 6
    sub = subsample_snapshot(snap, 3)
    assert [kf.stamp_s for kf in sub.keyframes] == [0.0, 2.0, 5.0]  # round(linspace(0, 5, 3))
    assert subsample_snapshot(snap, 0) is snap
    assert isinstance(sub, BufferSnapshot) and sub.version == snap.version


# ---- config ---------------------------------------------------------------------------------

def test_node_config_validates_with_the_parameter_name() -> None:
    assert NodeConfig().pose is PoseSource.AUTO
    with pytest.raises(ValueError, match="unknown pose_source 'gps'; expected one of: auto, tf, topic"):
        NodeConfig(pose_source="gps")
    with pytest.raises(ValueError, match="parameter sync_slop_s must be > 0"):
        NodeConfig(sync_slop_s=0.0)
    with pytest.raises(ValueError, match="min_depth_m .* must be < max_depth_m"):
        NodeConfig(min_depth_m=5.0, max_depth_m=1.0)
    with pytest.raises(ValueError, match="multi_object_threshold"):
        NodeConfig(multi_object_threshold=1.5)
    with pytest.raises(ValueError, match="parameter query_keyframe_groups must be > 0, got 0"):
        NodeConfig(query_keyframe_groups=0)
    assert NodeConfig().scene_qa_config().keyframe_groups == 4
    # 0 leaves the threshold to the model (its config's rule and units); else it is passed on
    assert NodeConfig().scene_qa_config().multi_object_threshold is None
    assert NodeConfig(multi_object_threshold=0.25).scene_qa_config().multi_object_threshold == 0.25
