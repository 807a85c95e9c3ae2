"""Fixtures for keyframe tests: voxel-set frames and the analytic room scan."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from video3d_ros.keyframes import Frame

_SCENE = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_keyframes_scene.py"


@pytest.fixture(scope="session")
def scene_module():
    """The analytic room scan generator shared with the benchmarks."""
    spec = importlib.util.spec_from_file_location("bench_keyframes_scene", _SCENE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def frame_from_voxels(frame_id, voxels, stamp_s=None, position_m=(0.0, 0.0, 0.0), voxel_size_m=0.1):
    """A Frame whose valid points sit at the centres of the given integer voxels.

    xyz_m is (1, N, 3) (plus one invalid pixel far away, to exercise the mask).
    """
    ijk = np.asarray(sorted(voxels), dtype=np.float64).reshape(-1, 3)
    xyz = np.concatenate([ijk * voxel_size_m, [[1e3, 1e3, 1e3]]]).astype(np.float32)[None]
    valid = np.ones(xyz.shape[:2], bool)
    valid[0, -1] = False
    T = np.eye(4)
    T[:3, 3] = position_m
    return Frame(
        frame_id=frame_id,
        stamp_s=float(frame_id if stamp_s is None else stamp_s),
        rgb=np.zeros((2, 2, 3), np.uint8),
        xyz_m=xyz,
        valid=valid,
        T_world_cam=T,
    )


@pytest.fixture
def make_frame():
    return frame_from_voxels
