"""Fixtures: a few generated scenes in the ScanNet layout with processed JSON files."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory) -> Path:
    from video3d_ros.scenes import RenderConfig, TrajectoryConfig
    from video3d_ros.scenes.writer import WriteConfig
    from video3d_train.scenes_cli import GenerateConfig, generate

    out = tmp_path_factory.mktemp("gen")
    cfg = GenerateConfig(num_scenes=3, seed=7, val_fraction=0.34,
                         render=RenderConfig(width=64, height=48, nthreads=1),
                         trajectory=TrajectoryConfig(n_frames=40),
                         write=WriteConfig(frame_stride=10), figures=False)
    generate(cfg, out, progress=False)
    return out
