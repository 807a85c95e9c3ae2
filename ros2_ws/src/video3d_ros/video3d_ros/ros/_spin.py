"""Entry-point plumbing shared by the package's executables."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node


class DrainingExecutor(MultiThreadedExecutor):
    """A MultiThreadedExecutor whose :meth:`shutdown` lets queued callbacks finish first.

    rclpy's ``Executor.shutdown`` destroys the executor's guard condition before
    ``MultiThreadedExecutor.shutdown`` waits for the handlers already queued in its thread
    pool (its own wait for outstanding work never runs: it tests the flag it has just set).
    Each of those handlers then triggers the destroyed guard condition, fails with
    ``InvalidHandle: cannot use Destroyable because destruction was requested``, and the
    failure is printed as "The following exception was never retrieved" when the task is
    garbage-collected. Here the pool is drained first. Call it once spinning has stopped
    (``spin()`` returned or its thread joined): the pool takes no new work afterwards.
    """

    def shutdown(self, timeout_sec: float | None = None, *, wait_for_threads: bool = True) -> bool:
        # rclpy keeps the pool in ``_executor``; there is no public way to wait for its queue
        self._executor.shutdown(wait=True)
        return super().shutdown(timeout_sec, wait_for_threads=wait_for_threads)


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None,
              make_executor: Callable[[Node], Executor] | None = None) -> None:
    """rclpy.init, build the node, spin until Ctrl-C, then tear everything down."""
    rclpy.init(args=args)
    node = make_node()
    executor = make_executor(node) if make_executor else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
