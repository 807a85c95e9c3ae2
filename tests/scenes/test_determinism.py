"""Same seed → byte-identical files; a different seed → different files."""

from __future__ import annotations

from pathlib import Path

from video3d_ros.scenes import generate_scene
from video3d_ros.scenes.writer import write_scene

from .conftest import SHORT_SCAN, SMALL_RENDER, WRITE


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(seed: int, root: Path) -> dict[str, bytes]:
    write_scene(generate_scene(seed, "scene0001_00"), root, render_config=SMALL_RENDER,
                trajectory_config=SHORT_SCAN, write_config=WRITE)
    return _tree(root)


def test_same_seed_gives_identical_files(tmp_path):
    a = _write(5, tmp_path / "a")
    b = _write(5, tmp_path / "b")
    assert a.keys() == b.keys()
    assert len(a) > 20
    differing = [k for k in a if a[k] != b[k]]
    assert not differing, f"files differ between runs with the same seed: {differing[:5]}"


def test_other_seed_gives_other_files(tmp_path):
    a = _write(5, tmp_path / "a")
    c = _write(6, tmp_path / "c")
    same = [k for k in a if k in c and a[k] == c[k] and k.endswith((".jpg", ".png"))]
    assert not same, f"images identical across seeds: {same[:5]}"
