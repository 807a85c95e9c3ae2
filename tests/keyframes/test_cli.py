"""video3d-keyframes on a small analytic scan written in ScanNet layout."""

import json

import numpy as np
import pytest
from PIL import Image

from video3d_ros.geometry import depth_to_world_m, voxel_keys
from video3d_ros.keyframes.cli import main


@pytest.fixture(scope="module")
def scan_dir(tmp_path_factory, scene_module):
    scan = scene_module.make_scan(n_frames=40, height_px=48, width_px=64, seed=1)
    root = scene_module.write_scannet_layout(scan, tmp_path_factory.mktemp("scene0001_00"))
    return root


def _independent_sets(root, T_align=None):
    K = np.loadtxt(root / "intrinsic" / "intrinsic_depth.txt")
    sets = []
    for i in range(40):
        depth = np.array(Image.open(root / "depth" / f"{i:05d}.png"))
        T = np.loadtxt(root / "pose" / f"{i:05d}.txt")
        pm = depth_to_world_m(depth, K, T, T_align=T_align)
        sets.append(set(voxel_keys(pm.xyz_m, pm.valid, 0.1).tolist()))
    return sets


def test_cli_writes_reference_compatible_selection(scan_dir, tmp_path):
    out, png = tmp_path / "sel.json", tmp_path / "cov.png"
    rc = main([str(scan_dir), "--out", str(out), "--plot", str(png), "--max-frames", "6", "--seed", "3"])
    assert rc == 0
    (rec,) = json.loads(out.read_text())
    assert {"video_id", "frame_files", "voxel_nums", "num_all_voxels", "num_select_voxels"} <= set(rec)
    sets = _independent_sets(scan_dir)
    union = set().union(*sets)
    assert rec["num_all_voxels"] == len(union)
    picked = [int(f.split("/")[-1].split(".")[0]) for f in rec["frame_files"]]
    covered, gains = set(), []
    for i in picked:
        gains.append(len(sets[i] - covered))
        covered |= sets[i]
    assert rec["voxel_nums"] == gains  # per-pick gains in pick order
    assert rec["num_select_voxels"] == len(covered)
    assert gains[0] == max(len(s) for s in sets)  # first pick is the largest frame
    assert rec["frame_files_by_time"] == sorted(rec["frame_files"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_axis_alignment_file(scan_dir, tmp_path):
    A = np.eye(4)
    A[:3, 3] = [0.05, -0.3, 0.0]
    meta = tmp_path / "scene.txt"
    meta.write_text("sceneType = Room\naxisAlignment = " + " ".join(map(str, A.ravel())) + "\n")
    out = tmp_path / "sel.json"
    assert main([str(scan_dir), "--out", str(out), "--axis-align", str(meta), "--strategy", "uniform"]) == 0
    (rec,) = json.loads(out.read_text())
    assert rec["num_all_voxels"] == len(set().union(*_independent_sets(scan_dir, A)))
    assert rec["strategy"] == "uniform"


def test_cli_errors_name_the_file(scan_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for sub in ("depth", "color", "pose", "intrinsic"):
        (bad / sub).mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(bad / "depth" / "00000.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(bad / "color" / "00000.jpg")
    assert main([str(bad), "--out", str(tmp_path / "x.json")]) == 1
    assert "intrinsic/intrinsic_depth.txt" in capsys.readouterr().err
    np.savetxt(bad / "intrinsic" / "intrinsic_depth.txt", np.eye(4))
    assert main([str(bad), "--out", str(tmp_path / "x.json")]) == 1
    assert "pose/00000.txt: missing file" in capsys.readouterr().err
    (bad / "pose" / "00000.txt").write_text("1 0 0\n0 1 0\n")  # not 4x4
    assert main([str(bad), "--out", str(tmp_path / "x.json")]) == 1
    assert "pose/00000.txt" in capsys.readouterr().err
    assert main([str(scan_dir), "--strategy", "max-cov"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_cli_several_scans_one_record_each(scan_dir, scene_module, tmp_path, capsys):
    other = scene_module.write_scannet_layout(
        scene_module.make_scan(n_frames=12, height_px=48, width_px=64, seed=2), tmp_path / "scene0002_00")
    out = tmp_path / "sel.json"
    assert main([str(scan_dir), str(other), "--out", str(out), "--max-frames", "5"]) == 0
    recs = json.loads(out.read_text())
    assert [r["video_id"] for r in recs] == [f"scannet/{scan_dir.name}", "scannet/scene0002_00"]
    assert main([str(other), "--out", str(tmp_path / "one.json"), "--max-frames", "5"]) == 0
    assert json.loads((tmp_path / "one.json").read_text())[0] == recs[1]  # as if alone
    assert "2 scans:" in capsys.readouterr().out
    # per-scan options with several scans, and two scans with one name, are refused
    assert main([str(scan_dir), str(other), "--video-id", "x", "--out", str(out)]) == 2
    assert "--video-id describe one scan; 2 were given" in capsys.readouterr().err
    assert main([str(scan_dir), str(scan_dir), "--out", str(out)]) == 2
    assert "same directory name" in capsys.readouterr().err
    # a bad scan among several names its file and writes nothing
    bad = tmp_path / "scene0003_00"
    for sub in ("depth", "color", "pose", "intrinsic"):
        (bad / sub).mkdir(parents=True)
    out.unlink()
    assert main([str(scan_dir), str(bad), "--out", str(out)]) == 1
    assert "scene0003_00/intrinsic/intrinsic_depth.txt" in capsys.readouterr().err
    assert not out.exists()
