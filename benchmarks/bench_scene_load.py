"""Time to load a training scene (frames → model tensors + every object's cell masks).

    python benchmarks/bench_scene_load.py                       # 12 generated rooms, 16 frames
    python benchmarks/bench_scene_load.py --data-root data/gen2400_s2 --rooms 40 --frames 8

``SceneStore.load`` decodes a room's sampled frames, crops them for the model and marks,
for every object box, the cells inside it (the grounding targets). The cell masks are
computed with ``CellIndex`` (each cell's bounds once, pixels only where a box face cuts
the cell); the baseline is the per-box, pixel-by-pixel ``inside_cells`` loop it replaced,
run on the same rooms in the same process, alternating room by room. The masks are
compared for equality. Without ``--data-root`` the rooms are generated first into a
temporary folder (``video3d-scenes``, 160×120, as the embedded model's training data).
One thread for torch and OpenMP; the embedded model's processor (112 px crops, 8×8 cells).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from video3d_ros.geometry import Box3D  # noqa: E402
from video3d_ros.model.checkpoint import load_pretrained  # noqa: E402
from video3d_ros.model.object_features import inside_cells  # noqa: E402
from video3d_train.data import SceneStore  # noqa: E402

DEFAULT_MODEL = (Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "video3d_ros"
                 / "video3d_ros" / "default_model")


class PerBoxSceneStore(SceneStore):
    """The baseline: every box tested against every pixel (the code before CellIndex)."""

    def masks_for(self, xyz: np.ndarray, valid: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        cell, per = self.mask_cells()
        fraction = self.config.grounding.inside_fraction
        out = np.zeros((len(boxes), xyz.shape[0], per, per), bool)
        for i, b in enumerate(boxes):
            out[i] = inside_cells(xyz, valid, Box3D(b[:3], b[3:]), cell, per, fraction)
        return out


def generate_rooms(out: Path, rooms: int) -> None:
    """``rooms`` generated rooms (seed 0) in the ScanNet layout, as ``video3d-scenes`` writes them."""
    from video3d_ros.scenes import RenderConfig, TrajectoryConfig
    from video3d_ros.scenes.writer import WriteConfig
    from video3d_train.scenes_cli import GenerateConfig, generate

    cfg = GenerateConfig(num_scenes=rooms, seed=0, val_fraction=0.0,
                         render=RenderConfig(width=160, height=120, nthreads=1),
                         trajectory=TrajectoryConfig(n_frames=320),
                         write=WriteConfig(frame_stride=20), figures=False)
    generate(cfg, out, progress=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=None,
                   help="posed-images data root (default: generate --rooms rooms first)")
    p.add_argument("--rooms", type=int, default=12)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = p.parse_args()
    torch.set_num_threads(1)
    loaded = load_pretrained(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if root is None:
            root = Path(tmp) / "rooms"
            generate_rooms(root, args.rooms)
        scenes = sorted(d.name for d in (root / "scannet" / "posed_images").iterdir())[:args.rooms]
        new = SceneStore(root, loaded.processor, args.frames, max_scenes=0)
        old = PerBoxSceneStore(root, loaded.processor, args.frames, max_scenes=0)
        for store in (new, old):  # warm-up (imports, first allocations)
            store.load(scenes[0])
        t_new, t_old, boxes = [], [], 0
        for sid in scenes:
            t0 = time.perf_counter()
            a = new.load(sid)
            t1 = time.perf_counter()
            b = old.load(sid)
            t2 = time.perf_counter()
            t_new.append(t1 - t0)
            t_old.append(t2 - t1)
            if not np.array_equal(a.object_masks, b.object_masks):
                raise SystemExit(f"{sid}: masks differ between CellIndex and the per-box loop")
            boxes += len(a.objects.boxes)
    med_new, med_old = statistics.median(t_new), statistics.median(t_old)
    print(f"{len(scenes)} rooms, {args.frames} frames each, {boxes} object boxes; masks equal")
    print(f"{'':28s}{'median ms/room':>16s}{'total s':>10s}")
    print(f"{'per-box loop (baseline)':28s}{med_old * 1e3:16.1f}{sum(t_old):10.2f}")
    print(f"{'CellIndex (SceneStore)':28s}{med_new * 1e3:16.1f}{sum(t_new):10.2f}")
    print(f"speed-up (median): {med_old / med_new:.2f}x")


if __name__ == "__main__":
    main()
