"""Test-suite harness.

ROS isolation is decided here, not by the developer's shell: every run keeps
DDS discovery on localhost and picks its own ROS domain, so parallel runs (and
other machines on the network) never see each other. This module is imported
before any test module, hence before rclpy reads the environment.
"""

from __future__ import annotations

import os
import random

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
# Domain ids 1..100 are safe for the default port mapping; spread by pid and time.
os.environ["ROS_DOMAIN_ID"] = str(1 + random.Random(os.getpid() ^ int.from_bytes(os.urandom(4))).randrange(100))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}"
    ]
