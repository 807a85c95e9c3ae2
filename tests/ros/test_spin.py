"""Shutting an executor down while callbacks are still queued in its thread pool."""

from __future__ import annotations

import threading
import time

import pytest

from video3d_ros.ros._spin import DrainingExecutor

pytestmark = pytest.mark.ros


def test_shutdown_lets_queued_callbacks_finish_without_errors(ros_context) -> None:
    """One worker thread is busy in a slow timer callback while a fast timer's handler
    waits in the pool's queue; shutting down then must run that handler to completion.
    (rclpy's own MultiThreadedExecutor destroys its guard condition first, and the queued
    handler fails with InvalidHandle — printed as "exception was never retrieved".)"""
    import rclpy

    node = rclpy.create_node("v3d_busy", context=ros_context)
    started, release = threading.Event(), threading.Event()

    def slow() -> None:  # holds the only worker thread until released
        started.set()
        release.wait(5.0)

    node.create_timer(0.05, slow)
    node.create_timer(0.001, lambda: None)
    with pytest.warns(UserWarning, match="single thread"):
        executor = DrainingExecutor(num_threads=1, context=ros_context)
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        assert started.wait(5.0), "the slow timer never ran"
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join(5.0)
    # rclpy keeps the handler tasks it handed to the pool in ``_futures``
    # (one thread: one of them runs the slow callback, the others wait in the queue)
    queued = [f for f in executor._futures if not f.done()]
    assert len(queued) >= 2, "no callback was waiting in the pool: the test did not set up the race"
    # release the slow callback only once shutdown has begun
    releaser = threading.Timer(0.3, release.set)
    releaser.start()
    assert executor.shutdown(timeout_sec=5.0)
    releaser.join()
    failed = [f.exception() for f in executor._futures if f.exception() is not None]
    node.destroy_node()
    assert all(f.done() for f in queued)
    assert not failed, f"handlers failed during shutdown: {failed}"
