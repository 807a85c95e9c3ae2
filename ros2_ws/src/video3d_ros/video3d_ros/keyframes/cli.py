"""video3d-keyframes: offline frame selection for recorded scans.

    video3d-keyframes SCAN_DIR --out selection.json --plot coverage.png
    video3d-keyframes SCAN_DIR --strategy max-coverage-0.95 --max-frames 32 \
        --axis-align scene0000_00.txt --scene-points scene_cloud.npy
    video3d-keyframes data/posed_images/* --max-frames 32 --out selection.json

Writes a JSON list with one record per scan whose fields match the reference
implementation's selection file (``video_id``, ``frame_files`` and
``voxel_nums`` in pick order, ``num_all_voxels``, ``num_select_voxels``) plus
``frame_files_by_time``, ``strategy`` and ``coverage_ratio`` — the file the
training package's ``data.selection_file`` and ``video3d-eval --selection-file``
read; and, for one scan, a PNG of coverage vs number of frames for greedy vs
uniform (for several, the mean curves over the scans).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..geometry.depth import depth_to_world_m
from ..geometry.voxels import voxel_keys
from .sampling import (
    SamplingStrategy,
    build_incidence,
    coverage_after_each,
    select_frames,
    uniform_indices,
)
from .scan_io import (
    ScanFormatError,
    list_frames,
    read_axis_alignment,
    read_depth_mm,
    read_intrinsics,
    read_matrix,
    read_scene_voxel_points,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="video3d-keyframes", description=__doc__.split("\n\n")[0])
    p.add_argument("scan_dirs", type=Path, nargs="+", metavar="SCAN_DIR",
                   help="scan(s) in ScanNet posed-images layout; one record each")
    p.add_argument("--out", type=Path, default=Path("selection.json"), help="selection JSON path")
    p.add_argument("--plot", type=Path, default=None, help="coverage PNG path (default: none)")
    p.add_argument(
        "--strategy",
        default=SamplingStrategy.MAX_COVERAGE.value,
        help="uniform | max-coverage | max-coverage-0.90 | max-coverage-0.95",
    )
    p.add_argument("--max-frames", type=int, default=32, help="frame budget")
    p.add_argument("--voxel-size-m", type=float, default=0.1)
    p.add_argument("--frame-step", type=int, default=1, help="use every n-th frame of the scan")
    p.add_argument("--pixel-stride", type=int, default=1, help="voxelise every n-th pixel")
    p.add_argument("--min-depth-m", type=float, default=0.1)
    p.add_argument("--max-depth-m", type=float, default=10.0)
    p.add_argument("--depth-scale-m", type=float, default=0.001, help="metres per depth unit")
    p.add_argument("--axis-align", type=Path, default=None,
                   help="4x4 matrix or ScanNet meta .txt (one scan only)")
    p.add_argument("--scene-points", type=Path, default=None,
                   help="scene cloud (.npy/.ply) (one scan only)")
    p.add_argument("--seed", type=int, default=0, help="greedy tie-breaking seed")
    p.add_argument("--video-id", default=None,
                   help="record id (one scan only; default: scannet/<dir name>)")
    return p


def frame_voxel_sets(
    scan_dir: Path,
    *,
    frame_step: int = 1,
    pixel_stride: int = 1,
    voxel_size_m: float = 0.1,
    T_align: np.ndarray | None = None,
    min_depth_m: float = 0.1,
    max_depth_m: float = 10.0,
    depth_scale_m: float = 0.001,
    progress: bool = True,
) -> tuple[list[Path], list[np.ndarray], int]:
    """Voxelise every usable frame. Returns (colour paths, voxel key sets, skipped count).

    Frames whose pose is not finite (ScanNet: lost tracking) are skipped.
    """
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    K = read_intrinsics(scan_dir)
    files = list_frames(scan_dir)[::frame_step]
    colour, sets, skipped = [], [], 0
    for f in tqdm(files, desc="voxelising frames", unit="frame", disable=not progress):
        T = read_matrix(f.pose)
        if not np.all(np.isfinite(T)):
            skipped += 1
            continue
        depth = read_depth_mm(f.depth)
        try:
            pm = depth_to_world_m(
                depth, K, T, T_align=T_align, depth_scale_m=depth_scale_m,
                min_depth_m=min_depth_m, max_depth_m=max_depth_m,
            )
        except ValueError as e:
            raise ScanFormatError(f"{f.pose}: {e}") from e
        colour.append(f.color)
        sets.append(voxel_keys(pm.xyz_m, pm.valid, voxel_size_m, pixel_stride))
    if not sets:
        raise ScanFormatError(f"{scan_dir}: no frame with a finite pose")
    return colour, sets, skipped


def coverage_plot(path: Path, greedy_curve: np.ndarray, uniform_curve: np.ndarray, total: int, title: str) -> None:
    """PNG of coverage ratio vs number of frames for greedy and uniform."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    n = np.arange(1, len(greedy_curve) + 1)
    ax.plot(n, greedy_curve / max(total, 1), label="max coverage (greedy)", marker=".")
    ax.plot(np.arange(1, len(uniform_curve) + 1), uniform_curve / max(total, 1), label="uniform", marker=".")
    for r in (0.90, 0.95):
        ax.axhline(r, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("number of frames")
    ax.set_ylabel("fraction of coverable voxels")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@dataclasses.dataclass
class ScanSelection:
    """One scan's selection record plus the curves the coverage plot draws."""

    record: dict
    greedy_curve: np.ndarray | None  # covered voxels after each greedy pick (frame budget)
    uniform_curve: np.ndarray | None  # covered voxels by k uniform frames, k = 1 … len(greedy)
    n_frames: int  # usable frames of the scan
    n_skipped: int  # frames skipped for a non-finite pose


def select_scan(scan_dir: Path, args: argparse.Namespace, strategy: SamplingStrategy,
                *, progress: bool = True, curves: bool = False) -> ScanSelection:
    """Voxelise one scan and pick its frames; raises ScanFormatError naming the bad file.
    ``curves``: also the greedy and uniform coverage curves (for the plot)."""
    T_align = read_axis_alignment(args.axis_align) if args.axis_align else None
    colour, sets, skipped = frame_voxel_sets(
        scan_dir, frame_step=args.frame_step, pixel_stride=args.pixel_stride,
        voxel_size_m=args.voxel_size_m, T_align=T_align, min_depth_m=args.min_depth_m,
        max_depth_m=args.max_depth_m, depth_scale_m=args.depth_scale_m, progress=progress,
    )
    scene = None
    if args.scene_points:
        scene = voxel_keys(read_scene_voxel_points(args.scene_points), None, args.voxel_size_m)
    inc = build_incidence(sets, scene)
    result = select_frames(sets, strategy, args.max_frames, seed=args.seed, incidence=inc)
    rel = [str(p.relative_to(scan_dir)) for p in colour]
    record = {
        "video_id": args.video_id or f"scannet/{scan_dir.resolve().name}",
        "frame_files": [rel[i] for i in result.pick_order],
        "voxel_nums": list(result.gains),
        "num_all_voxels": result.total_voxels,
        "num_select_voxels": result.selected_voxels,
        "frame_files_by_time": [rel[i] for i in result.indices],
        "strategy": result.strategy.value,
        "coverage_ratio": result.coverage_ratio,
        "voxel_size_m": args.voxel_size_m,
        "seed": args.seed,
    }
    if not curves:
        return ScanSelection(record, None, None, len(sets), skipped)
    greedy = select_frames(sets, SamplingStrategy.MAX_COVERAGE, args.max_frames, seed=args.seed,
                           incidence=inc)
    uniform = np.array([coverage_after_each(inc, uniform_indices(inc.n_frames, k))[1][-1]
                        for k in range(1, len(greedy.gains) + 1)])
    return ScanSelection(record, np.asarray(greedy.coverage_curve), uniform, len(sets), skipped)


def _mean_fraction_curve(curves: list[np.ndarray], totals: list[int]) -> np.ndarray:
    """Mean over scans of covered fraction after k frames; a scan with fewer frames than the
    longest keeps its last value (it has nothing more to add)."""
    n = max(len(c) for c in curves)
    padded = [np.pad(c / max(t, 1), (0, n - len(c)), mode="edge") for c, t in zip(curves, totals)]
    return np.mean(padded, axis=0)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        strategy = SamplingStrategy.parse(args.strategy)
    except ValueError as e:
        print(f"video3d-keyframes: --strategy: {e}", file=sys.stderr)
        return 2
    if args.max_frames < 1:
        print(f"video3d-keyframes: --max-frames must be >= 1, got {args.max_frames}", file=sys.stderr)
        return 2
    several = len(args.scan_dirs) > 1
    if several:
        per_scan = [n for n in ("axis_align", "scene_points", "video_id") if getattr(args, n)]
        if per_scan:
            flags = ", ".join("--" + n.replace("_", "-") for n in per_scan)
            print(f"video3d-keyframes: {flags} describe one scan; {len(args.scan_dirs)} were given",
                  file=sys.stderr)
            return 2
        names = [d.resolve().name for d in args.scan_dirs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            print(f"video3d-keyframes: scans with the same directory name (the record id): {dup}",
                  file=sys.stderr)
            return 2
    done: list[ScanSelection] = []
    for scan_dir in tqdm(args.scan_dirs, desc="scans", unit="scan", disable=not several):
        try:
            sel = select_scan(scan_dir, args, strategy, progress=not several,
                              curves=args.plot is not None)
        except ScanFormatError as e:
            print(f"video3d-keyframes: {e}", file=sys.stderr)
            return 1
        if sel.n_skipped:
            print(f"video3d-keyframes: {scan_dir}: skipped {sel.n_skipped} frame(s) with a "
                  "non-finite pose", file=sys.stderr)
        done.append(sel)
    records = [d.record for d in done]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(records, indent=1))
    tmp.replace(args.out)
    if args.plot:
        totals = [d.record["num_all_voxels"] for d in done]
        title = records[0]["video_id"] if not several else f"mean over {len(done)} scans"
        coverage_plot(args.plot, _mean_fraction_curve([d.greedy_curve for d in done], totals),
                      _mean_fraction_curve([d.uniform_curve for d in done], totals), 1, title)
    for d in done if not several else []:
        r = d.record
        print(f"{r['video_id']}: {len(r['frame_files'])}/{d.n_frames} frames, "
              f"{r['num_select_voxels']}/{r['num_all_voxels']} voxels ({r['coverage_ratio']:.1%}), "
              f"strategy {r['strategy']} -> {args.out}")
    if several:
        ratios = np.array([r["coverage_ratio"] for r in records])
        frames = np.array([len(r["frame_files"]) for r in records])
        print(f"{len(records)} scans: {frames.mean():.1f} frames and {ratios.mean():.1%} of the "
              f"coverable voxels per scan on average (min {ratios.min():.1%}), strategy "
              f"{strategy.value} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
