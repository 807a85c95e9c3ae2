"""ScanNet preparation on tiny files written in ScanNet's formats by the test."""

import json

import numpy as np
import pytest
from PIL import Image

from video3d_train.data import read_scene_boxes
from video3d_train.scannet import (
    ScanNetFormatError,
    SensHeader,
    export_sens,
    iter_sens_frames,
    scene_instances,
    write_scene_boxes,
    write_sens,
)

K = np.array([[50.0, 0, 15.5, 0], [0, 50.0, 11.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def _header(n):
    return SensHeader(4, "StructureSensor", K, np.eye(4), K, np.eye(4), 2, 1, (32, 24), (32, 24),
                      1000.0, n)


def _frames(n):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        rgb = np.full((24, 32, 3), 40 * i, np.uint8)
        depth = rng.integers(0, 5000, (24, 32)).astype(np.uint16)
        pose = np.eye(4)
        pose[:3, 3] = [i, 2 * i, 0.5]
        out.append((rgb, depth, pose))
    return out


def test_sens_round_trip_and_export(tmp_path):
    frames = _frames(5)
    sens = tmp_path / "scene.sens"
    write_sens(sens, _header(5), frames)
    header, it = iter_sens_frames(sens)
    assert header.num_frames == 5 and header.depth_size == (32, 24)
    np.testing.assert_allclose(header.intrinsic_depth, K)
    assert [f.index for f in it] == [0, 1, 2, 3, 4]
    written = export_sens(sens, tmp_path / "out", frame_skip=2)
    assert written == [0, 2, 4]
    out = tmp_path / "out"
    for i in written:
        d = np.asarray(Image.open(out / "depth" / f"{i:05d}.png"))
        np.testing.assert_array_equal(d, frames[i][1])  # depth is lossless
        np.testing.assert_allclose(np.loadtxt(out / "pose" / f"{i:05d}.txt"), frames[i][2])
        rgb = np.asarray(Image.open(out / "color" / f"{i:05d}.jpg"))
        assert np.abs(rgb.astype(int) - frames[i][0]).max() <= 3  # JPEG, flat colour
    np.testing.assert_allclose(np.loadtxt(out / "intrinsic" / "intrinsic_depth.txt"), K)
    assert sorted(p.name for p in (out / "color").iterdir()) == ["00000.jpg", "00002.jpg",
                                                                 "00004.jpg"]


def test_truncated_sens_names_the_file(tmp_path):
    sens = tmp_path / "bad.sens"
    write_sens(sens, _header(2), _frames(2))
    sens.write_bytes(sens.read_bytes()[:-10])
    header, it = iter_sens_frames(sens)
    with pytest.raises(ScanNetFormatError, match="bad.sens: file ends inside frame 1"):
        list(it)


def _write_scan(d, sid, vertices, seg, groups, align=None):
    d.mkdir(parents=True)
    lines = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}",
             "property float x", "property float y", "property float z",
             "property uchar red", "property uchar green", "property uchar blue",
             "element face 0", "property list uchar int vertex_indices", "end_header"]
    lines += [f"{x} {y} {z} 10 20 30" for x, y, z in vertices]
    (d / f"{sid}_vh_clean_2.ply").write_text("\n".join(lines) + "\n")
    (d / f"{sid}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": seg}))
    (d / f"{sid}.aggregation.json").write_text(json.dumps({"segGroups": groups}))
    if align is not None:
        (d / f"{sid}.txt").write_text("axisAlignment = " + " ".join(map(str, align.ravel())))


def test_boxes_from_segmentation_and_alignment(tmp_path):
    sid = "scene0001_00"
    verts = [(0, 0, 0), (1, 2, 1), (5, 5, 0), (6, 5, 2), (9, 9, 9)]
    seg = [3, 3, 7, 8, 11]
    groups = [{"id": 0, "objectId": 0, "label": "chair", "segments": [3]},
              {"id": 1, "objectId": 1, "label": "table", "segments": [7, 8]}]
    align = np.eye(4)
    align[:3, 3] = [10, 0, -1]  # a pure shift
    _write_scan(tmp_path / "scans" / sid, sid, verts, seg, groups, align)
    inst = scene_instances(tmp_path / "scans" / sid)
    assert inst.object_ids.tolist() == [0, 1] and inst.labels == ["chair", "table"]
    # chair: x 0..1, y 0..2, z 0..1, shifted by (10, 0, -1)
    np.testing.assert_allclose(inst.boxes[0], [10.5, 1, -0.5, 1, 2, 1])
    np.testing.assert_allclose(inst.boxes[1], [15.5, 5, 0, 1, 0, 2])
    assert inst.vertex_object.tolist() == [0, 0, 1, 1, -1]
    write_scene_boxes(inst, tmp_path / "scannet" / "pcd_with_object_aabbs" / "train" / f"{sid}.npz")
    back = read_scene_boxes(tmp_path, sid)
    assert back.object_ids.tolist() == [0, 1]
    np.testing.assert_allclose(back.boxes, inst.boxes)


def test_segmentation_length_mismatch_is_an_error(tmp_path):
    sid = "scene0002_00"
    _write_scan(tmp_path / sid, sid, [(0, 0, 0), (1, 1, 1)], [1], [])
    with pytest.raises(ScanNetFormatError, match="segs.json: 1 segIndices for 2 mesh vertices"):
        scene_instances(tmp_path / sid)
