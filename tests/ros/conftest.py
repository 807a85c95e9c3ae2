"""Fixtures for tests that run a real rclpy graph (marker ``ros``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed; run via scripts/test.sh")
from rclpy.context import Context  # noqa: E402

from rclpy.executors import SingleThreadedExecutor  # noqa: E402


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
def executor(ros_context: Context) -> Iterator[SingleThreadedExecutor]:
    ex = SingleThreadedExecutor(context=ros_context)
    try:
        yield ex
    finally:
        ex.shutdown(timeout_sec=5.0)
