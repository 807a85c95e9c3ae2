"""The interface package, built by colcon from msg/, served and called over a real graph."""

from __future__ import annotations

import os

import pytest

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from video3d_interfaces.msg import Box3D, DetectedObject, DetectedObjectArray  # noqa: E402
from video3d_interfaces.srv import Query  # noqa: E402

pytestmark = pytest.mark.ros


def test_query_constants_match_the_documented_codes() -> None:
    assert [Query.Request.TASK_AUTO, Query.Request.TASK_QUESTION, Query.Request.TASK_GROUND,
            Query.Request.TASK_GROUND_MULTI, Query.Request.TASK_CAPTION] == [0, 1, 2, 3, 4]
    codes = {name: getattr(Query.Response, f"STATUS_{name}")
             for name in ("OK", "BUSY", "NO_DATA", "TF_ERROR", "TIMEOUT", "MODEL_ERROR", "INVALID")}
    assert sorted(codes.values()) == list(range(7))


def test_query_service_round_trip_over_localhost_graph(ros_context, executor) -> None:
    """A server node answers a client node; every field survives serialisation."""
    server = rclpy.create_node("v3d_test_server", context=ros_context)
    client_node = rclpy.create_node("v3d_test_client", context=ros_context)
    seen: list[Query.Request] = []

    def handle(request: Query.Request, response: Query.Response) -> Query.Response:
        seen.append(request)
        response.success = True
        response.status = Query.Response.STATUS_OK
        response.answer = f"echo:{request.text}"
        response.header.frame_id = request.result_frame
        for rank in range(3):
            obj = DetectedObject(id=10 + rank, label=f"obj{rank}", score=1.0 - 0.25 * rank)
            obj.box.center.x, obj.box.center.y, obj.box.center.z = float(rank), 2.0, 0.5
            obj.box.size.x = obj.box.size.y = obj.box.size.z = 0.4
            response.objects.append(obj)
        response.keyframe_stamps = [Time(sec=s, nanosec=7) for s in range(5)]
        response.inference_time_s = 0.125
        response.keyframe_groups = 3
        return response

    server.create_service(Query, "/v3d_test/query", handle)
    client = client_node.create_client(Query, "/v3d_test/query")
    executor.add_node(server)
    executor.add_node(client_node)
    try:
        assert client.wait_for_service(timeout_sec=10.0), "service never appeared on the graph"
        request = Query.Request(task=Query.Request.TASK_GROUND, text="the lamp left of the bed",
                                result_frame="map", max_keyframes=16, publish_markers=True)
        request.has_target = True
        request.target = Box3D()
        request.target.center.x = 1.5
        future = client.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        assert future.done(), "no response within 10 s"
        response = future.result()
    finally:
        server.destroy_node()
        client_node.destroy_node()

    assert len(seen) == 1
    assert seen[0].task == Query.Request.TASK_GROUND and seen[0].max_keyframes == 16
    assert seen[0].has_target and seen[0].target.center.x == pytest.approx(1.5)
    assert response.success and response.status == Query.Response.STATUS_OK
    assert response.answer == "echo:the lamp left of the bed"
    assert response.header.frame_id == "map"
    assert [o.id for o in response.objects] == [10, 11, 12]
    assert [o.score for o in response.objects] == pytest.approx([1.0, 0.75, 0.5])
    assert [t.sec for t in response.keyframe_stamps] == [0, 1, 2, 3, 4]
    assert response.inference_time_s == pytest.approx(0.125)
    assert response.keyframe_groups == 3


def test_harness_isolates_ros_traffic() -> None:
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 1 <= int(os.environ["ROS_DOMAIN_ID"]) <= 100


def test_detected_object_array_carries_header() -> None:
    arr = DetectedObjectArray()
    arr.header.frame_id = "world"
    arr.objects.append(DetectedObject(id=3))
    assert arr.objects[0].id == 3 and arr.header.frame_id == "world"
