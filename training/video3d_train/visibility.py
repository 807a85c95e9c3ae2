"""Which questions can be answered from the frames the model sees? (generated rooms)

A question's objects (``object_ids`` of the ScanQA / ScanRefer-style annotation file) are
*visible* when each covers at least ``--min-pixels`` pixels of one of the frames the
model is given (the same frame sampling as training and evaluation). Generated rooms store
per-pixel instance masks, so this is exact. With a results file of ``video3d-eval``, exact
match is split by visibility: the part of a QA score that no model could reach from
those frames.

    python -m video3d_train.visibility --data-root data/gen250 \
        --annotations benchmark/scanqa/ScanQA_v1.0_val.json --frames 8 \
        --results results/phase5/scanqa.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from video3d_ros.keyframes.sampling import SamplingStrategy

from .data import (
    DataError,
    add_sampling_arguments,
    read_selection,
    sampled_frame_numbers,
    sampling_from_arguments,
)
from .metrics import scanqa_metrics


def frame_masks(root: Path, scene_id: str, num_frames: int,
                sampling: SamplingStrategy = SamplingStrategy.UNIFORM,
                selection: dict[str, dict] | None = None) -> list[np.ndarray]:
    """Instance masks (object_id + 1; 0 = nothing) of the frames evaluation samples."""
    scan = root / "scannet" / "posed_images" / scene_id
    out = []
    for n in sampled_frame_numbers(scan, num_frames, sampling, selection):
        path = scan / "instance" / f"{n:05d}.png"
        try:
            with Image.open(path) as im:
                out.append(np.asarray(im))
        except OSError as e:
            raise DataError(f"{path}: {e} (only generated rooms have instance masks)") from e
    return out


def visible_pixels(masks: list[np.ndarray], object_ids: list[int]) -> list[int]:
    """For each object, its largest pixel count in any one of ``masks``."""
    return [max((int((m == oid + 1).sum()) for m in masks), default=0) for oid in object_ids]


def visibility(root: str | Path, annotations: list[dict], num_frames: int,
               min_pixels: int, sampling: SamplingStrategy = SamplingStrategy.UNIFORM,
               selection: dict[str, dict] | None = None) -> dict[str, bool]:
    """question id → whether all its objects are visible (see the module docstring)."""
    root = Path(root)
    cache: dict[str, list[np.ndarray]] = {}
    out = {}
    for a in annotations:
        sid = a["scene_id"]
        if sid not in cache:
            cache[sid] = frame_masks(root, sid, num_frames, sampling, selection)
        ids = [int(i) for i in a.get("object_ids") or []]
        out[str(a["question_id"])] = bool(ids) and min(visible_pixels(cache[sid], ids)) >= min_pixels
    return out


def question_id(record_id: str) -> str:
    """Question id of a ``video3d-eval`` record id (``<task>_<question_id>_<n>``)."""
    return record_id.split("_", 1)[1].rsplit("_", 1)[0]


def split_by_visibility(records: list[dict], visible: dict[str, bool]) -> dict[str, dict]:
    """ScanQA metrics of the records whose question is / is not visible.

    Record ids are ``<task>_<question_id>_<n>`` as ``video3d-eval`` writes them.
    """
    groups: dict[str, list[dict]] = {"visible": [], "not visible": []}
    for r in records:
        qid = question_id(r["id"])
        if qid not in visible:
            raise KeyError(f"result {r['id']!r}: question {qid!r} is not in the annotations")
        groups["visible" if visible[qid] else "not visible"].append(r)
    return {k: {"questions": len(v), **({"em": scanqa_metrics(v, meteor=False)["em"]}
                                         if v else {})} for k, v in groups.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-visibility", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, type=Path)
    p.add_argument("--annotations", required=True,
                   help="annotation file with object_ids per question (under --data-root)")
    p.add_argument("--frames", type=int, default=8, help="frames per scene")
    add_sampling_arguments(p)
    p.add_argument("--min-pixels", type=int, default=20)
    p.add_argument("--results", help="a video3d-eval results file to split by visibility")
    args = p.parse_args(argv)
    path = args.data_root / args.annotations
    try:
        annotations = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        p.error(f"cannot read {path}: {e}")
    sampling = sampling_from_arguments(p, args)
    try:
        selection = read_selection(args.selection_file) if args.selection_file else None
        vis = visibility(args.data_root, annotations, args.frames, args.min_pixels, sampling,
                         selection)
    except DataError as e:
        p.error(str(e))
    if args.results:
        try:
            records = [json.loads(line) for line in Path(args.results).read_text().splitlines()
                       if line.strip()]
        except (OSError, json.JSONDecodeError) as e:
            p.error(f"cannot read {args.results}: {e}")
        asked = {question_id(r["id"]) for r in records}
        vis = {q: v for q, v in vis.items() if q in asked}
        for k, v in split_by_visibility(records, vis).items():
            em = f", EM {v['em']:.1f}" if "em" in v else ""
            print(f"{k}: {v['questions']} questions{em}")
    n = len(vis)
    print(f"{sum(vis.values())} of {n} questions ({100.0 * sum(vis.values()) / max(n, 1):.1f} %) "
          f"have every object at >= {args.min_pixels} px in one of {args.frames} frames "
          f"({sampling.value})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
