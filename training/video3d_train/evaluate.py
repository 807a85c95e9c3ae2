"""Evaluate a checkpoint on the five benchmarks: results JSONL per task, then metrics.

    python -m video3d_train.evaluate --checkpoint runs/tiny/final --data-root data/gen250 \
        --files processed/scanrefer_vg_val_llava_style.json processed/sqa3d_val_llava_style.json \
        --out results/tiny
    torchrun --nproc_per_node 8 -m video3d_train.evaluate --checkpoint ... --out ...  # sharded
    python -m video3d_train.evaluate --metrics-only --out results/tiny   # recompute from files

Per task it writes ``<out>/<task>.jsonl`` (one JSON object per question: id,
question_type, prediction, ground_truth, and for grounding the proposal boxes
and scores (last: "no target"); for captioning the captioned box and its IoU),
then ``metrics.json`` and ``table.md`` computed from those files alone.

Grounding scores come from the same forward the model is trained with (the
hidden state at ``<ground>``); answers and captions from the inference
engine's greedy decoding with the visual-prefix cache (one scene at a time).
Proposals: ``--proposals`` JSON (scene → boxes) or, without it, the scene's
ground-truth boxes. Frames: ``--num-frames`` uniform ones, or with ``--sampling
max-coverage[-0.90|-0.95] --selection-file selection.json`` the paper's
max-coverage picks (a ``video3d-keyframes`` file over the scans).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from video3d_ros.geometry import Box3D, box_iou_matrix
from video3d_ros.keyframes import SamplingStrategy
from video3d_ros.model.checkpoint import load_pretrained, trained_frames_of
from video3d_ros.model.engine import Video3DEngine
from video3d_ros.model.grounding import select_objects
from video3d_ros.model.runtime import detect_runtime

from .cli import run_command
from .data import (
    DataError,
    Sample,
    SceneStore,
    Video3DDataset,
    add_sampling_arguments,
    read_processed,
    read_proposals,
    read_scene_boxes,
    refuse_multi_turn,
    sampling_from_arguments,
)
from .metrics import HEADLINE, Task, markdown_table, task_metrics, type_breakdown_tables
from .step import Video3DForTraining

log = logging.getLogger("video3d_train.evaluate")


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{n}: not a JSON line ({e})") from e
    return out


def _rows(x: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 5) for v in row] for row in np.asarray(x).reshape(-1, 6)]


def best_proposal(gt: np.ndarray, proposals: np.ndarray, threshold: float) -> tuple[int | None, float]:
    """Proposal with the highest IoU ≥ threshold to ``gt`` (6,) and that IoU (best IoU if none)."""
    if len(proposals) == 0:
        return None, 0.0
    iou = box_iou_matrix(gt[None], proposals)[0]
    i = int(np.argmax(iou))
    return (i if iou[i] >= threshold else None), float(iou[i])


def _blinded(encode_frames: Callable) -> Callable:
    """``encode_frames`` whose video tokens (what the LLM reads: content, 3D position,
    newlines) are zeros; the patch features that grounding pools per object are kept."""

    def encode(*args, **kwargs):
        enc = encode_frames(*args, **kwargs)
        return dataclasses.replace(enc, tokens=torch.zeros_like(enc.tokens))

    return encode


class Evaluator:
    """Runs one checkpoint over processed samples, scene by scene."""

    def __init__(self, checkpoint: str | Path, data_root: str | Path, num_frames: int,
                 proposals: dict[str, np.ndarray] | None = None, device: str | None = None,
                 batch_size: int = 8, max_new_tokens: int = 48, blind: bool = False,
                 sampling: SamplingStrategy = SamplingStrategy.UNIFORM,
                 selection_file: str | Path | None = None, groups: int = 1):
        """``groups`` > 1: the engine reads a scene's ``num_frames`` frames as that many
        interleaved groups (``Video3DEngine``'s module docstring), for every task."""
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        if groups > num_frames:
            raise ValueError(f"{groups} keyframe groups need at least as many frames, got {num_frames}")
        self.groups = groups
        self._engine_scene: str | None = None  # the scene whose frames the engine holds
        loaded = load_pretrained(checkpoint, detect_runtime(device))
        self.model, self.tok, self.processor = loaded.model, loaded.tokenizer, loaded.processor
        self.blind = blind
        if blind:
            self.model.encode_frames = _blinded(self.model.encode_frames)
        self.store = SceneStore(data_root, self.processor, num_frames, sampling, selection_file)
        self.dataset = Video3DDataset([], self.store, max_length=1 << 30)
        self.step = Video3DForTraining(self.model, self.tok.pad_token_id)
        self.engine = Video3DEngine(self.model, self.processor, max_new_tokens=max_new_tokens)
        self.proposals = proposals
        self.batch_size = batch_size
        self.data_root = Path(data_root)

    def candidates(self, scene_id: str) -> np.ndarray:
        if self.proposals is not None:
            if scene_id not in self.proposals:
                raise ValueError(f"proposals file has no boxes for scene {scene_id}")
            return self.proposals[scene_id]
        return read_scene_boxes(self.data_root, scene_id).boxes

    @torch.inference_mode()
    def grounding(self, samples: list[Sample]) -> list[dict[str, Any]]:
        if self.groups > 1:
            return self._grounding_in_groups(samples)
        out = []
        for i in range(0, len(samples), self.batch_size):
            chunk = samples[i:i + self.batch_size]
            boxes = [self.candidates(s.scene_id) for s in chunk]
            items = [self.dataset.item(s, with_answer=True, candidates=c)
                     for s, c in zip(chunk, boxes)]
            _, scores, _ = self.step.run(items, with_labels=False)
            out.extend(self._grounding_record(s, boxes[b], scores[b]) for b, s in enumerate(chunk))
        return out

    def _grounding_record(self, s: Sample, boxes: np.ndarray, scores: torch.Tensor) -> dict[str, Any]:
        """One grounding record: the candidates and their (N + 1,) scores, the last for "no
        referent"; for Multi3DRefer also the objects the model's own rule selects (the metric
        reads them)."""
        scores = scores.float().cpu()
        rec = {"id": s.sample_id, "task": s.task.value, "scene_id": s.scene_id,
               "question_type": s.question_type, "prediction": None,
               "ground_truth": None, "gt_boxes": _rows(s.target_boxes),
               "proposal_boxes": _rows(boxes),
               "proposal_scores": [round(float(v), 6) for v in scores]}
        if s.task is Task.MULTI3DREFER:
            g = self.model.config.grounding
            rec["selected"] = select_objects(scores, g.multi_object_selection, g.temperature,
                                             g.multi_object_threshold)
        return rec

    def _grounding_in_groups(self, samples: list[Sample]) -> list[dict[str, Any]]:
        """Grounding through the engine, scene by scene (the batched path reads every
        frame as one sequence)."""
        out = []
        for s in samples:
            self._load_scene(s.scene_id)
            boxes = self.candidates(s.scene_id)
            res = self.engine.ground_prompt(s.prompt, [Box3D(b[:3], b[3:]) for b in boxes],
                                            groups=self.groups)
            scores = torch.from_numpy(np.append(res.scores, res.no_target_score))
            out.append(self._grounding_record(s, boxes, scores))
        return out

    def _load_scene(self, scene_id: str) -> None:
        """Give the engine ``scene_id``'s frames (nothing to do when it holds them already)."""
        if scene_id == self._engine_scene:
            return
        self._engine_scene = None  # until every frame is in
        for k in self.engine.keyframe_ids:
            self.engine.remove_keyframe(k)
        for i, (rgb, xyz, valid) in enumerate(self.store.raw_frames(scene_id)):
            self.engine.add_keyframe(i, rgb, xyz, valid, stamp_s=float(i))
        self._engine_scene = scene_id

    def text(self, samples: list[Sample]) -> list[dict[str, Any]]:
        """QA / situated QA / captions, greedy, grouped by scene (prefix cache reused)."""
        out = []
        g = self.model.config.grounding
        # blind: the question alone — no room's objects either (a model that grounds in its
        # answers would read them from the candidates' features)
        grounds_in_answers = g is not None and g.grounds_in_answers and not self.blind
        for scene_id, group in _by_scene(samples).items():
            self._load_scene(scene_id)
            # a model that grounds the question's object before it answers gets the scene's
            # candidates with a question (Video3DEngine.generate)
            cands = self.candidates(scene_id) if grounds_in_answers else None
            props = None if cands is None else [Box3D(b[:3], b[3:]) for b in cands]
            for s in group:
                rec = {"id": s.sample_id, "task": s.task.value, "scene_id": scene_id,
                       "question_type": s.question_type, "ground_truth": s.references}
                box = None
                if s.task is Task.SCAN2CAP:
                    gt = s.target_boxes[0]
                    if self.proposals is not None:
                        j, iou = best_proposal(gt, self.candidates(scene_id), 0.5)
                        box = None if j is None else self.candidates(scene_id)[j]
                    else:
                        box = s.box_input if s.box_input is not None else gt
                        iou = float(box_iou_matrix(box[None], gt[None])[0, 0])
                    rec.update(gt_box=_rows(gt)[0], matched_iou=round(iou, 6),
                               box=None if box is None else _rows(box)[0])
                    if box is None:
                        rec["prediction"] = ""
                        out.append(rec)
                        continue
                coord = None if box is None else Box3D(box[:3], box[3:])
                question = s.task is not Task.SCAN2CAP
                ans = self.engine.generate(s.prompt, coord_box=coord, groups=self.groups,
                                           proposals=props if question else None)
                rec["prediction"] = ans.text
                if ans.grounded_index is not None:
                    rec["grounded_box"] = _rows(cands[ans.grounded_index])[0]
                if ans.answer_object_index is not None:  # a two-hop model's second object
                    rec["answer_object_box"] = _rows(cands[ans.answer_object_index])[0]
                out.append(rec)
            # scenes are evaluated one after another: drop the decoded frames
            self.store._cache.clear() if self.store._cache is not None else None
        return out


def _by_scene(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Samples by scene, scenes in order of first appearance, samples in their order."""
    by_scene: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_scene[s.scene_id].append(s)
    return by_scene


def evaluate(checkpoint: str | Path, data_root: str | Path, files: list[str], out_dir: str | Path,
             num_frames: int | None = None, proposals_file: str | Path | None = None,
             limit: int | None = None, device: str | None = None,
             progress: bool = True, meteor: bool = True,
             blind: bool = False, sampling: SamplingStrategy = SamplingStrategy.UNIFORM,
             selection_file: str | Path | None = None,
             groups: int = 1) -> dict[str, dict[str, float]]:
    """Write results JSONL per task (sharded over torchrun ranks) and return the metrics.

    ``num_frames`` None: as many as the checkpoint was trained with (its config.json), times
    ``groups`` (> 1: read in that many interleaved groups; ``Evaluator``).
    ``blind``: the LLM gets zeros for every video token, and a model that grounds in its
    answers no candidates — a diagnostic: how much of a score the model gets without looking
    at the scene (text prior only).
    """
    from accelerate import PartialState

    if num_frames is None:
        num_frames = trained_frames_of(checkpoint) * groups
    log.info("%d frames per scene, %s, %d group(s)", num_frames, sampling.value, groups)

    state = PartialState(cpu=device == "cpu")
    out = Path(out_dir)
    props = read_proposals(proposals_file) if proposals_file else None
    ev = Evaluator(checkpoint, data_root, num_frames, props, device, blind=blind,
                   sampling=sampling, selection_file=selection_file, groups=groups)
    for f in files:
        samples, _ = read_processed(Path(data_root) / f)
        refuse_multi_turn(samples)
        samples = subset(samples, limit)
        task = samples[0].task
        mine = samples[state.process_index::state.num_processes]
        log.info("%s: %d samples (%d on this rank)", task.value, len(samples), len(mine))
        run: Callable = ev.grounding if task.is_grounding else ev.text
        recs = []
        # grounding in batches of 32 questions; text one scene at a time (Evaluator.text reads
        # a scene's questions together): either way the bar moves as the work does
        chunks = [mine[i:i + 32] for i in range(0, len(mine), 32)] if task.is_grounding \
            else list(_by_scene(mine).values())
        for c in tqdm(chunks, desc=task.value, unit="batch" if task.is_grounding else "scene",
                      disable=not (progress and state.is_main_process)):
            recs.extend(run(c))
        write_jsonl(out / f"{task.value}.rank{state.process_index}.jsonl", recs)
        state.wait_for_everyone()
        if state.is_main_process:
            merged = []
            for r in range(state.num_processes):
                part = out / f"{task.value}.rank{r}.jsonl"
                merged.extend(read_jsonl(part))
                part.unlink()
            write_jsonl(out / f"{task.value}.jsonl", merged)
        state.wait_for_everyone()
    return metrics_from_dir(out, meteor) if state.is_main_process else {}


def subset(samples: list[Sample], limit: int | None, seed: int = 0) -> list[Sample]:
    """A seeded subset of at most ``limit`` questions (whole ScanQA questions kept once)."""
    if samples and samples[0].task is Task.SCANQA:  # one record per question
        seen, uniq = set(), []
        for s in samples:
            key = s.sample_id.rsplit("_", 1)[0]
            if key not in seen:
                seen.add(key)
                uniq.append(s)
        samples = uniq
    if limit is None or len(samples) <= limit:
        return samples
    idx = np.sort(np.random.default_rng(seed).choice(len(samples), limit, replace=False))
    return [samples[i] for i in idx]


def metrics_from_dir(out: str | Path, meteor: bool = True) -> dict[str, dict[str, float]]:
    """Metrics of every ``<task>.jsonl`` in ``out``; writes metrics.json and table.md."""
    out = Path(out)
    res = {}
    for t in Task:
        p = out / f"{t.value}.jsonl"
        if p.exists():
            res[t.value] = task_metrics(t, read_jsonl(p), meteor=meteor)
    (out / "metrics.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "table.md").write_text(tables({out.name: {Task(k): v for k, v in res.items()}}))
    return res


def tables(rows: dict[str, dict[Task, dict[str, float]]]) -> str:
    """The headline table, then the per-type tables of the tasks that have types."""
    by_type = type_breakdown_tables(rows)
    return markdown_table(rows) + "\n" + (f"\n{by_type}\n" if by_type else "")


def compare_table(named_dirs: list[str]) -> str:
    """Markdown table across systems from ``NAME=DIR`` result folders (their metrics.json)."""
    rows = {}
    for item in named_dirs:
        name, sep, d = item.partition("=")
        if not (name and sep and d):
            raise DataError(f"--compare {item!r}: expected NAME=DIR")
        path = Path(d) / "metrics.json"
        try:
            m = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: cannot read the metrics of {name!r} ({e})") from e
        rows[name] = {Task(k): v for k, v in m.items()}
    return tables(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, help="model directory (config.json + safetensors)")
    p.add_argument("--data-root", type=Path)
    p.add_argument("--files", nargs="+", default=[], help="processed JSON files under data root")
    p.add_argument("--out", type=Path)
    p.add_argument("--num-frames", type=int, default=None,
                   help="frames per scene (default: as many as the checkpoint was trained with, "
                        "times --keyframe-groups)")
    p.add_argument("--keyframe-groups", type=int, default=1,
                   help="read the frames as this many interleaved groups, each its own sequence, "
                        "and average their next-token log-probabilities / grounding scores "
                        "(1: one pass, the paper's)")
    add_sampling_arguments(p)
    p.add_argument("--proposals", type=Path, default=None, help="scene → boxes JSON")
    p.add_argument("--limit", type=int, default=None, help="at most N questions per task")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--metrics-only", action="store_true", help="recompute from the JSONL files")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")
    p.add_argument("--blind", action="store_true",
                   help="diagnostic: zeros instead of the video tokens the LLM reads (the "
                        "score without looking at the scene)")
    p.add_argument("--compare", nargs="+", metavar="NAME=DIR",
                   help="print one Markdown table across result folders and exit")
    args = p.parse_args(argv)
    return run_command("video3d-eval", lambda: _run(p, args))


def _run(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.compare:
        print(compare_table(args.compare))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is None:
        p.error("--out is required")
    if not args.metrics_only:
        if not (args.checkpoint and args.data_root and args.files):
            p.error("--checkpoint, --data-root and --files are required unless --metrics-only")
        sampling = sampling_from_arguments(p, args)
        res = evaluate(args.checkpoint, args.data_root, args.files, args.out, args.num_frames,
                       args.proposals, args.limit, args.device, meteor=not args.no_meteor,
                       blind=args.blind, sampling=sampling,
                       selection_file=args.selection_file, groups=args.keyframe_groups)
    else:
        res = metrics_from_dir(args.out, meteor=not args.no_meteor)
    for task, m in res.items():
        head = {k: round(m[k], 2) for k in HEADLINE[Task(task)] if k in m}
        print(task, head)
    return 0


if __name__ == "__main__":
    sys.exit(main())
