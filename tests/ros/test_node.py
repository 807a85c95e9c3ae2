"""video3d_node end to end on a real rclpy graph: synthetic camera → keyframes → Query → markers."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("rclpy")
from visualization_msgs.msg import Marker  # noqa: E402

from video3d_interfaces.srv import Query  # noqa: E402

from video3d_ros.model.untrained import write_untrained_tiny  # noqa: E402
from video3d_ros.ros.harness import Graph  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

OK = Query.Response.STATUS_OK


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # records a training frame count like a trained checkpoint, so queries default to 8 keyframes
    return write_untrained_tiny(tmp_path_factory.mktemp("tiny_untrained"), trained_frames=8)


@pytest.fixture(scope="module")
def graph(model_dir):
    g = Graph(model_dir)
    try:
        g.wait_active()
        g.wait_for(lambda: g.keyframes() >= 4, 90.0, "4 keyframes from the synthetic camera")
        yield g
    finally:
        g.close()


def test_ground_query_returns_ranked_boxes_and_markers(graph) -> None:
    before = len(graph.messages["markers"])
    resp = graph.query(task=Query.Request.TASK_GROUND, text="the red chair next to the table",
                       publish_markers=True)
    assert resp.status == OK and resp.success, resp.message
    assert 1 <= len(resp.objects) <= 5
    scores = [o.score for o in resp.objects]
    assert scores == sorted(scores, reverse=True)
    assert all(o.box.size.x > 0 and o.box.size.y > 0 and o.box.size.z > 0 for o in resp.objects)
    assert resp.header.frame_id == "map"
    assert len(resp.keyframe_stamps) >= 4
    assert resp.inference_time_s > 0
    graph.wait_for(lambda: len(graph.messages["markers"]) > before, 10.0, "result markers")
    markers = graph.messages["markers"][-1].markers
    assert markers[0].action == Marker.DELETEALL and markers[0].header.frame_id == "map"
    boxes = [m for m in markers if m.ns == "boxes"]
    assert [m.id for m in boxes] == list(range(len(resp.objects)))
    assert all(len(m.points) == 24 for m in boxes)  # 12 edges of a wireframe box
    assert {m.ns for m in markers[1:]} == {"boxes", "labels"}


def test_question_and_caption_answer_text(graph) -> None:
    q = graph.query(task=Query.Request.TASK_QUESTION, text="How many chairs are there?")
    assert q.status == OK, q.message
    assert isinstance(q.answer, str) and not q.objects
    req = dict(task=Query.Request.TASK_CAPTION, has_target=True)
    c = graph.query(**req)
    assert c.status == OK, c.message


def test_auto_task_routes_questions_and_expressions(graph) -> None:
    q = graph.query(task=Query.Request.TASK_AUTO, text="what colour is the sofa?")
    g = graph.query(task=Query.Request.TASK_AUTO, text="the lamp on the desk")
    assert q.status == OK and not q.objects
    assert g.status == OK and len(g.objects) >= 1


def test_max_keyframes_limits_the_frames_used(graph) -> None:
    resp = graph.query(task=Query.Request.TASK_QUESTION, text="what is on the table?", max_keyframes=2)
    assert resp.status == OK and len(resp.keyframe_stamps) == 2


def test_queries_use_query_keyframes_unless_the_request_says(graph) -> None:
    """Without max_keyframes a query reads up to query_keyframes (-1: as many as the model
    was trained with; the checkpoint's config.json records 8) × query_keyframe_groups (4)
    keyframes spread over the buffer, in groups of at most 8 (the embedded model's text
    answers break when one sequence holds many more than the 8 frames it was trained on);
    with one group, 8."""
    graph.wait_for(lambda: int(graph.node.diagnostics_values()["keyframes"]) > 8, 60.0,
                   "more than 8 keyframes")
    kept = int(graph.node.diagnostics_values()["keyframes"])
    resp = graph.query(task=Query.Request.TASK_QUESTION, text="what is on the table?")
    assert resp.status == OK and kept <= len(resp.keyframe_stamps) <= 16  # the whole buffer
    assert resp.keyframe_groups == -(-len(resp.keyframe_stamps) // 8)  # groups of at most 8
    assert graph.node.scene_qa.config.keyframe_groups == 4
    graph.node.scene_qa.config = dataclasses.replace(graph.node.scene_qa.config, keyframe_groups=1)
    try:
        one = graph.query(task=Query.Request.TASK_QUESTION, text="what is on the table?")
    finally:
        graph.node.scene_qa.config = dataclasses.replace(graph.node.scene_qa.config, keyframe_groups=4)
    assert one.status == OK and len(one.keyframe_stamps) == 8 and one.keyframe_groups == 1
    every = graph.query(task=Query.Request.TASK_QUESTION, text="what is on the table?",
                        max_keyframes=kept)
    assert every.status == OK and len(every.keyframe_stamps) == kept


def test_diagnostics_and_coverage_outputs(graph) -> None:
    values = graph.node.diagnostics_values()
    assert values["keyframes"] >= 4 and values["covered_voxels"] > 0
    assert float(values["ingest_rate_hz"]) > 0
    graph.wait_for(lambda: graph.messages["keyframes"], 10.0, "keyframe frustums")
    frustum = graph.messages["keyframes"][-1].markers[0]
    assert frustum.ns == "keyframes" and len(frustum.points) % 16 == 0 and frustum.points


def test_video3d_query_command_prints_the_answer(graph, capsys) -> None:
    from video3d_ros.ros.query_client import main as query_main

    rc = query_main(["the red chair next to the table", "--task", "ground", "--json"])
    out = capsys.readouterr().out
    import json

    d = json.loads(out)
    assert rc == 0 and d["status"] == "OK" and d["objects"] and d["frame_id"] == "map"
    assert d["objects"][0]["score"] >= d["objects"][-1]["score"]
    assert d["keyframe_groups"] == -(-d["keyframes"] // 8) > 1  # the buffer, in groups of at most 8
    rc = query_main(["--task", "caption", "--target", "0", "0", "0.5"])
    out = capsys.readouterr().out
    assert rc == 0 and "status: OK" in out and f"in {d['keyframe_groups']} groups" in out
    rc = query_main(["--task", "caption"])  # no target: the node says INVALID, exit status 1
    assert rc == 1 and "needs a target" in capsys.readouterr().out
    assert query_main(["x", "--target", "1", "2"]) == 2  # malformed locally


def test_destroying_the_node_joins_its_threads(model_dir) -> None:
    """Closing the graph stops the node's query/prepare worker and its ingest thread (a daemon
    thread left inside torch aborted the process at interpreter exit)."""
    g = Graph(model_dir)
    try:
        g.wait_active()
        g.wait_for(lambda: g.keyframes() >= 2, 90.0, "2 keyframes from the synthetic camera")
        threads = [g.node.worker._thread, g.node.ingestor._thread]
        assert all(t.is_alive() for t in threads)
    finally:
        g.close()
    assert not any(t.is_alive() for t in threads)
    assert g.node.worker is None and g.node.ingestor is None
