"""Class-agnostic 3D object proposals from the keyframes' points (no ROS).

Used when no 3D detector publishes proposals. The recipe is the classic
geometric one, built from open3d's operators:

1. gather the keyframes' valid world points (strided), voxel down-sample;
2. remove structural planes (floor, walls, ceiling): RANSAC planes whose
   inliers span at least ``structural_extent_m`` along two directions and
   densely fill that rectangle (chair seats and table tops at one height are
   coplanar too, but scattered);
3. cluster the rest with DBSCAN; each cluster's axis-aligned box is a proposal.

World frame convention: z up (ScanNet, REP 103 ``map``/``odom``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Box3D
from .keyframes import BufferSnapshot


@dataclass(frozen=True)
class ProposalConfig:
    voxel_size_m: float = 0.04  # down-sampling voxel before plane fitting / clustering
    pixel_stride: int = 4  # take every n-th row/column of each keyframe's point map
    plane_distance_m: float = 0.03  # RANSAC inlier distance
    max_planes: int = 10  # RANSAC plane searches (structural planes removed, others kept)
    structural_extent_m: float = 1.6  # floors/walls are at least this long (see _is_structural)
    structural_fill: float = 0.3  # ... and fill this share of their bounding rectangle (not scattered tops)
    min_plane_points: int = 200  # planes with fewer inliers stop the plane search
    cluster_eps_m: float = 0.08  # DBSCAN neighbourhood radius
    min_cluster_points: int = 15  # DBSCAN min points; smaller clusters are noise
    min_box_size_m: float = 0.05  # drop boxes whose largest side is smaller
    max_box_size_m: float = 4.0  # drop boxes whose largest side is larger (leftover structure)
    max_proposals: int = 128
    seed: int = 0  # RANSAC seed, for repeatable proposals

    def __post_init__(self) -> None:
        for name in ("voxel_size_m", "plane_distance_m", "structural_extent_m", "structural_fill",
                     "cluster_eps_m",
                     "min_box_size_m", "max_box_size_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("pixel_stride", "min_plane_points", "min_cluster_points", "max_proposals"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_planes < 0:
            raise ValueError(f"max_planes must be >= 0, got {self.max_planes}")
        if self.min_box_size_m >= self.max_box_size_m:
            raise ValueError(f"min_box_size_m {self.min_box_size_m} must be < max_box_size_m "
                             f"{self.max_box_size_m}")


def snapshot_points_m(snapshot: BufferSnapshot, pixel_stride: int) -> np.ndarray:
    """(N, 3) float32 valid world points of all keyframes, every ``pixel_stride``-th pixel."""
    parts = [kf.xyz_m[::pixel_stride, ::pixel_stride][kf.valid[::pixel_stride, ::pixel_stride]]
             for kf in snapshot.keyframes]
    if not parts:
        return np.zeros((0, 3), np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def propose_boxes(points_m: np.ndarray, config: ProposalConfig = ProposalConfig()) -> list[Box3D]:
    """Cluster a point cloud into axis-aligned object boxes, largest cluster first.

    Args:
        points_m: (N, 3) world points, metres, z up.
    Returns:
        Up to ``config.max_proposals`` boxes.
    """
    import open3d as o3d  # imported here: open3d is slow to import and needs libusb

    pts = np.asarray(points_m, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_m must be (N, 3), got {pts.shape}")
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < config.min_cluster_points:
        return []
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    cloud = cloud.voxel_down_sample(config.voxel_size_m)
    o3d.utility.random.seed(config.seed)
    kept = []  # inliers of non-structural planes (object tops): set aside, clustered later
    z_lo, z_hi = np.percentile(np.asarray(cloud.points)[:, 2], [1, 99])
    for _ in range(config.max_planes):
        if len(cloud.points) < config.min_plane_points:
            break
        plane, inliers = cloud.segment_plane(config.plane_distance_m, 3, 200)
        if len(inliers) < config.min_plane_points:
            break
        plane_pts = np.asarray(cloud.points)[inliers]
        if _is_structural(np.asarray(plane[:3]), plane_pts, z_lo, z_hi, config):
            pass  # removed below
        else:
            kept.append(plane_pts)  # not a floor/wall; a wall may still hide behind it
        cloud = cloud.select_by_index(inliers, invert=True)
    pts = np.concatenate([np.asarray(cloud.points), *kept]) if kept else np.asarray(cloud.points)
    if len(pts) < config.min_cluster_points:
        return []
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    labels = np.asarray(cloud.cluster_dbscan(config.cluster_eps_m, config.min_cluster_points))
    boxes: list[tuple[int, Box3D]] = []
    for label in range(labels.max() + 1 if labels.size else 0):
        member = pts[labels == label]
        lo, hi = member.min(axis=0), member.max(axis=0)
        size = hi - lo
        if not config.min_box_size_m <= size.max() <= config.max_box_size_m:
            continue
        boxes.append((len(member), Box3D((lo + hi) / 2, np.maximum(size, config.voxel_size_m))))
    boxes.sort(key=lambda item: -item[0])
    return [box for _, box in boxes[: config.max_proposals]]


def _is_structural(normal: np.ndarray, plane_pts: np.ndarray, z_lo_m: float, z_hi_m: float,
                   config: ProposalConfig) -> bool:
    """Floor, ceiling or wall: a large, densely filled plane of the right orientation.

    Walls are vertical, at least ``structural_extent_m`` long and 1 m high as
    seen (cameras often see only their lower part). Horizontal planes are
    structural only at the lowest or highest level of the scan (floor,
    ceiling): a bed or table top is a large horizontal plane too.
    """
    extent = np.sort(plane_pts.max(axis=0) - plane_pts.min(axis=0))  # ascending
    fill = len(plane_pts) * config.voxel_size_m**2 / max(extent[1] * extent[2], 1e-9)
    if fill < config.structural_fill or extent[2] < config.structural_extent_m:
        return False
    normal = normal / np.linalg.norm(normal)
    if abs(normal[2]) < 0.2:  # vertical
        return extent[1] >= 1.0
    if abs(normal[2]) > 0.9:  # horizontal
        z = float(np.median(plane_pts[:, 2]))
        at_bound = min(abs(z - z_lo_m), abs(z - z_hi_m)) < 0.1
        return at_bound and extent[1] >= config.structural_extent_m
    return False


def proposal_recall(proposals: list[Box3D], truth: list[Box3D], iou_threshold: float = 0.5) -> float:
    """Share of true boxes matched by some proposal with IoU >= threshold."""
    from .geometry import box_iou_matrix

    if not truth:
        return float("nan")
    if not proposals:
        return 0.0
    rows = lambda boxes: np.array([np.r_[b.center_m, b.size_m] for b in boxes])  # noqa: E731
    iou = box_iou_matrix(rows(truth), rows(proposals))
    return float(np.mean(iou.max(axis=1) >= iou_threshold))
