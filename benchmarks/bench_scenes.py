"""Generated scenes: rendering speed on one core, and time to generate a training set.

    python benchmarks/bench_scenes.py                       # 320x240, 300 frames, 5-scene set
    python benchmarks/bench_scenes.py --set-scenes 20 --width 320 --height 240

Prints frames/s of SceneCamera.render (raycast + shading + sensor model) with
one raycasting thread, next to the bare open3d raycast of the same rays as the
baseline (ratio = share of time spent outside Embree), then the wall time of
``video3d_train.scenes_cli.generate`` for a small set (files, annotations,
processed JSON, no figures) and the per-scene time.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import open3d as o3d

from video3d_ros.scenes import RenderConfig, SceneCamera, TrajectoryConfig, generate_scene
from video3d_ros.scenes.writer import WriteConfig
from video3d_train.scenes_cli import GenerateConfig, generate


def bench_render(width: int, height: int, n_frames: int, seeds: list[int]) -> None:
    fps, base_fps = [], []
    for seed in seeds:
        cam = SceneCamera(generate_scene(seed), RenderConfig(width=width, height=height, nthreads=1),
                          TrajectoryConfig(n_frames=n_frames))
        cam.render(0)
        t0 = time.perf_counter()
        for i in range(len(cam)):
            cam.render(i)
        fps.append(len(cam) / (time.perf_counter() - t0))
        r = cam.renderer
        rays = []
        for T in cam.T_world_cam:
            ray = np.empty((width * height, 6), np.float32)
            ray[:, :3] = T[:3, 3]
            ray[:, 3:] = r._dirs_cam @ T[:3, :3].astype(np.float32).T
            rays.append(o3d.core.Tensor(ray))
        t0 = time.perf_counter()
        for ray in rays:
            r._rc.cast_rays(ray, nthreads=1)
        base_fps.append(len(rays) / (time.perf_counter() - t0))
    f, b = float(np.median(fps)), float(np.median(base_fps))
    print(f"render {width}x{height}, 1 thread, {len(seeds)} scenes x {n_frames} frames: "
          f"median {f:.1f} frames/s (min {min(fps):.1f}); bare raycast {b:.1f} frames/s; "
          f"full/bare time ratio {b / f:.2f}")


def bench_set(n_scenes: int, width: int, height: int, n_frames: int, stride: int) -> None:
    cfg = GenerateConfig(num_scenes=n_scenes, seed=0, render=RenderConfig(width=width, height=height, nthreads=1),
                         trajectory=TrajectoryConfig(n_frames=n_frames), write=WriteConfig(frame_stride=stride),
                         figures=False)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        counts = generate(cfg, Path(d), progress=False)
        dt = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in Path(d).rglob("*") if p.is_file()) / 1e6
    per = dt / n_scenes
    print(f"training set: {n_scenes} scenes at {width}x{height}, {n_frames} frames, stride {stride} "
          f"({len(range(0, n_frames, stride))} stored frames/scene), 1 raycast thread: {dt:.1f} s, "
          f"{per:.2f} s/scene, {size_mb / n_scenes:.1f} MB/scene; 200 scenes at this rate: {200 * per / 60:.1f} min")
    print(f"records (train): {counts['train']}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--render-seeds", type=int, default=3)
    p.add_argument("--set-scenes", type=int, default=5)
    p.add_argument("--set-frames", type=int, default=600)
    p.add_argument("--stride", type=int, default=10)
    a = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"open3d {o3d.__version__}")
    bench_render(a.width, a.height, a.frames, list(range(a.render_seeds)))
    bench_set(a.set_scenes, a.width, a.height, a.set_frames, a.stride)


if __name__ == "__main__":
    main()
