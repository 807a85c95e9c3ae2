"""CPU rendering of generated rooms with open3d raycasting (Embree).

One ray per pixel through the pixel centre (u, v) (integer indices) of a
pinhole camera K: direction_cam = ((u − cx)/fx, (v − cy)/fy, 1), so the hit
distance along that direction *is* the depth z. Unprojecting a rendered depth
with K and T_world_cam therefore lands back on the surface that was hit.

Colour: per-triangle object colour, Lambert shading from a ceiling light
plus a headlight, a view-independent cell texture (±6 % brightness per 4 cm
world cell) and optional sensor noise. Depth: uint16 millimetres, 0 where
the sensor returns nothing (beyond ``max_depth_m``, closer than
``min_depth_m``, grazing incidence), optional axial noise growing with z².

Typical use (the live synthetic camera)::

    scene = generate_scene(seed=3)
    cam = SceneCamera(scene, RenderConfig(width=320, height=240))
    frame = cam.render(i)          # RenderedFrame: rgb, depth_mm, instance_ids, K, T_world_cam
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import open3d as o3d

from .layout import Scene
from .trajectory import TrajectoryConfig, scan_trajectory


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Camera and sensor model. Defaults: ScanNet-like 640×480, ~58° horizontal field of view."""

    width: int = 640
    height: int = 480
    hfov_deg: float = 58.0            # horizontal field of view; fx = fy = (W/2)/tan(hfov/2)
    min_depth_m: float = 0.3          # sensor returns 0 closer than this
    max_depth_m: float = 6.0          # ... and beyond this
    grazing_cos_min: float = 0.12     # ... and where |cos(incidence)| is below this (≈ 83°)
    depth_noise: bool = True          # axial noise σ(z) = 1.2 mm + 1.9 mm·(z − 0.4 m)²
    rgb_noise_std: float = 0.01       # per-pixel Gaussian noise on [0, 1] colour (0 disables)
    texture_amplitude: float = 0.06   # ± brightness of the world-cell texture
    nthreads: int = 0                 # raycasting threads (0: all cores)

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"resolution {self.width}x{self.height} too small (min 8x8)")
        if not 10.0 <= self.hfov_deg <= 150.0:
            raise ValueError(f"hfov_deg {self.hfov_deg} outside [10, 150]")
        if not 0 <= self.min_depth_m < self.max_depth_m <= 65.535:
            raise ValueError(f"need 0 <= min_depth_m < max_depth_m <= 65.535 (uint16 mm), got "
                             f"{self.min_depth_m}, {self.max_depth_m}")
        if not 0 <= self.grazing_cos_min < 1:
            raise ValueError(f"grazing_cos_min {self.grazing_cos_min} outside [0, 1)")
        if self.rgb_noise_std < 0 or self.texture_amplitude < 0 or self.nthreads < 0:
            raise ValueError("rgb_noise_std, texture_amplitude and nthreads must be >= 0")

    @property
    def K(self) -> np.ndarray:
        """(3, 3) pinhole intrinsics in pixels; principal point at the image centre."""
        f = (self.width / 2) / math.tan(math.radians(self.hfov_deg) / 2)
        return np.array([[f, 0.0, (self.width - 1) / 2], [0.0, f, (self.height - 1) / 2], [0.0, 0.0, 1.0]])


@dataclasses.dataclass(frozen=True)
class RenderedFrame:
    """One posed RGB-D frame.

    rgb: (H, W, 3) uint8. depth_mm: (H, W) uint16, 0 = no measurement.
    instance_ids: (H, W) int32 object_id of the surface each ray hit
    (objects 0..N-1, then floor, walls, ceiling; −1 = nothing hit), also where
    depth is missing. K: (3, 3). T_world_cam: (4, 4) camera-to-world in the
    aligned frame (OpenCV camera axes).
    """

    index: int
    rgb: np.ndarray
    depth_mm: np.ndarray
    instance_ids: np.ndarray
    K: np.ndarray
    T_world_cam: np.ndarray


def camera_ray_directions(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H·W, 3) float32 camera-frame ray directions with z = 1, row-major pixel order."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    return d.reshape(-1, 3).astype(np.float32)


class SceneRenderer:
    """Raycasts a scene from arbitrary poses. Build once per scene (meshes → BVH), render many."""

    def __init__(self, scene: Scene, config: RenderConfig | None = None):
        self.scene = scene
        self.config = cfg = config or RenderConfig()
        self._rc = o3d.t.geometry.RaycastingScene(nthreads=cfg.nthreads)
        rgb_tables, offsets = [], [0]
        for element in scene.all_elements:
            if element.category.is_structure:
                mesh, rgb = scene.structure_mesh(element)
            else:
                mesh, rgb = element.mesh, element.triangle_rgb
            gid = self._rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
            if gid != element.object_id:
                raise RuntimeError(f"geometry id {gid} != object_id {element.object_id}")
            rgb_tables.append(rgb)
            offsets.append(offsets[-1] + len(rgb))
        self._tri_rgb = np.concatenate(rgb_tables + [np.zeros((1, 3), np.float32)])  # last row: no hit
        self._tri_offset = np.array(offsets[:-1] + [offsets[-1]], dtype=np.int64)
        self._no_hit_row = offsets[-1]
        self._dirs_cam = camera_ray_directions(cfg.K, cfg.width, cfg.height)
        self._inv_len = (1.0 / np.linalg.norm(self._dirs_cam, axis=1)).astype(np.float32)  # rotation-invariant
        self._hash = np.array([12.9898, 78.233, 37.719], np.float32)
        self._light = np.array([0.3, 0.2, 1.0], np.float32) / np.linalg.norm([0.3, 0.2, 1.0])

    def render(self, T_world_cam: np.ndarray, noise_seed: int | tuple[int, ...] = 0) -> RenderedFrame:
        """Render one frame from a camera-to-world pose (aligned frame, OpenCV axes).

        Args:
            T_world_cam: (4, 4) pose.
            noise_seed: seeds the sensor noise; same seed → identical arrays.
        """
        T = np.asarray(T_world_cam, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"T_world_cam must be (4, 4), got {T.shape}")
        cfg = self.config
        H, W = cfg.height, cfg.width
        R = T[:3, :3].astype(np.float32)
        d = self._dirs_cam                                              # elementwise, not BLAS: K=3 matmuls
        dirs = d[:, 0:1] * R[:, 0] + d[:, 1:2] * R[:, 1] + d[:, 2:3] * R[:, 2]   # (N, 3) world, |d| >= 1
        rays = np.empty((H * W, 6), np.float32)
        rays[:, :3] = T[:3, 3]
        rays[:, 3:] = dirs
        hit = self._rc.cast_rays(o3d.core.Tensor(rays), nthreads=cfg.nthreads)
        z = hit["t_hit"].numpy()                                        # (N,) depth along camera z
        gid = hit["geometry_ids"].numpy().astype(np.int64)
        prim = hit["primitive_ids"].numpy().astype(np.int64)
        normal = hit["primitive_normals"].numpy()                       # (N, 3) unit face normals
        miss = ~np.isfinite(z)
        gid_safe = np.where(miss, 0, gid)
        row = np.where(miss, self._no_hit_row, self._tri_offset[gid_safe] + np.where(miss, 0, prim))
        albedo = self._tri_rgb[row]                                     # (N, 3)

        cos_view = np.abs(np.einsum("ij,ij->i", normal, dirs)) * self._inv_len   # |cos incidence|
        L = self._light
        cos_light = np.abs(normal[:, 0] * L[0] + normal[:, 1] * L[1] + normal[:, 2] * L[2])
        shade = np.float32(0.30) + np.float32(0.40) * cos_light + np.float32(0.35) * cos_view
        rng = np.random.default_rng(noise_seed)
        if cfg.texture_amplitude > 0:
            p = rays[:, :3] + dirs * np.where(miss, np.float32(0.0), z)[:, None]
            p *= np.float32(25.0)
            np.floor(p, out=p)
            k = self._hash
            tex = np.sin(p[:, 0] * k[0] + p[:, 1] * k[1] + p[:, 2] * k[2]) * np.float32(43758.5453)
            tex -= np.floor(tex)
            shade *= np.float32(1.0 - cfg.texture_amplitude) + np.float32(2.0 * cfg.texture_amplitude) * tex
        colour = albedo * shade[:, None]
        if cfg.rgb_noise_std > 0:
            colour += rng.standard_normal(colour.shape, dtype=np.float32) * np.float32(cfg.rgb_noise_std)
        np.clip(colour, 0.0, 1.0, out=colour)
        rgb = (colour * np.float32(255.0) + np.float32(0.5)).astype(np.uint8).reshape(H, W, 3)

        z_meas = np.where(miss, np.float32(0.0), z)
        if cfg.depth_noise:
            sigma = np.float32(0.0012) + np.float32(0.0019) * (z_meas - np.float32(0.4)) ** 2
            z_meas = z_meas + rng.standard_normal(z_meas.shape, dtype=np.float32) * sigma
        valid = ~miss & (z >= cfg.min_depth_m) & (z <= cfg.max_depth_m) & (cos_view >= cfg.grazing_cos_min)
        depth_mm = np.where(valid, np.round(z_meas * np.float32(1000.0)), np.float32(0.0))
        depth_mm = depth_mm.clip(0, 65535).astype(np.uint16).reshape(H, W)
        inst = np.where(miss, -1, gid).astype(np.int32).reshape(H, W)
        return RenderedFrame(-1, rgb, depth_mm, inst, cfg.K.copy(), T.copy())


class SceneCamera:
    """A scene, its scanning path and a renderer: frame i of the stream on demand.

    This is the in-memory API of the synthetic camera: ``len(cam)`` frames at
    ``trajectory.fps``; ``render(i)`` is deterministic in (scene seed, i).
    """

    def __init__(self, scene: Scene, render_config: RenderConfig | None = None,
                 trajectory_config: TrajectoryConfig | None = None):
        self.scene = scene
        self.trajectory_config = trajectory_config or TrajectoryConfig()
        self.renderer = SceneRenderer(scene, render_config)
        self.T_world_cam = scan_trajectory(scene, self.trajectory_config)   # (n_frames, 4, 4)

    def __len__(self) -> int:
        return len(self.T_world_cam)

    @property
    def K(self) -> np.ndarray:
        """(3, 3) intrinsics of every frame."""
        return self.renderer.config.K

    def render(self, index: int) -> RenderedFrame:
        """Render frame ``index`` (0 <= index < len(self)) of the scan."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} outside [0, {len(self)})")
        f = self.renderer.render(self.T_world_cam[index], noise_seed=(self.scene.seed, index))
        return dataclasses.replace(f, index=index)
