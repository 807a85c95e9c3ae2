"""Keyframe and geometry benchmarks; every figure is printed next to a baseline run
in the same process (ratios, because machines are noisy).

    taskset -c 0 python benchmarks/bench_keyframes.py            # all parts
    taskset -c 0 python benchmarks/bench_keyframes.py --part offline --frames 1000

Parts:
  ingest   640×480 frames at pixel stride 4 into RollingKeyframeBuffer (K = 32) vs a
           plain set-based buffer with the same policy; plus unprojection time.
  offline  greedy max coverage (sparse incidence, incremental gains) on an N-frame scan
           vs a plain set-based greedy with the same seeded tie rule; checks identical
           gains after every pick.
  online   one pass of the rolling buffer over the scan vs offline greedy at the same K.
  memory   bytes per keyframe and for a full K = 32 buffer at 640×480.
The scan is analytic (bench_keyframes_scene.py): a camera looping through a box room.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_keyframes_scene import make_scan  # noqa: E402

from video3d_ros.keyframes.reference import set_greedy
from video3d_ros.geometry import depth_to_world_m, voxel_keys  # noqa: E402
from video3d_ros.keyframes import (  # noqa: E402
    BufferConfig,
    Frame,
    RollingKeyframeBuffer,
    select_frames,
)


# ---------------------------------------------------------------- baselines
class SetBuffer:
    """Straightforward buffer with the same policy, recomputing unions from Python sets."""

    def __init__(self, capacity: int, voxel_size_m: float, pixel_stride: int) -> None:
        self.capacity, self.voxel_size_m, self.stride = capacity, voxel_size_m, pixel_stride
        self.kf: list[tuple[int, float, set]] = []

    def insert(self, frame: Frame) -> None:
        keys = set(voxel_keys(frame.xyz_m, frame.valid, self.voxel_size_m, self.stride).tolist())
        union = set().union(*[s for _, _, s in self.kf])
        new = len(keys - union)
        if new == 0:
            return
        if len(self.kf) < self.capacity:
            self.kf.append((frame.frame_id, frame.stamp_s, keys))
            return
        losses = []
        for i, (_, stamp, s) in enumerate(self.kf):
            others = set().union(*[t for j, (_, _, t) in enumerate(self.kf) if j != i])
            losses.append((len(s - others - keys), stamp, i))
        loss, _, i = min(losses)
        if new - loss >= 1:
            self.kf[i] = (frame.frame_id, frame.stamp_s, keys)

    @property
    def covered_voxels(self) -> int:
        return len(set().union(*[s for _, _, s in self.kf]))



def frames_of(scan, stride_note=""):
    out = []
    for i in range(len(scan.depth_m)):
        pm = depth_to_world_m(scan.depth_m[i], scan.K, scan.T_world_cam[i])
        out.append(Frame(i, float(scan.stamps_s[i]), scan.rgb[i], pm.xyz_m, pm.valid, scan.T_world_cam[i]))
    return out


def part_ingest(n_frames: int) -> None:
    scan = make_scan(n_frames=n_frames, height_px=480, width_px=640, seed=0)
    t0 = time.perf_counter()
    frames = frames_of(scan)
    unproject_ms = (time.perf_counter() - t0) / n_frames * 1e3
    cfg = BufferConfig(capacity=32, pixel_stride=4)
    buf = RollingKeyframeBuffer(cfg)
    t0 = time.perf_counter()
    for f in frames:
        buf.insert(f)
    ours = (time.perf_counter() - t0) / n_frames
    base = SetBuffer(32, cfg.voxel_size_m, cfg.pixel_stride)
    t0 = time.perf_counter()
    for f in frames:
        base.insert(f)
    theirs = (time.perf_counter() - t0) / n_frames
    print(f"[ingest] {n_frames} frames 640x480, stride 4, K=32 ({len(buf)} keyframes kept)")
    print(f"  RollingKeyframeBuffer.insert: {ours * 1e3:7.2f} ms/frame = {1 / ours:7.0f} frames/s")
    print(f"  set-based baseline          : {theirs * 1e3:7.2f} ms/frame = {1 / theirs:7.0f} frames/s")
    print(f"  speed-up {theirs / ours:.1f}x; covered voxels ours {buf.covered_voxels}, baseline {base.covered_voxels}")
    print(f"  (unprojection depth_to_world_m, not part of insert: {unproject_ms:.2f} ms/frame)")


def scan_voxel_sets(n_frames: int, h: int, w: int):
    scan = make_scan(n_frames=n_frames, height_px=h, width_px=w, seed=0)
    frames = frames_of(scan)
    sets = [voxel_keys(f.xyz_m, f.valid, 0.1) for f in frames]
    return frames, sets


def part_offline(frames, sets, budget: int, seed: int) -> dict:
    nnz = sum(len(s) for s in sets)
    t0 = time.perf_counter()
    res = select_frames(sets, "max-coverage", budget, seed=seed)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    order, gains = set_greedy(sets, budget, seed)
    theirs = time.perf_counter() - t0
    same = list(res.pick_order) == order and list(res.gains) == gains
    print(f"[offline] {len(sets)} frames, {nnz} frame-voxel pairs, budget {budget}, seed {seed}")
    print(f"  sparse incidence greedy: {ours * 1e3:8.1f} ms (incl. building the incidence)")
    print(f"  set-based greedy       : {theirs * 1e3:8.1f} ms")
    print(f"  speed-up {theirs / ours:.1f}x; identical picks and gains after every pick: {same}")
    print(f"  coverage {res.selected_voxels}/{res.total_voxels} = {res.coverage_ratio:.3f}")
    if not same:
        raise SystemExit("offline: greedy results differ from the baseline")
    return {"greedy": res}


def part_online(frames, sets, capacity: int, greedy) -> None:
    for stride_cfg in (BufferConfig(capacity=capacity, pixel_stride=1),):
        buf = RollingKeyframeBuffer(stride_cfg)
        for f in frames:
            buf.insert(f)
        union = np.unique(np.concatenate([sets[i] for i in buf.snapshot().frame_ids]))
        ratio = len(union) / greedy.selected_voxels
        print(f"[online] one pass over {len(frames)} frames, K={capacity}, same voxels (0.1 m, all pixels)")
        print(f"  rolling buffer covers {len(union)} voxels; offline greedy {greedy.selected_voxels}")
        print(f"  online / offline = {ratio:.3f}  (all coverable: {greedy.total_voxels})")


def part_memory(capacity: int) -> None:
    scan = make_scan(n_frames=capacity * 3, height_px=480, width_px=640, seed=2)
    frames = frames_of(scan)
    buf = RollingKeyframeBuffer(BufferConfig(capacity=capacity, pixel_stride=4))
    tracemalloc.start()
    for f in frames:
        buf.insert(f)
    own, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    snap = buf.snapshot()
    arrays = sum(k.nbytes for k in snap.keyframes)
    n = len(snap)
    print(f"[memory] 640x480, K={capacity}: {n} keyframes held")
    print(f"  frame arrays (rgb uint8 + xyz float32 + valid bool + pose): {arrays / n / 2**20:.2f} MiB per keyframe")
    print(f"  buffer bookkeeping (voxel lists, refcount dict; tracemalloc): {own / 2**20:.2f} MiB total, "
          f"{own / n / 2**10:.0f} KiB per keyframe")
    print(f"  total for K={n}: {(arrays + own) / 2**20:.1f} MiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("ingest", "offline", "online", "memory", "all"), default="all")
    p.add_argument("--frames", type=int, default=1000, help="frames of the offline/online scan")
    p.add_argument("--ingest-frames", type=int, default=120)
    p.add_argument("--scan-height", type=int, default=120, help="offline scan depth height (px)")
    p.add_argument("--scan-width", type=int, default=160)
    p.add_argument("--budget", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.part in ("ingest", "all"):
        part_ingest(a.ingest_frames)
    if a.part in ("offline", "online", "all"):
        t0 = time.perf_counter()
        frames, sets = scan_voxel_sets(a.frames, a.scan_height, a.scan_width)
        print(f"(rendered and voxelised {a.frames} frames of {a.scan_width}x{a.scan_height} in "
              f"{time.perf_counter() - t0:.1f} s)")
        out = part_offline(frames, sets, a.budget, a.seed)
        if a.part in ("online", "all"):
            part_online(frames, sets, a.budget, out["greedy"])
    if a.part in ("memory", "all"):
        part_memory(32)


if __name__ == "__main__":
    main()
