"""Launch file, parameter YAML, RViz config and package manifests stay consistent with the code."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from video3d_ros.node_config import NodeConfig

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "ros2_ws" / "src" / "video3d_ros"


def test_params_yaml_lists_every_parameter_with_its_default() -> None:
    doc = yaml.safe_load((ROOT / "launch" / "config" / "video3d.yaml").read_text())
    params = doc["video3d_node"]["ros__parameters"]
    expected = {f.name: f.default for f in fields(NodeConfig)}
    assert params == expected
    NodeConfig(**params)  # and they validate


def test_launch_file_parses_and_names_installed_executables() -> None:
    source = (ROOT / "launch" / "video3d.launch.py").read_text()
    tree = ast.parse(source)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    executables = set(re.findall(r'executable="([^"]+)"', source)) - {"rviz2"}
    setup = (PKG / "setup.py").read_text()
    for exe in executables:
        assert re.search(rf'"{exe} = ', setup) or f'f"{exe} = ' in setup, f"{exe} is not a console script"
    for arg in ("synthetic_camera", "rviz", "params_file", "model_path"):
        assert f'"{arg}"' in source


def test_launch_and_config_are_installed_under_share() -> None:
    setup = (PKG / "setup.py").read_text()
    for dest in ("share/{PACKAGE}/launch", "share/{PACKAGE}/config", "share/{PACKAGE}/rviz"):
        assert dest in setup
    assert (PKG / "launch").resolve() == (ROOT / "launch").resolve()  # the package sees the top-level files
    assert (PKG / "resource" / "video3d_ros").exists()


def test_rviz_config_shows_the_node_outputs() -> None:
    rviz = yaml.safe_load((ROOT / "launch" / "rviz" / "video3d.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d}
    assert {"/video3d_node/markers", "/video3d_node/keyframes", "/video3d_node/coverage"} <= topics


@pytest.mark.parametrize("manifest", ["msg/package.xml", "ros2_ws/src/video3d_ros/package.xml"])
def test_package_manifests_are_valid_format_3(manifest) -> None:
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    pkg = catkin_pkg.parse_package(str(ROOT / manifest))
    pkg.validate()
    assert pkg.package_format == 3


def test_dockerfile_copies_paths_that_exist() -> None:
    """The image cannot be built here (no Docker engine); at least its inputs must exist."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    sources = re.findall(r"^COPY\s+(\S+)\s+\S+", text, flags=re.MULTILINE)
    assert sources, "no COPY lines found"
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    assert compose["services"]["video3d"]["build"]["dockerfile"] == "docker/Dockerfile"
