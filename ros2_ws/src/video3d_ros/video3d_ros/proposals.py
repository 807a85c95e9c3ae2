"""Class-agnostic 3D object proposals from the keyframes' points (no ROS).

Used when no 3D detector publishes proposals. Grounding scores every proposal
against the query, so what matters is *recall* (some proposal overlaps each
object well); several proposals per object are fine, as long as their number
stays bounded (``max_proposals``). The method is geometric and deterministic:

1. **Down-sample.** Valid world points (metres, z up) → voxel centroids
   (``voxel_size_m``); normals from the local neighbourhood.
2. **Room structure.** Floor, ceiling and walls are found among points whose
   normals are horizontal (floor/ceiling) or vertical (walls) with RANSAC; each
   plane is snapped to exactly horizontal / vertical, refitted to its inliers
   and kept as *structural* only if it bounds the scan: at most
   ``outside_share`` of all points lie beyond it (a cabinet front or a table
   top has the wall or the floor behind it; a room wall has nothing). This
   holds however little of the wall the camera saw (often only up to ~1.3 m).
   Points within ``plane_distance_m`` of a structural plane are removed.
3. **Multi-scale clusters.** The remaining points are linked to neighbours
   closer than each of ``cluster_eps_m`` (a k-d tree's pairs, computed once at
   the largest radius); each connected component with at least
   ``min_cluster_points`` points is a cluster. Small radii keep neighbours
   apart, large radii keep legs attached to table tops: one of the scales is
   usually right, and the others only add proposals.
4. **Support split.** An object standing on another (lamp on a table, monitor
   on a desk, pillow on a bed) touches it and joins its cluster at every
   scale. Inside each cluster, a horizontal surface (upward normals at one
   height, at least ``support_min_area_m2``) with points above it splits the
   cluster: the points up to the surface are one proposal (the support), the
   points above it are re-clustered into further proposals, with their bottom
   put on the surface.
5. **Snap to structure.** Observed points end a little above the floor
   (removed with it) and in front of a wall (an object's back, or a door's or
   window's frame depth): box bottoms within ``snap_distance_m`` of the floor
   are put on it, and for faces within that distance of an axis-aligned wall
   a second box reaching the wall is added.
6. **Deduplicate.** Boxes overlapping a larger-support box with IoU >=
   ``dedup_iou`` are dropped; at most ``max_proposals`` are kept, those with
   most points first.

World frame convention: z up (ScanNet, REP 103 ``map``/``odom``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import Box3D
from .keyframes import BufferSnapshot


@dataclass(frozen=True)
class ProposalConfig:
    voxel_size_m: float = 0.04  # down-sampling voxel before plane fitting / clustering
    # take every n-th row/column of each keyframe's point map; 0 = chosen from the frame size
    # (``auto_pixel_stride``): about AUTO_POINTS_PER_FRAME points a frame, the density the other
    # values were tuned at (stride 4 at 320 x 240). At a fixed 4, frames of 160 x 120 left the
    # 4-cm voxels sparse: ScanRefer through SceneQA on the generated record rooms Acc@0.5 37.6
    # at 4, 42.1 at 2 (BENCHMARKS.md, "Object proposals")
    pixel_stride: int = 0
    plane_distance_m: float = 0.025  # RANSAC inlier distance; points this close to structure are removed
    max_planes: int = 8  # RANSAC plane searches per orientation (horizontal, vertical)
    min_plane_points: int = 200  # planes with fewer inliers stop the plane search
    outside_share: float = 0.02  # a structural plane has at most this share of all points beyond it
    structural_extent_m: float = 1.6  # ... and its inliers span at least this far along it
    normal_radius_m: float = 0.12  # neighbourhood radius of the normal estimate
    cluster_eps_m: tuple[float, ...] = (0.05, 0.08, 0.12, 0.18)  # linking radii of the clustering scales
    min_cluster_points: int = 15  # smaller components (after down-sampling) are noise
    support_split: bool = True  # split clusters at horizontal support surfaces (step 4)
    support_min_area_m2: float = 0.06  # a support surface covers at least this much (voxel count · voxel²)
    support_max_levels: int = 2  # highest support surfaces tried per cluster
    stack_max_drop_m: float = 0.6  # floating parts get a copy reaching a surface this far below (0: off)
    snap_distance_m: float = 0.2  # box faces this close to the floor / an axis-aligned wall snap to it
    dedup_iou: float = 0.9  # proposals overlapping a kept one this much are duplicates
    min_box_size_m: float = 0.05  # drop boxes whose largest side is smaller
    max_box_size_m: float = 4.0  # drop boxes whose largest side is larger (leftover structure)
    max_proposals: int = 128
    seed: int = 0  # RANSAC seed, for repeatable proposals

    def __post_init__(self) -> None:
        eps = self.cluster_eps_m
        eps = (eps,) if isinstance(eps, (int, float)) else tuple(eps)
        if not eps or not all(isinstance(e, (int, float)) and e > 0 for e in eps):
            raise ValueError(f"cluster_eps_m must be one or more numbers > 0, got {self.cluster_eps_m!r}")
        object.__setattr__(self, "cluster_eps_m", tuple(sorted(float(e) for e in eps)))
        for name in ("voxel_size_m", "plane_distance_m", "structural_extent_m", "normal_radius_m",
                     "support_min_area_m2", "min_box_size_m", "max_box_size_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.pixel_stride < 0:
            raise ValueError(f"pixel_stride must be >= 0 (0 = from the frame size), got {self.pixel_stride}")
        for name in ("min_plane_points", "min_cluster_points", "max_proposals",
                     "support_max_levels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_planes < 0:
            raise ValueError(f"max_planes must be >= 0, got {self.max_planes}")
        if not 0 <= self.outside_share < 1:
            raise ValueError(f"outside_share must be in [0, 1), got {self.outside_share}")
        if self.stack_max_drop_m < 0:
            raise ValueError(f"stack_max_drop_m must be >= 0, got {self.stack_max_drop_m}")
        if self.snap_distance_m < 0:
            raise ValueError(f"snap_distance_m must be >= 0, got {self.snap_distance_m}")
        if not 0 < self.dedup_iou <= 1:
            raise ValueError(f"dedup_iou must be in (0, 1], got {self.dedup_iou}")
        if self.min_box_size_m >= self.max_box_size_m:
            raise ValueError(f"min_box_size_m {self.min_box_size_m} must be < max_box_size_m "
                             f"{self.max_box_size_m}")


AUTO_POINTS_PER_FRAME = 80 * 60


def auto_pixel_stride(height_px: int, width_px: int) -> int:
    """Pixel stride that samples about ``AUTO_POINTS_PER_FRAME`` points from an image of this
    size: 4 at 320 x 240, 2 at 160 x 120, 8 at 640 x 480, at least 1."""
    return max(1, round(math.sqrt(height_px * width_px / AUTO_POINTS_PER_FRAME)))


def snapshot_points_m(snapshot: BufferSnapshot, pixel_stride: int) -> np.ndarray:
    """(N, 3) float32 valid world points of all keyframes, every ``pixel_stride``-th pixel
    (0: each keyframe's ``auto_pixel_stride``)."""
    if pixel_stride < 0:
        raise ValueError(f"pixel_stride must be >= 0 (0 = from the frame size), got {pixel_stride}")
    parts = []
    for kf in snapshot.keyframes:
        n = pixel_stride or auto_pixel_stride(*kf.valid.shape)
        parts.append(kf.xyz_m[::n, ::n][kf.valid[::n, ::n]])
    if not parts:
        return np.zeros((0, 3), np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


@dataclass(frozen=True)
class StructuralPlane:
    """A floor, ceiling or wall: points x with ``normal · x + offset_m = 0``.

    normal: (3,) unit vector, exactly (0, 0, ±1) or horizontal; the room's
    inside is where ``normal · x + offset_m > 0``.
    """

    normal: np.ndarray
    offset_m: float

    @property
    def horizontal(self) -> bool:
        return abs(self.normal[2]) > 0.5


def propose_boxes(points_m: np.ndarray, config: ProposalConfig = ProposalConfig()) -> list[Box3D]:
    """Class-agnostic axis-aligned object boxes from a point cloud (see the module docstring).

    Args:
        points_m: (N, 3) world points, metres, z up. Non-finite rows are ignored.
        config: the method's parameters.
    Returns:
        Up to ``config.max_proposals`` boxes, those supported by most points first;
        [] when fewer than ``config.min_cluster_points`` finite points are given.
    """
    import open3d as o3d  # imported here: open3d is slow to import and needs libusb

    pts = np.asarray(points_m, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_m must be (N, 3), got {pts.shape}")
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < config.min_cluster_points:
        return []
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts)).voxel_down_sample(config.voxel_size_m)
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=config.normal_radius_m, max_nn=16))
    xyz = np.asarray(cloud.points)  # (M, 3)
    normal_z = np.abs(np.asarray(cloud.normals)[:, 2])  # (M,)

    planes = find_structural_planes(xyz, normal_z, config)
    keep = np.ones(len(xyz), bool)
    for plane in planes:
        keep &= np.abs(xyz @ plane.normal + plane.offset_m) >= config.plane_distance_m
    xyz, normal_z = xyz[keep], normal_z[keep]
    if len(xyz) < config.min_cluster_points:
        return []

    candidates = _cluster_boxes(xyz, normal_z, config)  # (K, 7): min xyz, max xyz, point count
    candidates = _extend_to_surface_below(candidates, xyz[normal_z > 0.9], planes, config)
    candidates = _snap_to_structure(candidates, planes, config)
    size = candidates[:, 3:6] - candidates[:, :3]
    largest = size.max(axis=1)
    candidates = candidates[(largest >= config.min_box_size_m) & (largest <= config.max_box_size_m)]
    return _deduplicate(candidates, config)


def find_structural_planes(xyz_m: np.ndarray, normal_z: np.ndarray,
                           config: ProposalConfig) -> list[StructuralPlane]:
    """Floor, ceiling and walls of a down-sampled scan (step 2 of the module docstring).

    Args:
        xyz_m: (M, 3) points, metres, z up.
        normal_z: (M,) |z component| of each point's unit normal.
    Returns:
        The planes that bound the scan (at most ``outside_share`` of the points beyond them).
    """
    rng = np.random.default_rng(config.seed)
    planes: list[StructuralPlane] = []
    margin = 2 * config.plane_distance_m
    for horizontal in (True, False):
        candidate = np.flatnonzero(normal_z > 0.9 if horizontal else normal_z < 0.3)
        for _ in range(config.max_planes):
            if len(candidate) < config.min_plane_points:
                break
            model, inliers = ransac_plane(xyz_m[candidate], config.plane_distance_m, 200, rng)
            if len(inliers) < config.min_plane_points:
                break
            normal, offset = _snap_plane(np.asarray(model, float), xyz_m[candidate], horizontal, margin)
            signed = xyz_m @ normal + offset  # (M,)
            near = np.abs(signed) < config.plane_distance_m
            if np.mean(signed < -margin) > 0.5:  # make the normal point to the room's inside
                normal, offset, signed = -normal, -offset, -signed
            on_plane = xyz_m[near]
            span = np.ptp(on_plane, axis=0) if len(on_plane) else np.zeros(3)
            long_enough = (max(span[0], span[1]) if horizontal else np.hypot(span[0], span[1])) \
                >= config.structural_extent_m
            if np.mean(signed < -margin) <= config.outside_share and long_enough:
                planes.append(StructuralPlane(normal, float(offset)))
            drop = near[candidate]
            drop[np.asarray(inliers)] = True
            candidate = candidate[~drop]  # search the next plane among the others
    return planes


def ransac_plane(xyz_m: np.ndarray, distance_m: float, iterations: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The plane through 3 sampled points with the most points within ``distance_m``.

    Ours rather than open3d's ``segment_plane``: with ``o3d.utility.random.seed`` set before
    every call, open3d 0.20 still returned different planes on alternate calls with the same
    points (one room: 5 and 6 structural planes, proposal R@0.5 0.75 and 0.69), so the node's
    answers changed between identical queries. Here every draw comes from ``rng``.

    Args:
        xyz_m: (N, 3) points, N >= 3.
        distance_m: inlier distance.
        iterations: planes tried; the first with the most inliers wins.
        rng: the random draws.
    Returns:
        (a, b, c, d) with unit (a, b, c), and the (K,) indices of the inliers.
    """
    xyz = np.asarray(xyz_m, dtype=np.float64)
    idx = rng.integers(0, len(xyz), size=(iterations, 3))
    p0, p1, p2 = xyz[idx[:, 0]], xyz[idx[:, 1]], xyz[idx[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)  # (I, 3)
    length = np.linalg.norm(normals, axis=1)
    ok = length > 1e-12  # not three collinear (or repeated) points
    if not ok.any():
        return np.array([0.0, 0.0, 1.0, -float(xyz[0, 2])]), np.zeros(0, int)
    normals = normals[ok] / length[ok, None]
    offsets = -np.einsum("ij,ij->i", normals, p0[ok])  # (I,)
    counts = np.zeros(len(normals), int)
    for start in range(0, len(xyz), 16384):  # (chunk, I) distances at a time: bounded memory
        counts += (np.abs(xyz[start:start + 16384] @ normals.T + offsets) < distance_m).sum(axis=0)
    best = int(np.argmax(counts))
    normal, offset = normals[best], offsets[best]
    inliers = np.flatnonzero(np.abs(xyz @ normal + offset) < distance_m)
    if len(inliers) >= 3:  # least-squares plane of the inliers, and its inliers (as open3d does)
        centre = xyz[inliers].mean(axis=0)
        normal = np.linalg.svd(xyz[inliers] - centre, full_matrices=False)[2][-1]
        offset = -float(normal @ centre)
        inliers = np.flatnonzero(np.abs(xyz @ normal + offset) < distance_m)
    return np.append(normal, offset), inliers


def _snap_plane(model: np.ndarray, xyz_m: np.ndarray, horizontal: bool,
                band_m: float) -> tuple[np.ndarray, float]:
    """Force a RANSAC plane (a, b, c, d) to be exactly horizontal / vertical and refit it.

    Refits twice to the points within ``band_m`` (median height for a floor,
    principal direction in xy for a wall). Returns (unit normal (3,), offset_m).
    """
    if horizontal:
        normal = np.array([0.0, 0.0, 1.0])
    else:
        normal = np.array([model[0], model[1], 0.0])
        normal /= max(np.linalg.norm(normal), 1e-12)
    scale = model[2] if horizontal else np.linalg.norm(model[:2])  # the normal's kept part
    offset = float(model[3] / scale) if abs(scale) > 1e-6 else 0.0
    for _ in range(2):
        band = xyz_m[np.abs(xyz_m @ normal + offset) < band_m]
        if len(band) < 3:
            break
        if horizontal:
            offset = -float(np.median(band[:, 2]))
        else:
            mean_xy = band[:, :2].mean(axis=0)
            _, _, vt = np.linalg.svd(band[:, :2] - mean_xy, full_matrices=False)
            normal = np.array([vt[1, 0], vt[1, 1], 0.0])
            offset = -float(mean_xy @ vt[1])
    return normal, float(offset)


def _cluster_boxes(xyz_m: np.ndarray, normal_z: np.ndarray, config: ProposalConfig) -> np.ndarray:
    """Steps 3–4: (K, 7) candidate boxes (min xyz, max xyz, point count) of all scales and splits."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(xyz_m)
    pairs = cKDTree(xyz_m).query_pairs(max(config.cluster_eps_m), output_type="ndarray")  # (E, 2)
    length = np.linalg.norm(xyz_m[pairs[:, 0]] - xyz_m[pairs[:, 1]], axis=1)  # (E,)
    boxes: list[np.ndarray] = []

    def components(edges: np.ndarray, members: np.ndarray) -> list[np.ndarray]:
        """Connected components (index arrays into xyz_m) of ``members`` linked by ``edges``."""
        local = np.full(n, -1)
        local[members] = np.arange(len(members))
        a, b = local[edges[:, 0]], local[edges[:, 1]]
        inside = (a >= 0) & (b >= 0)
        graph = coo_matrix((np.ones(inside.sum()), (a[inside], b[inside])), shape=(len(members),) * 2)
        count, labels = connected_components(graph, directed=False)
        sizes = np.bincount(labels, minlength=count)
        order = np.argsort(labels, kind="stable")
        groups = np.split(members[order], np.cumsum(sizes)[:-1])
        return [g for g in groups if len(g) >= config.min_cluster_points]

    def add(group: np.ndarray, floor_z: float | None = None) -> None:
        lo, hi = xyz_m[group].min(axis=0), xyz_m[group].max(axis=0)
        if floor_z is not None:
            lo[2] = floor_z
        boxes.append(np.r_[lo, hi, len(group)])

    for eps in config.cluster_eps_m:
        edges = pairs[length < eps]
        for cluster in components(edges, np.arange(n)):
            add(cluster)
            if not config.support_split:
                continue
            for level_z in _support_levels(xyz_m[cluster], normal_z[cluster], config):
                z = xyz_m[cluster, 2]
                above = cluster[z > level_z + config.voxel_size_m]
                below = cluster[z <= level_z + config.voxel_size_m]
                if len(above) < config.min_cluster_points or len(below) < config.min_cluster_points:
                    continue
                add(below)
                for part in components(edges, above):
                    add(part, floor_z=level_z)
    return np.array(boxes).reshape(-1, 7)


def _support_levels(xyz_m: np.ndarray, normal_z: np.ndarray, config: ProposalConfig) -> list[float]:
    """Heights (metres) of a cluster's horizontal surfaces large enough to carry an object.

    A surface is a voxel-high z-bin of upward-facing points covering at least
    ``support_min_area_m2``; the highest ``support_max_levels`` are returned,
    highest first (the top of the cluster itself excluded: nothing stands on it
    inside this cluster).
    """
    up = normal_z > 0.9
    if not up.any():
        return []
    v = config.voxel_size_m
    z = xyz_m[:, 2]
    bins = np.floor((z[up] - z.min()) / v).astype(int)
    counts = np.bincount(bins)
    big = np.flatnonzero(counts * v * v >= config.support_min_area_m2)
    levels = [z.min() + (b + 1) * v for b in big[::-1]]  # top of each surface bin, highest first
    levels = [lv for lv in levels if lv < z.max() - v]
    return levels[: config.support_max_levels]


def _extend_to_surface_below(boxes: np.ndarray, up_xyz_m: np.ndarray, planes: list[StructuralPlane],
                             config: ProposalConfig) -> np.ndarray:
    """Step 4b: a copy of each floating box reaching down to the surface under it.

    Thin parts are often missed by the sensor's sampling (a lamp's pole, a
    plant's stem), so the top part of an object floats above its base. Each
    box whose bottom is more than a voxel above the highest upward-facing
    surface under its footprint (``up_xyz_m``: (U, 3) points with upward
    normals, or the floor), within ``stack_max_drop_m``, gets a copy with its
    bottom on that surface. boxes: (K, 7) min xyz, max xyz, count → (K', 7).
    """
    if config.stack_max_drop_m <= 0 or len(boxes) == 0:
        return boxes
    v = config.voxel_size_m
    floor = [-p.offset_m for p in planes if p.horizontal and p.normal[2] > 0]
    floor_z = max(floor) if floor else -np.inf
    lo, hi = boxes[:, None, :3], boxes[:, None, 3:6]  # (K, 1, 3)
    under = np.all((up_xyz_m[None, :, :2] >= lo[..., :2]) & (up_xyz_m[None, :, :2] <= hi[..., :2]), axis=2)
    drop = lo[..., 2] - up_xyz_m[None, :, 2]  # (K, U) how far below the box's bottom
    under &= (drop > v) & (drop <= config.stack_max_drop_m)
    surface_z = np.where(under, up_xyz_m[None, :, 2], -np.inf)
    top3 = np.sort(surface_z, axis=1)[:, -3] if surface_z.shape[1] >= 3 else np.full(len(boxes), -np.inf)
    bottom = boxes[:, 2]
    to_floor = (bottom - floor_z > v) & (bottom - floor_z <= config.stack_max_drop_m)
    target = np.where(np.isfinite(top3), top3, np.where(to_floor, floor_z, np.nan))
    moved = boxes[np.isfinite(target)].copy()
    moved[:, 2] = target[np.isfinite(target)]
    return np.concatenate([boxes, moved])


def _snap_to_structure(boxes: np.ndarray, planes: list[StructuralPlane],
                       config: ProposalConfig) -> np.ndarray:
    """Step 5: floor snap in place, plus a wall-snapped copy of boxes near an axis-aligned wall.

    boxes: (K, 7) min xyz, max xyz, count. Returns (K', 7), K' >= K.
    """
    out = boxes.copy()
    d = config.snap_distance_m
    extra = []
    for plane in planes:
        n = plane.normal
        axis = int(np.argmax(np.abs(n)))
        if abs(n[axis]) < np.cos(np.radians(5)):
            continue  # a wall not along x or y: an axis-aligned box cannot follow it
        coord = -plane.offset_m / n[axis]  # the plane is at x[axis] = coord
        if n[axis] > 0:  # inside is x[axis] > coord: the box's min face moves down to it
            gap = out[:, axis] - coord
            hit = (gap > 0) & (gap <= d)
            if plane.horizontal:
                out[hit, axis] = coord
            elif hit.any():
                moved = out[hit].copy()
                moved[:, axis] = coord
                extra.append(moved)
        else:
            gap = coord - out[:, 3 + axis]
            hit = (gap > 0) & (gap <= d)
            if hit.any() and not plane.horizontal:
                moved = out[hit].copy()
                moved[:, 3 + axis] = coord
                extra.append(moved)
    return np.concatenate([out, *extra]) if extra else out


def _deduplicate(boxes: np.ndarray, config: ProposalConfig) -> list[Box3D]:
    """Step 6: greedy IoU suppression, most points first; (K, 7) → up to max_proposals boxes."""
    from .geometry import greedy_suppression

    if len(boxes) == 0:
        return []
    boxes = boxes[np.argsort(-boxes[:, 6], kind="stable")]
    center = (boxes[:, :3] + boxes[:, 3:6]) / 2
    size = np.maximum(boxes[:, 3:6] - boxes[:, :3], config.voxel_size_m)
    rows = np.concatenate([center, size], axis=1)  # (K, 6)
    kept = greedy_suppression(rows, config.dedup_iou, limit=config.max_proposals)
    return [Box3D(rows[i, :3], rows[i, 3:]) for i in kept]


def proposal_recall(proposals: list[Box3D], truth: list[Box3D], iou_threshold: float = 0.5) -> float:
    """Share of true boxes matched by some proposal with IoU >= threshold (NaN without truth)."""
    from .geometry import box_iou_matrix

    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if not truth:
        return float("nan")
    if not proposals:
        return 0.0
    rows = lambda boxes: np.array([b.as_row() for b in boxes])  # noqa: E731
    iou = box_iou_matrix(rows(truth), rows(proposals))
    return float(np.mean(iou.max(axis=1) >= iou_threshold))
