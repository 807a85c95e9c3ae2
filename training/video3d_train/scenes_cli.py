"""video3d-scenes: generate rooms, render them to ScanNet layout, write all five benchmarks.

    video3d-scenes --num-scenes 20 --seed 0 --out data/generated
    video3d-scenes --num-scenes 200 --width 320 --height 240 --frames 600 --stride 10 --out data/gen200
    video3d-scenes --num-scenes 200 --out data/gen200 --annotations-only   # rewrite the questions only

Output folder::

    scannet/posed_images|scans|pcd_with_object_aabbs/...      (see video3d_ros.scenes.writer)
    benchmark/scanrefer/ScanRefer_filtered_{train,val}.json
    benchmark/multi3drefer/multi3drefer_{train,val}.json
    benchmark/scanqa/ScanQA_v1.0_{train,val}.json
    benchmark/sqa_task/balanced/v1_balanced_{questions,sqa_annotations}_{train,val}_scannetv2.json
    processed/<benchmark>_{train,val}_llava_style.json       (video3d_train.convert)
    figures/<scene_id>_topdown.png, <scene_id>_frames.png

Scenes are split by scene: the last ``--val-fraction`` of them are val.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from video3d_ros.scenes import RenderConfig, SceneConfig, TrajectoryConfig, generate_scene
from video3d_ros.scenes.annotations import all_records
from video3d_ros.scenes.writer import WriteConfig, write_scene

from . import convert as cv

SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """What ``video3d-scenes`` generates."""

    num_scenes: int = 10
    seed: int = 0
    val_fraction: float = 0.2
    render: RenderConfig = RenderConfig()
    trajectory: TrajectoryConfig = TrajectoryConfig()
    write: WriteConfig = WriteConfig()
    scene: SceneConfig = SceneConfig()
    figures: bool = True

    def __post_init__(self) -> None:
        if self.num_scenes < 1:
            raise ValueError(f"num_scenes must be >= 1, got {self.num_scenes}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction {self.val_fraction} outside [0, 1)")

    def split_of(self, index: int) -> str:
        n_val = round(self.num_scenes * self.val_fraction)
        return "val" if index >= self.num_scenes - n_val else "train"

    def scene_seed(self, index: int) -> int:
        return self.seed * 1_000_003 + index


class OutputMismatch(Exception):
    """An existing output is not the one ``--annotations-only`` was told it is."""


def check_rendered(out: Path, scene_id: str, seed: int, split: str) -> None:
    """Raise :class:`OutputMismatch` unless ``out`` holds room ``scene_id`` rendered from
    ``seed`` into ``split`` (its scene-graph file records the seed; the split is the
    folder of its point cloud)."""
    graph = out / "scannet" / "scans" / scene_id / f"{scene_id}_objects.json"
    written_seed = json.loads(graph.read_text()).get("seed") if graph.is_file() else None
    if written_seed != seed:
        raise OutputMismatch(f"--annotations-only: {graph} is of room seed {written_seed}, "
                             f"this --seed makes {seed}")
    cloud = out / "scannet" / "pcd_with_object_aabbs" / split / f"{scene_id}.npz"
    if not cloud.is_file():
        raise OutputMismatch(f"--annotations-only: {cloud} does not exist; was {scene_id} "
                             f"generated with another --val-fraction?")


def generate(cfg: GenerateConfig, out: Path, progress: bool = True,
             annotations_only: bool = False) -> dict[str, dict[str, int]]:
    """Generate everything under ``out``; returns record counts per split and file kind.

    ``annotations_only``: rebuild the rooms from their seeds and rewrite only
    ``benchmark/`` and ``processed/`` (no rendering, no figures) — for an existing
    output generated with the same ``num_scenes``/``seed``/``val_fraction``, after the
    question templates changed. The annotations depend on the rooms alone, not on
    the camera or image settings.
    """
    out = Path(out)
    raw: dict[str, dict[str, list]] = {s: {k: [] for k in ("scanrefer", "multi3drefer", "scanqa",
                                                          "sqa3d_questions", "sqa3d_annotations")} for s in SPLITS}
    boxes: dict[str, dict[str, list[float]]] = {}
    n_stored = len(range(0, cfg.trajectory.n_frames, cfg.write.frame_stride))
    if annotations_only:
        rooms = out / "scannet" / "posed_images"
        found = sum(1 for p in rooms.iterdir() if p.is_dir()) if rooms.is_dir() else 0
        if found != cfg.num_scenes:  # fewer would drop rooms' questions, more would invent them
            raise OutputMismatch(f"--annotations-only: {rooms} holds {found} rooms, "
                                 f"--num-scenes says {cfg.num_scenes}")
        bar = tqdm(total=cfg.num_scenes, unit="scene", disable=not progress, desc="annotating")
    else:
        bar = tqdm(total=cfg.num_scenes * n_stored, unit="frame", disable=not progress, desc="rendering")
    for i in range(cfg.num_scenes):
        split = cfg.split_of(i)
        scene = generate_scene(cfg.scene_seed(i), f"scene{i:04d}_00", cfg.scene)
        if annotations_only:
            check_rendered(out, scene.scene_id, scene.seed, split)
            bar.update(1)
        else:
            files = write_scene(scene, out, split=split, render_config=cfg.render,
                                trajectory_config=cfg.trajectory, write_config=cfg.write,
                                on_frame=lambda _: bar.update(1))
        boxes[scene.scene_id] = {str(o.object_id): o.box6 for o in scene.objects}
        recs = all_records(scene, split, sqa_base_question_id=len(raw[split]["sqa3d_questions"]) + 1_000_000 * i)
        for k, g in recs.items():
            raw[split][k].extend(g.records)
        if cfg.figures and not annotations_only:
            from video3d_ros.scenes.figures import contact_sheet, plot_top_down
            from video3d_ros.scenes.trajectory import scan_trajectory

            fig_dir = out / "figures"
            fig_dir.mkdir(parents=True, exist_ok=True)
            plot_top_down(scene, scan_trajectory(scene, cfg.trajectory), fig_dir / f"{scene.scene_id}_topdown.png",
                          list(files.frame_ids))
            contact_sheet(sorted((files.posed_dir / "color").glob("*.jpg")), fig_dir / f"{scene.scene_id}_frames.png")
        bar.set_postfix(scene=scene.scene_id)
    bar.close()

    counts: dict[str, dict[str, int]] = {}
    bench = out / "benchmark"
    for s in SPLITS:
        r = raw[s]
        cv.write_json(bench / "scanrefer" / f"ScanRefer_filtered_{s}.json", r["scanrefer"])
        cv.write_json(bench / "multi3drefer" / f"multi3drefer_{s}.json", r["multi3drefer"])
        cv.write_json(bench / "scanqa" / f"ScanQA_v1.0_{s}.json", r["scanqa"])
        bal = bench / "sqa_task" / "balanced"
        cv.write_json(bal / f"v1_balanced_questions_{s}_scannetv2.json", {"questions": r["sqa3d_questions"]})
        cv.write_json(bal / f"v1_balanced_sqa_annotations_{s}_scannetv2.json", {"annotations": r["sqa3d_annotations"]})
        processed = convert_generated(out, s, boxes)
        counts[s] = {b.value: len(v) for b, v in processed.items()}
    return counts


def convert_generated(out: Path, split: str, boxes: cv.Boxes) -> dict[cv.Benchmark, list[dict]]:
    """Read the annotation files just written and convert them with video3d_train.convert."""
    bench = Path(out) / "benchmark"

    def load(p: Path):
        return json.loads(p.read_text())

    scanrefer = load(bench / "scanrefer" / f"ScanRefer_filtered_{split}.json")
    bal = bench / "sqa_task" / "balanced"
    processed = {
        cv.Benchmark.SCANREFER: cv.convert_scanrefer(scanrefer, boxes),
        cv.Benchmark.MULTI3DREFER: cv.convert_multi3drefer(load(bench / "multi3drefer" / f"multi3drefer_{split}.json"),
                                                           boxes),
        cv.Benchmark.SCAN2CAP: cv.convert_scan2cap(scanrefer, boxes, split=split),
        cv.Benchmark.SCANQA: cv.convert_scanqa(load(bench / "scanqa" / f"ScanQA_v1.0_{split}.json")),
        cv.Benchmark.SQA3D: cv.convert_sqa3d(load(bal / f"v1_balanced_questions_{split}_scannetv2.json"),
                                             load(bal / f"v1_balanced_sqa_annotations_{split}_scannetv2.json"),
                                             split=split),
    }
    for b, recs in processed.items():
        for r in recs:
            cv.validate_processed(r)
        cv.write_json(Path(out) / "processed" / cv.processed_filename(b, split), recs)
    return processed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-scenes", description=__doc__.split("\n\n")[0])
    p.add_argument("--num-scenes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--frames", type=int, default=600, help="frames of the 30 Hz scan per scene")
    p.add_argument("--stride", type=int, default=10, help="keep one frame in this many")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=0, help="raycasting threads (0: all cores)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--annotations-only", action="store_true",
                   help="rewrite benchmark/ and processed/ of an existing output (same --num-scenes, "
                        "--seed, --val-fraction) without rendering")
    a = p.parse_args(argv)
    try:
        cfg = GenerateConfig(num_scenes=a.num_scenes, seed=a.seed, val_fraction=a.val_fraction,
                             render=RenderConfig(width=a.width, height=a.height, nthreads=a.threads),
                             trajectory=TrajectoryConfig(n_frames=a.frames), write=WriteConfig(frame_stride=a.stride),
                             figures=not a.no_figures)
    except ValueError as e:
        p.error(str(e))
    t0 = time.perf_counter()
    try:
        counts = generate(cfg, a.out, annotations_only=a.annotations_only)
    except OutputMismatch as e:
        p.error(str(e))
    dt = time.perf_counter() - t0
    print(json.dumps({"scenes": cfg.num_scenes, "seconds": round(dt, 1), "records": counts}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
