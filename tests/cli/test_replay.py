"""A rosbag2 written with rosbags, replayed into video3d_node over a real graph (no rosbag2 install)."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from rosbags.rosbag2 import StoragePlugin  # noqa: E402

from video3d_interfaces.srv import Query  # noqa: E402
from video3d_ros.ros.harness import Graph  # noqa: E402
from video3d_ros.ros.recording_player import RecordingPlayer  # noqa: E402

from .layouts import write_rosbag  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.mark.parametrize("storage,pose_source", [(StoragePlugin.MCAP, "pose"), (StoragePlugin.SQLITE3, "tf")])
def test_bag_replayed_into_the_node_answers_queries(observations, tiny_model_dir, tmp_path, storage, pose_source):
    bag = write_rosbag(observations, tmp_path / "scan", storage=storage, pose_source=pose_source)
    graph = Graph(tiny_model_dir, with_camera=False, node_params={"buffer_capacity": 8, "sensor_qos": False})
    player = None
    try:
        graph.wait_active()
        player = RecordingPlayer(context=graph.context, parameter_overrides=[
            Parameter("path", value=str(bag)), Parameter("rate", value=1.0)])
        graph.executor.add_node(player)
        graph.wait_for(lambda: player.passes >= 1, 60.0, "one pass over the bag")
        # every frame the node paired is either ingested or counted as dropped, none still waiting
        graph.wait_for(lambda: graph.node.diagnostics_values()["frames_waiting_for_pose"] == 0, 10.0,
                       "frames waiting for their pose")
        graph.node.ingestor.wait_idle(10.0)
        stats = graph.node.diagnostics_values()
        assert player.published == len(observations)
        assert stats["frames_ingested"] >= 0.9 * len(observations), stats
        assert stats["keyframes"] >= 3 and stats["frames_rejected"] == 0, stats
        resp = graph.query(task=Query.Request.TASK_GROUND, text="the chair next to the table")
        assert resp.status == Query.Response.STATUS_OK and resp.objects, resp.message
        # the replayed keyframes keep the recording's geometry: their poses are the bag's poses
        poses = {round(float(o.T_world_cam[0, 3]), 4) for o in observations}
        kf_x = {round(float(kf.T_world_cam[0, 3]), 4) for kf in graph.node.buffer.snapshot().keyframes}
        assert kf_x <= poses
    finally:
        if player is not None:
            player.destroy_node()
        graph.close()
