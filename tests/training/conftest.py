"""Fixtures: a few generated scenes in the ScanNet layout with processed JSON files."""

from pathlib import Path

import pytest


def generate_rooms(out: Path, num_scenes: int, seed: int, val_fraction: float, width: int,
                   height: int, n_frames: int, frame_stride: int) -> Path:
    """Generated rooms written under ``out`` in the ScanNet layout, with processed JSON."""
    from video3d_ros.scenes import RenderConfig, TrajectoryConfig
    from video3d_ros.scenes.writer import WriteConfig
    from video3d_train.scenes_cli import GenerateConfig, generate

    cfg = GenerateConfig(num_scenes=num_scenes, seed=seed, val_fraction=val_fraction,
                         render=RenderConfig(width=width, height=height, nthreads=1),
                         trajectory=TrajectoryConfig(n_frames=n_frames),
                         write=WriteConfig(frame_stride=frame_stride), figures=False)
    generate(cfg, out, progress=False)
    return out


@pytest.fixture(scope="session")
def make_rooms():
    """:func:`generate_rooms`, for test modules that need rooms of their own."""
    return generate_rooms


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory) -> Path:
    return generate_rooms(tmp_path_factory.mktemp("gen"), num_scenes=3, seed=7, val_fraction=0.34,
                          width=64, height=48, n_frames=40, frame_stride=10)


@pytest.fixture(scope="session")
def fit():
    """``fit(step, items, steps)``: the step's output on ``items`` before and after ``steps``
    Adam updates (lr 3e-3) on them — whether a loss moves the weights the way it should."""
    import torch

    def run(step, items, steps: int, lr: float = 3e-3):
        first = step(items)
        opt = torch.optim.Adam(step.model.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            step(items).loss.backward()
            opt.step()
        return first, step(items)

    return run

