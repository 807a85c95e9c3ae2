"""Recall of the node's built-in 3D object proposals on generated scenes, vs. the first cut.

    python benchmarks/bench_proposals.py            # 8 scenes (seeds 0..7)
    python benchmarks/bench_proposals.py 12 --first-seed 100
    python benchmarks/bench_proposals.py 8 --first-seed 100 --model-keyframes 8
    python benchmarks/bench_proposals.py 8 --first-seed 100 --size 160x120 --strides 0,4

Each scene is scanned like the node does it: every 3rd frame of the
generated trajectory (320×240, or ``--size``) goes through a 32-keyframe rolling
buffer; the snapshot's points (the default pixel stride: 4 at 320×240; the first
cut: 4) are proposed once with the current method and once with the first cut
(``baseline_propose_boxes`` below, kept verbatim with its parameters, open3d's
RANSAC included), in the same process. Truth: every object's axis-aligned box.
"seen" is the share of objects with at least 20 sampled pixels (every 4th) in the
kept keyframes (no proposal can find the others). Times are of taking the points
and ``propose_boxes``, with OpenMP limited to one thread.
``--strides A,B`` compares the current method at two pixel strides (0 = the default).
``--model-keyframes K`` compares, with the current method, proposals from all 32 keyframes
(what ``SceneQA`` does) with proposals from the K spread over them that a query's model reads
(what it did before).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the task budget is stated; before open3d loads

import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from video3d_ros.geometry import Box3D  # noqa: E402
from video3d_ros.keyframes import BufferConfig, BufferSnapshot, Frame, RollingKeyframeBuffer  # noqa: E402
from video3d_ros.proposals import ProposalConfig, proposal_recall, propose_boxes, snapshot_points_m  # noqa: E402
from video3d_ros.scenes import RenderConfig, SceneCamera, generate_scene  # noqa: E402
from video3d_ros.scene_qa import subsample_snapshot  # noqa: E402


@dataclass(frozen=True)
class BaselineConfig:
    """The first cut's parameters (commit 2dde0c4)."""

    voxel_size_m: float = 0.04
    plane_distance_m: float = 0.03
    max_planes: int = 10
    structural_extent_m: float = 1.6
    structural_fill: float = 0.3
    min_plane_points: int = 200
    cluster_eps_m: float = 0.08
    min_cluster_points: int = 15
    min_box_size_m: float = 0.05
    max_box_size_m: float = 4.0
    max_proposals: int = 128
    seed: int = 0


def baseline_propose_boxes(points_m: np.ndarray, config: BaselineConfig = BaselineConfig()) -> list[Box3D]:
    """The first cut: RANSAC structure removal (free orientation), one DBSCAN, one box per cluster."""
    import open3d as o3d

    pts = np.asarray(points_m, dtype=np.float64)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < config.min_cluster_points:
        return []
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts)).voxel_down_sample(config.voxel_size_m)
    o3d.utility.random.seed(config.seed)
    kept = []
    z_lo, z_hi = np.percentile(np.asarray(cloud.points)[:, 2], [1, 99])
    for _ in range(config.max_planes):
        if len(cloud.points) < config.min_plane_points:
            break
        plane, inliers = cloud.segment_plane(config.plane_distance_m, 3, 200)
        if len(inliers) < config.min_plane_points:
            break
        plane_pts = np.asarray(cloud.points)[inliers]
        if not _baseline_is_structural(np.asarray(plane[:3]), plane_pts, z_lo, z_hi, config):
            kept.append(plane_pts)
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


def _baseline_is_structural(normal: np.ndarray, plane_pts: np.ndarray, z_lo_m: float, z_hi_m: float,
                            config: BaselineConfig) -> bool:
    extent = np.sort(plane_pts.max(axis=0) - plane_pts.min(axis=0))
    fill = len(plane_pts) * config.voxel_size_m**2 / max(extent[1] * extent[2], 1e-9)
    if fill < config.structural_fill or extent[2] < config.structural_extent_m:
        return False
    normal = normal / np.linalg.norm(normal)
    if abs(normal[2]) < 0.2:
        return extent[1] >= 1.0
    if abs(normal[2]) > 0.9:
        z = float(np.median(plane_pts[:, 2]))
        return min(abs(z - z_lo_m), abs(z - z_hi_m)) < 0.1 and extent[1] >= config.structural_extent_m
    return False


def scan_scene(seed: int, frame_step: int, width: int, height: int,
               model_keyframes: int = 0) -> tuple[BufferSnapshot, list[Box3D], float, BufferSnapshot | None]:
    """The buffer's snapshot, truth boxes, the share of objects seen in the kept keyframes
    (every 4th pixel), and (``model_keyframes`` > 0) the keyframes a query's model would read."""
    scene = generate_scene(seed=seed, scene_id=f"scene{seed:04d}_00")
    cam = SceneCamera(scene, RenderConfig(width=width, height=height))
    buf = RollingKeyframeBuffer(BufferConfig(capacity=32, pixel_stride=4))
    instance_ids = {}
    for i in range(0, len(cam), frame_step):
        f = cam.render(i)
        buf.insert(Frame.from_depth(i, i / 30, f.rgb, f.depth_mm, f.K, f.T_world_cam))
        instance_ids[i] = f.instance_ids
    snapshot = buf.snapshot()
    stride = 4
    seen_ids = np.concatenate([instance_ids[kf.frame_id][::stride, ::stride][kf.valid[::stride, ::stride]]
                               for kf in snapshot.keyframes])
    counts = np.bincount(seen_ids[seen_ids >= 0], minlength=len(scene.all_elements))
    seen = float(np.mean(counts[: len(scene.objects)] >= 20))
    truth = [Box3D.from_min_max(o.box_min_m, o.box_max_m) for o in scene.objects]
    subsample = subsample_snapshot(snapshot, model_keyframes) if model_keyframes > 0 else None
    return snapshot, truth, seen, subsample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", type=int, nargs="?", default=8, help="number of generated scenes")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first scene")
    parser.add_argument("--frame-step", type=int, default=3, help="feed every n-th frame to the buffer")
    parser.add_argument("--size", default="320x240", help="rendered frames, WIDTHxHEIGHT")
    parser.add_argument("--strides", default="",
                        help="instead of the first cut, compare the current method at these two pixel "
                             "strides (e.g. 4,2; 0 = the default, chosen from the frame size)")
    parser.add_argument("--model-keyframes", type=int, default=0,
                        help="instead of the first cut, compare proposals from all 32 keyframes with "
                             "proposals from the K a query's model reads (as SceneQA did before)")
    args = parser.parse_args()
    if args.scenes < 1:
        parser.error("scenes must be >= 1")

    k = args.model_keyframes
    width, height = (int(v) for v in args.size.lower().split("x"))

    def current(snapshot: BufferSnapshot, stride: int = 0) -> list[Box3D]:
        config = ProposalConfig(pixel_stride=stride)
        return propose_boxes(snapshot_points_m(snapshot, config.pixel_stride), config)

    if args.strides:
        a, b = (int(v) for v in args.strides.split(","))
        methods = {f"stride {a or 'auto'}": lambda snap, _: current(snap, a),
                   f"stride {b or 'auto'}": lambda snap, _: current(snap, b)}
    elif k > 0:
        methods = {"all 32": lambda snap, _: current(snap), f"{k} of 32": lambda _, sub: current(sub)}
    else:
        methods = {"new": lambda snap, _: current(snap),
                   "first cut": lambda snap, _: baseline_propose_boxes(snapshot_points_m(snap, 4))}
    rows = {name: [] for name in methods}
    seen_all = []
    print(f"{'scene':>6} {'objs':>4} {'seen':>5} | {'method':<9} {'R@0.25':>6} {'R@0.5':>6} {'count':>5} {'time s':>6}")
    for seed in range(args.first_seed, args.first_seed + args.scenes):
        snapshot, truth, seen, sub = scan_scene(seed, args.frame_step, width, height, max(k, 0))
        seen_all.append(seen)
        for name, method in methods.items():
            t0 = time.perf_counter()
            boxes = method(snapshot, sub)
            dt = time.perf_counter() - t0
            row = (proposal_recall(boxes, truth, 0.25), proposal_recall(boxes, truth, 0.5), len(boxes), dt)
            rows[name].append(row)
            print(f"{seed:>6} {len(truth):>4} {seen:>5.2f} | {name:<9} {row[0]:>6.3f} {row[1]:>6.3f} "
                  f"{row[2]:>5d} {row[3]:>6.2f}", flush=True)
    print(f"\nmean over {args.scenes} scenes (objects seen in the keyframes: {np.mean(seen_all):.3f})")
    means = {name: np.mean(np.array(r), axis=0) for name, r in rows.items()}
    for name, m in means.items():
        print(f"  {name:<9} R@0.25 {m[0]:.3f}  R@0.5 {m[1]:.3f}  count {m[2]:.1f}  time {m[3]:.2f} s "
              f"(max {np.max(np.array(rows[name])[:, 3]):.2f} s)")
    (a, new), (b, old) = means.items()
    print(f"  ratio {a} / {b}: R@0.5 {new[1] / max(old[1], 1e-9):.2f}x, R@0.25 "
          f"{new[0] / max(old[0], 1e-9):.2f}x, time {new[3] / max(old[3], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
