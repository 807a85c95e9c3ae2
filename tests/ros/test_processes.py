"""The launch file's set-up as separate processes: ``synthetic_camera`` and ``video3d_node``
started from their console scripts (as ``ros2 run`` / ``ros2 launch`` start them, with the
shipped parameter file), a query from a third process, then Ctrl-C (SIGINT) to both."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
from video3d_interfaces.srv import Query  # noqa: E402
from video3d_ros.model.untrained import write_untrained_tiny  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
R = Query.Response


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"{proc.args[0]} did not stop on SIGINT within 30 s:\n{err[-3000:]}") from None
    return proc.returncode, err


def test_node_and_camera_processes_answer_a_query_and_stop_on_sigint(tmp_path, ros_context, executor) -> None:
    model = write_untrained_tiny(tmp_path / "tiny")
    camera = subprocess.Popen(["synthetic_camera", "--ros-args", "-p", "width:=160", "-p", "height:=120",
                               "-p", "frame_step:=3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node = subprocess.Popen(["video3d_node", "--ros-args", "--params-file",
                             str(ROOT / "launch" / "config" / "video3d.yaml"), "-p", f"model_path:={model}",
                             "-p", "max_new_tokens:=4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client_node = rclpy.create_node("v3d_process_client", context=ros_context)
    try:
        client = client_node.create_client(Query, "/video3d_node/query")
        executor.add_node(client_node)
        assert client.wait_for_service(timeout_sec=60.0), "no /video3d_node/query service"
        deadline, resp = time.monotonic() + 60.0, None
        while time.monotonic() < deadline:  # NO_DATA until the first keyframes are in
            future = client.call_async(Query.Request(task=Query.Request.TASK_GROUND, text="the chair"))
            executor.spin_until_future_complete(future, timeout_sec=30.0)
            resp = future.result()
            if resp is not None and resp.status == R.STATUS_OK:
                break
            time.sleep(0.5)
        assert resp is not None and resp.status == R.STATUS_OK, resp
        assert len(resp.objects) >= 1 and resp.header.frame_id == "map"
    finally:
        client_node.destroy_node()
        results = {name: stop(p) for name, p in (("video3d_node", node), ("synthetic_camera", camera))}
    for name, (code, err) in results.items():
        assert code == 0, f"{name} exited with {code}:\n{err[-3000:]}"
        assert "Traceback" not in err and "never retrieved" not in err, f"{name}:\n{err[-3000:]}"
