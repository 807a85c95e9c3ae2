"""Shared small scenes for the generated-scenes tests (tiny resolutions, few frames)."""

from __future__ import annotations

import pytest

from video3d_ros.scenes import RenderConfig, TrajectoryConfig, generate_scene
from video3d_ros.scenes.writer import WriteConfig, write_scene

SMALL_RENDER = RenderConfig(width=96, height=72, nthreads=1)
SHORT_SCAN = TrajectoryConfig(n_frames=60)
WRITE = WriteConfig(frame_stride=10, points_per_m2=300.0)


@pytest.fixture(scope="session")
def scene():
    return generate_scene(seed=11, scene_id="scene0011_00")


@pytest.fixture(scope="session")
def written_scene(tmp_path_factory, scene):
    root = tmp_path_factory.mktemp("gen")
    files = write_scene(scene, root, render_config=SMALL_RENDER, trajectory_config=SHORT_SCAN, write_config=WRITE)
    return scene, root, files
