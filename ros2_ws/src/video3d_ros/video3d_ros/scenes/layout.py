"""Procedural rooms: a scene graph of labelled objects placed without interpenetration.

Frames. The room is built in the *aligned* world frame (ScanNet's
axis-aligned frame): z up, floor at z = 0, walls parallel to the x and y axes,
room centred on the origin. ScanNet stores camera poses in the raw scan frame
and gives ``axisAlignment`` = T_aligned_raw; we do the same: a random rigid
motion about z (``SceneConfig.randomise_alignment``) defines the raw frame,
so a loader must apply the alignment exactly as it would for real scans.

Walls are numbered 0: y = -Ly/2 (south), 1: x = +Lx/2 (east), 2: y = +Ly/2
(north), 3: x = -Lx/2 (west). An object's yaw is a multiple of 90 degrees; yaw
index k turns its local front (+y) to the inward normal of wall k.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cached_property

import numpy as np
import open3d as o3d

from .objects import SPECS, PartRole, Placement, build_parts, support_region_m
from .vocab import Category, Colour, OBJECT_CATEGORIES


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Parameters of the room generator."""

    room_size_min_m: tuple[float, float, float] = (3.5, 3.5, 2.5)  # (Lx, Ly, height) lower bounds
    room_size_max_m: tuple[float, float, float] = (7.0, 6.5, 3.0)  # upper bounds
    n_objects_min: int = 10           # referable objects per room (structure not counted)
    n_objects_max: int = 30
    walkway_fraction: float = 0.55    # camera loop: ellipse with semi-axes fraction · (Lx/2, Ly/2)
    walkway_clearance_m: float = 0.35  # floor objects keep this far from the loop
    gap_m: float = 0.02               # minimum gap between object boxes
    randomise_alignment: bool = True  # raw scan frame = random rigid motion of the aligned frame
    max_tries_per_object: int = 60

    def __post_init__(self) -> None:
        for lo, hi, name in zip(self.room_size_min_m, self.room_size_max_m, ("Lx", "Ly", "height")):
            if not 0 < lo <= hi:
                raise ValueError(f"room size {name}: need 0 < min <= max, got {lo}, {hi}")
        if min(self.room_size_min_m[:2]) < 2.5:
            raise ValueError(f"room_size_min_m {self.room_size_min_m}: rooms under 2.5 m leave no walkway")
        if not 1 <= self.n_objects_min <= self.n_objects_max:
            raise ValueError(f"need 1 <= n_objects_min <= n_objects_max, got {self.n_objects_min}, "
                             f"{self.n_objects_max}")
        if not 0.2 <= self.walkway_fraction <= 0.8:
            raise ValueError(f"walkway_fraction {self.walkway_fraction} outside [0.2, 0.8]")
        if self.walkway_clearance_m < 0 or self.gap_m < 0:
            raise ValueError("walkway_clearance_m and gap_m must be >= 0")


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One labelled object (or structure element) of a scene.

    ``box_min_m``/``box_max_m`` are the tight axis-aligned bounds of its mesh
    in the aligned world frame.
    """

    object_id: int
    category: Category
    colour: Colour
    size_m: tuple[float, float, float]        # local (width, depth, height)
    yaw_index: int                            # 0..3, yaw = yaw_index · 90°
    base_m: tuple[float, float, float]        # world position of the bottom-face centre
    support_id: int | None = None             # object it stands on
    wall_index: int | None = None             # wall its back touches

    @property
    def yaw_rad(self) -> float:
        return self.yaw_index * math.pi / 2

    @property
    def front_xy(self) -> np.ndarray:
        """Unit vector (2,) of the object's front in the world xy plane."""
        return np.array([-math.sin(self.yaw_rad), math.cos(self.yaw_rad)]).round(12)

    @cached_property
    def mesh(self) -> o3d.geometry.TriangleMesh:
        """World-frame mesh with per-triangle RGB in ``triangle_rgb``."""
        return _object_mesh(self)[0]

    @cached_property
    def triangle_rgb(self) -> np.ndarray:
        """(T, 3) float32 RGB in [0, 1] of each triangle of ``mesh``."""
        return _object_mesh(self)[1]

    @cached_property
    def box_min_m(self) -> np.ndarray:
        return np.asarray(self.mesh.get_min_bound())

    @cached_property
    def box_max_m(self) -> np.ndarray:
        return np.asarray(self.mesh.get_max_bound())

    @property
    def center_m(self) -> np.ndarray:
        """(3,) centre of the axis-aligned box."""
        return (self.box_min_m + self.box_max_m) / 2

    @property
    def extent_m(self) -> np.ndarray:
        """(3,) size of the axis-aligned box (dx, dy, dz)."""
        return self.box_max_m - self.box_min_m

    @property
    def box6(self) -> list[float]:
        """[cx, cy, cz, dx, dy, dz] in metres (the benchmarks' box format)."""
        return [float(v) for v in np.concatenate([self.center_m, self.extent_m])]


_STRUCTURE_RGB = {Category.CEILING: (0.92, 0.92, 0.92)}
_TRIM_RGB = np.array([0.22, 0.22, 0.24])


def _object_mesh(obj: SceneObject) -> tuple[o3d.geometry.TriangleMesh, np.ndarray]:
    if obj.category.is_structure:
        raise ValueError("structure elements are built by Scene.structure_meshes")
    parts = build_parts(obj.category, obj.size_m)
    main = np.array(obj.colour.rgb)
    trim = _TRIM_RGB if obj.colour is not Colour.BLACK else np.array([0.40, 0.40, 0.42])
    accent = np.array(SPECS[obj.category].accent_rgb)
    mesh = o3d.geometry.TriangleMesh()
    rgbs = []
    for part, role in parts:
        rgb = {PartRole.MAIN: main, PartRole.TRIM: trim, PartRole.ACCENT: accent}[role]
        rgbs.append(np.repeat(rgb[None], len(part.triangles), axis=0))
        mesh += part
    R = o3d.geometry.get_rotation_matrix_from_xyz((0.0, 0.0, obj.yaw_rad))
    mesh.rotate(R, center=(0.0, 0.0, 0.0))
    mesh.translate(obj.base_m)
    return mesh, np.concatenate(rgbs).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Scene:
    """A generated room.

    ``objects`` holds the referable objects (ids 0..N-1); ``structure`` the
    floor, walls and ceiling (ids N..), which the renderer also labels.
    """

    scene_id: str
    seed: int
    room_size_m: tuple[float, float, float]   # (Lx, Ly, height)
    objects: tuple[SceneObject, ...]
    structure: tuple[SceneObject, ...]
    T_aligned_raw: np.ndarray                 # (4, 4) ScanNet axisAlignment
    wall_rgb: tuple[float, float, float]
    floor_rgb: tuple[float, float, float]
    walkway_fraction: float                   # camera loop (see walkway_xy_m)

    @property
    def all_elements(self) -> tuple[SceneObject, ...]:
        """Objects then structure; index == object_id."""
        return self.objects + self.structure

    def by_category(self, category: Category) -> list[SceneObject]:
        return [o for o in self.objects if o.category is category]

    def structure_mesh(self, element: SceneObject) -> tuple[o3d.geometry.TriangleMesh, np.ndarray]:
        """Mesh and (T, 3) RGB of a floor/wall/ceiling element (thin slabs outside the room)."""
        Lx, Ly, H = self.room_size_m
        t = 0.1
        hx, hy = Lx / 2, Ly / 2
        c = element.category
        if c is Category.FLOOR:
            mesh, rgb = _slab(-hx - t, -hy - t, -t, hx + t, hy + t, 0.0), self.floor_rgb
        elif c is Category.CEILING:
            mesh, rgb = _slab(-hx - t, -hy - t, H, hx + t, hy + t, H + t), _STRUCTURE_RGB[c]
        else:
            k = element.wall_index
            bounds = {0: (-hx - t, -hy - t, 0, hx + t, -hy, H), 1: (hx, -hy - t, 0, hx + t, hy + t, H),
                      2: (-hx - t, hy, 0, hx + t, hy + t, H), 3: (-hx - t, -hy - t, 0, -hx, hy + t, H)}[k]
            mesh, rgb = _slab(*bounds), self.wall_rgb
        return mesh, np.repeat(np.array(rgb, np.float32)[None], len(mesh.triangles), axis=0)


def _slab(x0: float, y0: float, z0: float, x1: float, y1: float, z1: float) -> o3d.geometry.TriangleMesh:
    return o3d.geometry.TriangleMesh.create_box(x1 - x0, y1 - y0, z1 - z0).translate((x0, y0, z0))


def walkway_xy_m(room_size_m: tuple[float, float, float], fraction: float, n: int = 96) -> np.ndarray:
    """(n, 2) points of the camera loop: an ellipse around the room centre (metres)."""
    a = fraction * room_size_m[0] / 2
    b = fraction * room_size_m[1] / 2
    th = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([a * np.cos(th), b * np.sin(th)], axis=1)


def _footprint(size_m: tuple[float, float, float], yaw_index: int) -> tuple[float, float]:
    """World (dx, dy) of a local (w, d) footprint turned by yaw_index · 90°."""
    w, d, _ = size_m
    return (d, w) if yaw_index % 2 else (w, d)


def _boxes_overlap(a_min: np.ndarray, a_max: np.ndarray, b_min: np.ndarray, b_max: np.ndarray, gap: float) -> bool:
    return bool(np.all(a_min < b_max + gap) and np.all(b_min < a_max + gap))


def _rect_distance(points_xy: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Distance (n,) from each point to an axis-aligned rectangle [lo, hi] (0 inside)."""
    d = np.maximum(np.maximum(lo - points_xy, points_xy - hi), 0.0)
    return np.linalg.norm(d, axis=1)


def _random_alignment(rng: np.random.Generator, room_size_m: tuple[float, float, float]) -> np.ndarray:
    """T_aligned_raw: rotation about z plus a translation, like ScanNet's axisAlignment."""
    yaw = rng.uniform(-np.pi, np.pi)
    c, s = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = rng.uniform(-1.0, 1.0, 2) * np.array(room_size_m[:2]) / 2
    T[2, 3] = rng.uniform(-0.1, 0.1)
    return T


class _Placer:
    """Rejection sampler that keeps the list of placed objects and their boxes."""

    def __init__(self, cfg: SceneConfig, rng: np.random.Generator, room_size_m: tuple[float, float, float]):
        self.cfg, self.rng, self.room = cfg, rng, room_size_m
        self.walkway = walkway_xy_m(room_size_m, cfg.walkway_fraction)
        self.objects: list[SceneObject] = []

    def _fits(self, obj: SceneObject, check_walkway: bool) -> bool:
        lo, hi = obj.box_min_m, obj.box_max_m
        hx, hy = self.room[0] / 2, self.room[1] / 2
        eps = 1e-6
        if lo[0] < -hx - eps or lo[1] < -hy - eps or hi[0] > hx + eps or hi[1] > hy + eps or hi[2] > self.room[2]:
            return False
        if check_walkway and _rect_distance(self.walkway, lo[:2], hi[:2]).min() < self.cfg.walkway_clearance_m:
            return False
        for other in self.objects:
            if other.object_id == obj.support_id:
                continue
            if _boxes_overlap(lo, hi, other.box_min_m, other.box_max_m, self.cfg.gap_m):
                return False
        return True

    def try_place(self, category: Category, colour: Colour, size_m: tuple[float, float, float]) -> SceneObject | None:
        spec = SPECS[category]
        hx, hy, H = self.room[0] / 2, self.room[1] / 2, self.room[2]
        oid = len(self.objects)
        for _ in range(self.cfg.max_tries_per_object):
            placement = spec.placements[self.rng.integers(len(spec.placements))]
            support_id = wall = None
            if placement is Placement.ON_TOP:
                supporters = [o for o in self.objects if o.category in spec.supporters]
                if not supporters:
                    return None
                sup = supporters[self.rng.integers(len(supporters))]
                x0, x1, y0, y1, z = support_region_m(sup.category, sup.size_m)
                k = sup.yaw_index
                fw, fd = size_m[0], size_m[1]
                if fw > x1 - x0 or fd > y1 - y0:
                    continue
                lx = self.rng.uniform(x0 + fw / 2, x1 - fw / 2)
                ly = self.rng.uniform(y0 + fd / 2, y1 - fd / 2)
                if category in (Category.TV, Category.MONITOR):  # screens stand near the back
                    ly = y0 + fd / 2 + 0.02 if y1 - y0 >= fd + 0.02 else ly
                c, s = math.cos(sup.yaw_rad), math.sin(sup.yaw_rad)
                x = sup.base_m[0] + c * lx - s * ly
                y = sup.base_m[1] + s * lx + c * ly
                base = (x, y, sup.base_m[2] + z)
                support_id = sup.object_id
            elif placement in (Placement.WALL, Placement.WALL_MOUNTED):
                k = int(self.rng.integers(4))
                wall = k
                w, d, h = size_m
                along = (hx if k % 2 == 0 else hy) - w / 2
                if along < 0:
                    continue
                t = self.rng.uniform(-along, along)
                z0 = 0.0 if placement is Placement.WALL else self.rng.uniform(0.8, max(0.8, H - h - 0.3))
                inward = d / 2
                base = {0: (t, -hy + inward, z0), 1: (hx - inward, t, z0),
                        2: (t, hy - inward, z0), 3: (-hx + inward, t, z0)}[k]
                # walls run along x for k even: t moves along x, else along y
            else:
                k = int(self.rng.integers(4))
                fx, fy = _footprint(size_m, k)
                if fx >= 2 * hx or fy >= 2 * hy:
                    continue
                base = (self.rng.uniform(-hx + fx / 2, hx - fx / 2), self.rng.uniform(-hy + fy / 2, hy - fy / 2), 0.0)
            obj = SceneObject(oid, category, colour, size_m, int(k), tuple(float(v) for v in base),
                              support_id=support_id, wall_index=wall)
            if self._fits(obj, check_walkway=placement is not Placement.WALL_MOUNTED and support_id is None):
                self.objects.append(obj)
                return obj
        return None


def _sample_size(rng: np.random.Generator, category: Category) -> tuple[float, float, float]:
    spec = SPECS[category]
    t = rng.uniform(0.0, 1.0)  # one scale for all axes keeps proportions, plus a little jitter
    lo, hi = np.array(spec.size_min_m), np.array(spec.size_max_m)
    jitter = rng.uniform(-0.15, 0.15, 3)
    u = np.clip(t + jitter, 0.0, 1.0)
    return tuple(float(round(v, 3)) for v in lo + u * (hi - lo))


_FIRST = (Category.DOOR, Category.WINDOW)
_SUPPORTERS = (Category.TABLE, Category.DESK, Category.CABINET, Category.BED, Category.SOFA, Category.NIGHTSTAND)


def generate_scene(seed: int, scene_id: str = "scene0000_00", config: SceneConfig | None = None) -> Scene:
    """Generate one room from a seed. Same (seed, config) → identical scene.

    Placement order: a door and a window, then supporting furniture, then the
    rest; every object is accepted only if its box keeps ``gap_m`` from all
    other boxes (except the one it stands on), lies inside the room, and
    floor objects keep ``walkway_clearance_m`` from the camera loop.
    """
    cfg = config or SceneConfig()
    rng = np.random.default_rng(seed)
    room = tuple(float(round(rng.uniform(lo, hi), 2))
                 for lo, hi in zip(cfg.room_size_min_m, cfg.room_size_max_m))
    placer = _Placer(cfg, rng, room)
    target = int(rng.integers(cfg.n_objects_min, cfg.n_objects_max + 1))
    counts: dict[Category, int] = {}

    def add(category: Category) -> None:
        spec = SPECS[category]
        colour = spec.colours[rng.integers(len(spec.colours))]
        if placer.try_place(category, colour, _sample_size(rng, category)) is not None:
            counts[category] = counts.get(category, 0) + 1

    for c in _FIRST:
        add(c)
    n_sup = int(rng.integers(2, 5))
    for c in rng.choice(np.array(_SUPPORTERS, dtype=object), size=n_sup, replace=True):
        if counts.get(c, 0) < SPECS[c].max_count:
            add(c)
    pool = [c for c in OBJECT_CATEGORIES]
    attempts = 0
    while len(placer.objects) < target and attempts < 6 * cfg.n_objects_max:
        attempts += 1
        c = pool[rng.integers(len(pool))]
        if counts.get(c, 0) >= SPECS[c].max_count:
            continue
        add(c)
    if len(placer.objects) < cfg.n_objects_min:
        raise RuntimeError(f"scene {scene_id} (seed {seed}): placed {len(placer.objects)} objects, "
                           f"fewer than n_objects_min={cfg.n_objects_min}; room {room}")
    n = len(placer.objects)
    structure = [SceneObject(n, Category.FLOOR, Colour.BEIGE, (room[0], room[1], 0.0), 0, (0.0, 0.0, 0.0))]
    for k in range(4):
        structure.append(SceneObject(n + 1 + k, Category.WALL, Colour.WHITE, (0.0, 0.0, room[2]), k,
                                     (0.0, 0.0, 0.0), wall_index=k))
    structure.append(SceneObject(n + 5, Category.CEILING, Colour.WHITE, (room[0], room[1], 0.0), 0,
                                 (0.0, 0.0, room[2])))
    wall_rgb = tuple(float(v) for v in np.clip(np.array([0.86, 0.85, 0.80]) + rng.uniform(-0.08, 0.06, 3), 0, 1))
    floor_rgb = tuple(float(v) for v in np.array([0.55, 0.42, 0.30]) * rng.uniform(0.7, 1.3))
    T = _random_alignment(rng, room) if cfg.randomise_alignment else np.eye(4)
    return Scene(scene_id, seed, room, tuple(placer.objects), tuple(structure), T, wall_rgb, floor_rgb,
                 cfg.walkway_fraction)
