"""Entry-point plumbing shared by the package's executables."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None) -> None:
    """rclpy.init, build the node, spin it on one thread until Ctrl-C, then tear everything down."""
    rclpy.init(args=args)
    node = make_node()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        # Ctrl-C: rclpy's signal handler shuts the context down; the executor raises
        # KeyboardInterrupt or, when the signal arrives while it waits, ExternalShutdownException
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
