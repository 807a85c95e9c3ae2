"""Fixtures: one small generated scan in ScanNet layout, its observations, a tiny untrained model."""

from __future__ import annotations

from pathlib import Path

import pytest

from video3d_ros.model.untrained import write_untrained_tiny

from video3d_ros.recordings import open_recording
from video3d_ros.scenes import RenderConfig, TrajectoryConfig, generate_scene
from video3d_ros.scenes.writer import WriteConfig, write_scene

SCENE_SEED = 3
RENDER = RenderConfig(width=160, height=120, nthreads=1)
TRAJECTORY = TrajectoryConfig(n_frames=240)
FRAME_STRIDE = 6  # 40 stored frames


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """(scene, SceneFiles) of a generated scan written in ScanNet layout."""
    scene = generate_scene(seed=SCENE_SEED, scene_id="scene0003_00")
    files = write_scene(scene, tmp_path_factory.mktemp("gen"), render_config=RENDER, trajectory_config=TRAJECTORY,
                        write_config=WriteConfig(frame_stride=FRAME_STRIDE, write_instance_masks=False,
                                                 points_per_m2=20.0))
    return scene, files


@pytest.fixture(scope="session")
def scannet_dir(generated) -> Path:
    return generated[1].posed_dir


@pytest.fixture(scope="session")
def observations(scannet_dir):
    """All frames of the scan as read by the ScanNet reader (world = axis-aligned frame)."""
    return list(open_recording(scannet_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained `tiny` checkpoint in our format (real tokenizer, random weights)."""
    return write_untrained_tiny(tmp_path_factory.mktemp("tiny_untrained"))
