"""Fixtures for tests that run a real rclpy graph (marker ``ros``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed; run via scripts/test.sh")
from rclpy.context import Context  # noqa: E402

from video3d_ros.ros._spin import DrainingExecutor  # noqa: E402


@pytest.fixture
def ros_context() -> Iterator[Context]:
    """A private rclpy context on the harness's localhost-only domain."""
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def executor(ros_context: Context) -> Iterator[DrainingExecutor]:
    ex = DrainingExecutor(num_threads=4, context=ros_context)
    try:
        yield ex
    finally:
        ex.shutdown(timeout_sec=5.0)
