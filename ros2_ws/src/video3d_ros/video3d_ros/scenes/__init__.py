"""Procedural rooms rendered to posed RGB-D, with benchmark-style annotations (no ROS).

    from video3d_ros.scenes import generate_scene, SceneCamera, RenderConfig
    scene = generate_scene(seed=0, scene_id="scene0000_00")
    cam = SceneCamera(scene, RenderConfig(width=320, height=240))
    frame = cam.render(0)   # rgb (H,W,3) uint8, depth_mm (H,W) uint16, instance_ids (H,W), K, T_world_cam

Modules: ``vocab`` (categories, colours), ``objects`` (primitive meshes),
``layout`` (scene graph and placement), ``trajectory`` (scanning path),
``render`` (raycasting), ``writer`` (ScanNet posed-images layout),
``relations`` / ``annotations`` (the five benchmarks' annotation files).
"""

from __future__ import annotations

import importlib
from typing import Any

# Names are imported from their module on first use (PEP 562), so that reading the
# vocabulary (``video3d_ros.scenes.vocab``, which the training data reader needs) does not
# import open3d: training and evaluation on a GPU machine without open3d work.
_HOME = {
    "Scene": "layout", "SceneConfig": "layout", "SceneObject": "layout",
    "generate_scene": "layout", "RenderConfig": "render", "RenderedFrame": "render",
    "SceneCamera": "render", "SceneRenderer": "render", "TrajectoryConfig": "trajectory",
    "scan_trajectory": "trajectory", "Category": "vocab", "Colour": "vocab",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
