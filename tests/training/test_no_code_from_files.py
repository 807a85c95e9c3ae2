"""Torch files we read (training checkpoints, the reference's .pth box files) never run code:
tensors, numpy arrays and plain containers load; any other pickled object is refused with
the file named, before it can do anything."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from video3d_train.checkpointing import TrainProgress, load_training_checkpoint, save_training_checkpoint
from video3d_train.data import DataError, read_scene_boxes


class _RunsCode:
    """Unpickling this would create a file: proof that code from the file ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_reference_pth_boxes_load_and_a_malicious_one_is_refused(tmp_path):
    base = tmp_path / "scannet" / "pcd_with_object_aabbs" / "val"
    base.mkdir(parents=True)
    lo = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0]])
    hi = lo + np.array([[1.0, 1.0, 1.0], [0.5, 0.5, 2.0]])
    corners = np.stack([np.stack([lo[i], hi[i]] * 4) for i in range(2)]).astype(np.float32)
    torch.save({"aabb_obj_ids": np.array([3, 7]), "aabb_corner_xyz": corners}, base / "scene0001_00.pth")
    objs = read_scene_boxes(tmp_path, "scene0001_00")
    assert objs.object_ids.tolist() == [3, 7]
    np.testing.assert_allclose(objs.boxes[1], [1.25, 2.25, 1.0, 0.5, 0.5, 2.0])

    marker = tmp_path / "code_ran"
    torch.save({"aabb_obj_ids": _RunsCode(str(marker)), "aabb_corner_xyz": corners},
               base / "scene0002_00.pth")
    with pytest.raises(DataError, match=r"scene0002_00\.pth.*refused"):
        read_scene_boxes(tmp_path, "scene0002_00")
    assert not marker.exists()


def test_training_checkpoint_round_trips_and_a_tampered_one_is_refused(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "optimizer": {"state": {}, "param_groups": []},
             "scheduler": {"last_epoch": 3}, "history": [{"step": 1, "loss": 0.5}]}
    ckpt = save_training_checkpoint(tmp_path, TrainProgress(step=5, micro_batches=10), state)
    progress, loaded = load_training_checkpoint(ckpt)  # numpy RNG state included
    assert progress == TrainProgress(5, 10) and torch.equal(loaded["model"]["w"], torch.arange(4.0))

    marker = tmp_path / "code_ran"
    payload = torch.load(ckpt / "state.pt", weights_only=False)  # our own file, for the test
    payload["history"].append(_RunsCode(str(marker)))
    torch.save(payload, ckpt / "state.pt")
    with pytest.raises(ValueError, match=r"state\.pt: refused to load"):
        load_training_checkpoint(ckpt)
    assert not marker.exists()
