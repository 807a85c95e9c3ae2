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
Sensor noise is Gaussian, read as windows of one fixed table of N(0, 1)
samples at offsets drawn from the noise seed (deterministic in the seed,
a slice instead of a fresh draw per frame).

Typical use (the live synthetic camera)::

    scene = generate_scene(seed=3)
    cam = SceneCamera(scene, RenderConfig(width=320, height=240))
    frame = cam.render(i)          # RenderedFrame: rgb, depth_mm, instance_ids, K, T_world_cam
"""

from __future__ import annotations

import dataclasses
import functools
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


_NOISE_TABLE_SEED = 0x5E115   # fixed: the noise table is the same in every process
_NOISE_TABLE_MIN_LEN = 1 << 21
_TEXTURE_BACKOFF_M = 0.002     # texture cell looked up this far before the hit, towards the camera


@functools.lru_cache(maxsize=4)
def unit_noise_table(length: int) -> np.ndarray:
    """(length,) float32 standard-normal samples from a fixed seed, read-only, shared by all renderers.

    Sensor noise is a window of this table at an offset drawn from the frame's
    noise seed: a window costs a slice instead of a fresh Gaussian draw, and two
    frames share a noise value at a pixel only if their offsets coincide.
    """
    table = np.random.default_rng(_NOISE_TABLE_SEED).standard_normal(length, dtype=np.float32)
    table.flags.writeable = False
    return table


def triangle_planes(mesh: o3d.geometry.TriangleMesh) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals (T, 3) and plane offsets (T,) with n·x = offset on triangle t (float64).

    Degenerate triangles get a zero normal and offset.
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    tri = np.asarray(mesh.triangles, dtype=np.int64)
    v0 = v[tri[:, 0]]
    n = np.cross(v[tri[:, 1]] - v0, v[tri[:, 2]] - v0)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.divide(n, length, out=np.zeros_like(n), where=length > 0)
    return n, np.einsum("ij,ij->i", n, v0)


class SceneRenderer:
    """Raycasts a scene from arbitrary poses. Build once per scene (meshes → BVH), render many.

    Per-triangle tables built here keep the per-frame work to a few passes over
    the pixels: colour ×255, the light term of the shading, and each triangle's
    plane (n, offset). |cos incidence| of a ray o + t·d that hits plane
    n·x = c at t is |c − n·o| / (t·|d|), a table gather instead of a per-pixel
    dot product with the normal.
    """

    def __init__(self, scene: Scene, config: RenderConfig | None = None):
        self.scene = scene
        self.config = cfg = config or RenderConfig()
        self._rc = o3d.t.geometry.RaycastingScene(nthreads=cfg.nthreads)
        rgb_tables, normals, offsets_m, first_row = [], [], [], [0]
        for element in scene.all_elements:
            if element.category.is_structure:
                mesh, rgb = scene.structure_mesh(element)
            else:
                mesh, rgb = element.mesh, element.triangle_rgb
            gid = self._rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
            if gid != element.object_id:
                raise RuntimeError(f"geometry id {gid} != object_id {element.object_id}")
            n, c = triangle_planes(mesh)
            if len(n) != len(rgb):
                raise RuntimeError(f"element {element.object_id}: {len(n)} triangles but {len(rgb)} colours")
            rgb_tables.append(rgb)
            normals.append(n)
            offsets_m.append(c)
            first_row.append(first_row[-1] + len(rgb))
        # Row r of each table is triangle r of the scene; the last row is "no hit" (black, no shading).
        self._no_hit_row = first_row[-1]
        rgb = np.concatenate(rgb_tables + [np.zeros((1, 3), np.float32)]).astype(np.float32)
        self._tri_rgb255 = rgb * np.float32(255.0)                              # (T+1, 3)
        self._tri_normal = np.concatenate(normals + [np.zeros((1, 3))])         # (T+1, 3) float64
        self._tri_plane_m = np.concatenate(offsets_m + [np.zeros(1)])           # (T+1,) float64
        light = np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0])
        self._tri_ambient = (0.30 + 0.40 * np.abs(self._tri_normal @ light)).astype(np.float32)  # (T+1,)
        # first table row of geometry g; geometry_ids of a miss (0xFFFFFFFF) clip to the last entry
        self._geom_first_row = np.array(first_row[:-1] + [self._no_hit_row], dtype=np.int64)
        H, W = cfg.height, cfg.width
        d = camera_ray_directions(cfg.K, W, H)                                  # (N, 3), z = 1
        self._dirs_cam = d
        self._dirs_cam1 = np.concatenate([d, np.ones((H * W, 1), np.float32)], axis=1)  # (N, 4): (x, y, 1, 1)
        self._inv_len = (1.0 / np.linalg.norm(d, axis=1)).astype(np.float32)    # rotation-invariant
        self._hash = np.array([12.9898, 78.233, 37.719], np.float32)
        table_len = max(_NOISE_TABLE_MIN_LEN, 8 * H * W)
        self._depth_noise = unit_noise_table(table_len)                          # N(0, 1)
        # colour noise in uint8 units with the +0.5 of round-half-up folded in
        self._rgb_noise255 = unit_noise_table(table_len) * np.float32(255.0 * cfg.rgb_noise_std) + np.float32(0.5)

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
        N = H * W
        # rays = (x, y, 1, 1) @ M: origin t from the last input column, direction R·(x, y, 1)
        M = np.zeros((4, 6), np.float32)
        M[:3, 3:] = T[:3, :3].T
        M[3, :3] = T[:3, 3]
        rays = self._dirs_cam1 @ M                                               # (N, 6)
        hit = self._rc.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=cfg.nthreads)
        z = hit["t_hit"].numpy()                                                 # (N,) depth, inf = miss
        gid = hit["geometry_ids"].numpy()                                        # (N,) uint32
        miss = np.isinf(z)
        any_miss = bool(miss.any())
        row = np.take(self._geom_first_row, gid, mode="clip")                   # (N,) int64
        row += hit["primitive_ids"].numpy()
        if any_miss:
            row[miss] = self._no_hit_row
        z_fin = np.where(miss, np.float32(0.0), z) if any_miss else z           # finite copy for arithmetic

        # |cos incidence| = |c − n·o| / (t·|d|) from the hit triangle's plane
        o = T[:3, 3]
        cam_to_plane = (self._tri_plane_m - self._tri_normal @ o).astype(np.float32)   # (T+1,) metres
        cos_view = np.take(cam_to_plane, row)
        np.abs(cos_view, out=cos_view)
        with np.errstate(divide="ignore"):
            cos_view *= self._inv_len / z                                        # 0 where z = inf
        shade = np.take(self._tri_ambient, row)
        shade += np.float32(0.35) * cos_view

        rng = np.random.default_rng(noise_seed)
        table_len = len(self._depth_noise)
        off_rgb, off_depth = rng.integers(0, table_len - 3 * N + 1), rng.integers(0, table_len - N + 1)
        if cfg.texture_amplitude > 0:
            # cell of a point 2 mm before the hit along the ray: a surface on a cell boundary (the floor
            # at z = 0) then gets one cell, not one that flips with the last bit of t_hit
            p = self._dirs_cam * (z_fin - np.float32(_TEXTURE_BACKOFF_M))[:, None]    # (N, 3) camera frame
            p = p @ (np.float32(25.0) * T[:3, :3].T.astype(np.float32))          # world, 4 cm cells
            p += (25.0 * o).astype(np.float32)
            np.floor(p, out=p)
            k = self._hash   # elementwise, not BLAS: the hash must not depend on the BLAS kernel's rounding
            tex = p[:, 0] * k[0]
            tex += p[:, 1] * k[1]
            tex += p[:, 2] * k[2]
            np.sin(tex, out=tex)
            tex *= np.float32(43758.5453)
            tex -= np.floor(tex)
            tex *= np.float32(2.0 * cfg.texture_amplitude)
            tex += np.float32(1.0 - cfg.texture_amplitude)
            shade *= tex
        colour = np.take(self._tri_rgb255, row, axis=0)                          # (N, 3) in [0, 255]
        colour *= shade[:, None]
        if cfg.rgb_noise_std > 0:
            colour += self._rgb_noise255[off_rgb:off_rgb + 3 * N].reshape(N, 3)
        else:
            colour += np.float32(0.5)
        np.clip(colour, np.float32(0.0), np.float32(255.0), out=colour)
        rgb = colour.astype(np.uint8).reshape(H, W, 3)

        valid = (z >= cfg.min_depth_m) & (z <= cfg.max_depth_m) & (cos_view >= cfg.grazing_cos_min)
        depth = z_fin * np.float32(1000.0)                                       # mm
        if cfg.depth_noise:   # σ(z) = 1.2 mm + 1.9 mm·(z − 0.4 m)²
            sigma = z_fin - np.float32(0.4)
            sigma *= sigma
            sigma *= np.float32(1.9)
            sigma += np.float32(1.2)
            sigma *= self._depth_noise[off_depth:off_depth + N]
            depth += sigma
        np.rint(depth, out=depth)
        np.clip(depth, np.float32(0.0), np.float32(65535.0), out=depth)
        depth *= valid
        depth_mm = depth.astype(np.uint16).reshape(H, W)
        inst = gid.view(np.int32).reshape(H, W).copy()                           # 0xFFFFFFFF (miss) → −1
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
