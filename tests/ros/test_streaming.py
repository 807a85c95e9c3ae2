"""A query waiting in the model (a real graph, one process): the node serves its camera
streams meanwhile, and a lifecycle transition meanwhile leaves the caller answered.

Kept apart from the fault tests: their module-wide node would answer this test's query
(two nodes of one name in one domain share the service name)."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from video3d_interfaces.srv import Query  # noqa: E402
from video3d_ros.model.untrained import write_untrained_tiny  # noqa: E402
from video3d_ros.ros.harness import Graph, fed_node  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
R = Query.Response
REQ = Query.Request


def counters(graph: Graph) -> dict:
    return graph.node.diagnostics_values()


@contextlib.contextmanager
def node_with_a_keyframe(tmp_path, **frames):
    """A node of its own (untrained tiny model, reliable topics), a feeder of ``frames``
    (FramePublisher's n_frames / width / height), and a keyframe ingested."""
    params = {"buffer_capacity": 8, "min_new_voxels": 1, "sensor_qos": False}
    with fed_node(write_untrained_tiny(tmp_path), params, **frames) as (graph, feeder):
        feeder.good(3)
        graph.wait_for(lambda: counters(graph)["frames_ingested"] >= 1, 20.0, "a keyframe")
        yield graph, feeder


def test_a_camera_stream_is_taken_whole_while_a_query_runs(tmp_path) -> None:
    """90 frames of 320 x 240 at 30 Hz on reliable topics, published while a query waits in
    the model: every frame is received meanwhile, none is dropped for its pose, and the
    answer comes once the model returns. The service callback awaits the query worker; were
    it to block the node's single executor thread, the frames would queue up behind it (and
    overflow the subscriptions' queues) until the answer, and this test would time out."""
    with node_with_a_keyframe(tmp_path, n_frames=30, width=320, height=240) as (graph, feeder):
        engine = graph.node.scene_qa.engine
        original, gate = engine.ask, threading.Event()
        engine.ask = lambda *a, **k: (gate.wait(30.0), original(*a, **k))[1]
        try:
            query = graph.client.call_async(REQ(task=REQ.TASK_QUESTION, text="how many chairs are there?"))
            before = counters(graph)["frames_received"]
            for _ in range(90):
                feeder.send()
                time.sleep(1 / 30)
            graph.wait_for(lambda: counters(graph)["frames_received"] - before >= 90, 20.0,
                           "the 90 frames to be received")
            assert not query.done(), "the query was answered before the model ran"
        finally:
            gate.set()
            engine.ask = original
        graph.wait_for(query.done, 20.0, "the answer")
        assert query.result().status == R.STATUS_OK, query.result().message
        graph.wait_for(lambda: counters(graph)["frames_waiting_for_pose"] == 0, 10.0, "no frame waiting")
        stats = counters(graph)
        assert stats["frames_received"] - before == 90 and stats["pose_failures"] == 0, stats


def test_deactivating_while_a_query_waits_answers_it_and_draws_nothing(tmp_path) -> None:
    """A lifecycle deactivate arrives while a grounding query waits in the model: the caller
    still gets its answer, no markers are published for it, and the node activates again."""
    with node_with_a_keyframe(tmp_path, n_frames=6, width=96, height=72) as (graph, feeder):
        engine = graph.node.scene_qa.engine
        original, gate, entered = engine.ground, threading.Event(), threading.Event()

        def gated(*a, **k):
            entered.set()
            gate.wait(30.0)
            return original(*a, **k)

        engine.ground = gated
        markers_before = len(graph.messages["markers"])
        query = graph.client.call_async(REQ(task=REQ.TASK_GROUND, text="the chair", publish_markers=True))
        assert entered.wait(20.0), "the query never reached the model"
        graph.node.trigger_deactivate()
        gate.set()
        graph.wait_for(query.done, 20.0, "the answer")
        engine.ground = original
        assert query.result().status == R.STATUS_OK, query.result().message
        time.sleep(0.5)
        assert len(graph.messages["markers"]) == markers_before
        graph.node.trigger_activate()
        graph.wait_active()
        resp = graph.query(task=REQ.TASK_QUESTION, text="how many chairs are there?")
        assert resp.status == R.STATUS_OK, resp.message


@pytest.mark.parametrize("prepare_after_s", [0.2, 0.0])
def test_keyframes_are_prepared_for_the_next_query_once_they_stop_changing(tmp_path, prepare_after_s):
    """prepare_after_s > 0: once no new keyframe has come for that long, the query worker encodes
    the keyframes (and builds the proposals) before any query asks; 0: nothing is encoded until
    a query comes. Either way the query is answered."""
    params = {"buffer_capacity": 8, "min_new_voxels": 1, "sensor_qos": False,
              "prepare_after_s": prepare_after_s}
    with fed_node(write_untrained_tiny(tmp_path), params, n_frames=6, width=96, height=72) as (graph, feeder):
        feeder.good(6)
        graph.wait_for(lambda: counters(graph)["frames_ingested"] >= 6, 20.0, "six frames")
        engine = graph.node.scene_qa.engine
        if prepare_after_s:
            graph.wait_for(lambda: counters(graph)["keyframe_sets_prepared"] >= 1, 20.0,
                           "the keyframes prepared")
            assert engine.keyframe_ids, "prepared, yet no keyframe encoded"
            prepared_version = graph.node.buffer.snapshot().version
            assert counters(graph)["keyframes_prepared"] is True
        else:
            time.sleep(1.0)
            assert counters(graph)["keyframe_sets_prepared"] == 0 and not engine.keyframe_ids
            assert counters(graph)["keyframes_prepared"] is False
        resp = graph.query(task=REQ.TASK_GROUND, text="the chair")
        assert resp.status == R.STATUS_OK, resp.message
        if prepare_after_s:  # one set of keyframes, prepared once (not again after the query)
            time.sleep(0.6)
            assert graph.node.buffer.snapshot().version == prepared_version
            assert counters(graph)["keyframe_sets_prepared"] == 1
            # a query reading other keyframes (its own max_keyframes) leaves the engine holding
            # those: no longer prepared, and the node prepares the default reading again
            kept = len(graph.node.buffer.snapshot().keyframes)
            assert kept > 2
            resp = graph.query(task=REQ.TASK_QUESTION, text="how many chairs are there?", max_keyframes=2)
            assert resp.status == R.STATUS_OK and len(resp.keyframe_stamps) == 2, resp.message
            assert len(engine.keyframe_ids) == 2
            graph.wait_for(lambda: counters(graph)["keyframe_sets_prepared"] == 2, 20.0,
                           "the default keyframes prepared again")
            assert counters(graph)["keyframes_prepared"] is True
            assert len(engine.keyframe_ids) == min(kept, graph.node.scene_qa.reading(
                graph.node.buffer.snapshot())[0].keyframes.__len__())
