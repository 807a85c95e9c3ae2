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

from .layout import Scene, SceneConfig, SceneObject, generate_scene
from .render import RenderConfig, RenderedFrame, SceneCamera, SceneRenderer
from .trajectory import TrajectoryConfig, scan_trajectory
from .vocab import Category, Colour

__all__ = [
    "Category", "Colour", "RenderConfig", "RenderedFrame", "Scene", "SceneCamera", "SceneConfig",
    "SceneObject", "SceneRenderer", "TrajectoryConfig", "generate_scene", "scan_trajectory",
]
