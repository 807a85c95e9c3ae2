"""Trivial baselines, written as results JSONL files like a model's, scored by the same code.

    python -m video3d_train.baselines --data-root data/gen250 --out results/baselines \
        --train-files processed/...train... --val-files processed/...val...

Each baseline's records and metrics go to ``<out>/<baseline>/`` (as ``video3d-eval`` writes
a model's); ``<out>/table.md`` (also printed) holds them all side by side, with the per-type
tables.

- ``random_proposal``: grounding scores drawn uniformly at random (seeded) for
  every proposal and for the "no target" entry.
- ``most_frequent``: per question type, the most frequent training answer
  (SQA3D: its question types; ScanQA: the question's first word).
- ``question_prior``: the most frequent training answer to the very same question text
  (whitespace and case normalised), else ``most_frequent``'s answer: what a text-only model
  can learn from the training set without looking at any scene.
- ``nearest_template``: Scan2Cap caption of the training object whose box size
  is nearest to the queried box's (no image used).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .cli import run_command
from .data import Sample, read_processed, read_scene_boxes, refuse_multi_turn, single_turns
from .evaluate import _rows, metrics_from_dir, subset, tables, write_jsonl
from .metrics import Task


def qa_type(s: Sample) -> str:
    """Question type used by the most-frequent-answer baseline."""
    if s.task is Task.SQA3D and s.question_type:
        return s.question_type
    words = s.prompt.split()
    return words[0].lower() if words else ""


def top_answer(counts: Counter) -> str:
    """The most frequent answer; a tie goes to the alphabetically first, so the baselines do
    not depend on the order of the training samples (a packed file deals them anew)."""
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def most_frequent_answers(train: list[Sample]) -> dict[tuple[Task, str], str]:
    counts: dict[tuple[Task, str], Counter] = defaultdict(Counter)
    for s in train:
        counts[(s.task, qa_type(s))][s.answer] += 1
    return {k: top_answer(c) for k, c in counts.items()}


def question_key(s: Sample) -> tuple[Task, str]:
    return s.task, " ".join(s.prompt.lower().split())


def question_prior_records(val: list[Sample], train: list[Sample],
                           fallback: dict[tuple[Task, str], str]) -> list[dict]:
    counts: dict[tuple[Task, str], Counter] = defaultdict(Counter)
    for s in train:
        counts[question_key(s)][s.answer] += 1
    recs = most_frequent_records(val, fallback)
    for s, r in zip(val, recs):
        c = counts.get(question_key(s))
        if c:
            r["prediction"] = top_answer(c)
    return recs


def random_proposal_records(val: list[Sample], root: Path, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for s in val:
        boxes = read_scene_boxes(root, s.scene_id).boxes
        out.append({"id": s.sample_id, "task": s.task.value, "question_type": s.question_type,
                    "prediction": None, "ground_truth": None, "gt_boxes": _rows(s.target_boxes),
                    "proposal_boxes": _rows(boxes),
                    "proposal_scores": rng.uniform(-1, 1, len(boxes) + 1).round(6).tolist()})
    return out


def most_frequent_records(val: list[Sample], table: dict[tuple[Task, str], str]) -> list[dict]:
    overall: dict[Task, str] = {}
    for (task, _), ans in table.items():
        overall.setdefault(task, ans)
    return [{"id": s.sample_id, "task": s.task.value, "question_type": s.question_type,
             "prediction": table.get((s.task, qa_type(s)), overall.get(s.task, "")),
             "ground_truth": s.references} for s in val]


def nearest_template_records(val: list[Sample], train: list[Sample]) -> list[dict]:
    sizes = np.stack([s.target_boxes[0, 3:] for s in train])  # (T, 3)
    out = []
    for s in val:
        box = s.box_input if s.box_input is not None else s.target_boxes[0]
        j = int(np.argmin(np.linalg.norm(sizes - box[3:], axis=1)))
        out.append({"id": s.sample_id, "task": s.task.value, "question_type": s.question_type,
                    "prediction": train[j].answer, "ground_truth": s.references,
                    "matched_iou": 1.0, "gt_box": _rows(s.target_boxes)[0]})
    return out


def run_baselines(root: Path, train_files: list[str], val_files: list[str], out: Path,
                  limit: int | None = None, meteor: bool = True) -> dict[str, dict]:
    train: dict[Task, list[Sample]] = {}
    for f in train_files:
        ss = single_turns(read_processed(root / f)[0])  # a packed file counts every answer
        train.setdefault(ss[0].task, []).extend(ss)
    table = most_frequent_answers([s for ss in train.values() for s in ss])
    results = {}
    for name in ("random_proposal", "most_frequent", "question_prior", "nearest_template"):
        d = out / name
        wrote = False
        for f in val_files:
            val = read_processed(root / f)[0]
            refuse_multi_turn(val)
            val = subset(val, limit)
            task = val[0].task
            if name == "random_proposal" and task.is_grounding:
                recs = random_proposal_records(val, root)
            elif name == "most_frequent" and task in (Task.SCANQA, Task.SQA3D):
                recs = most_frequent_records(val, table)
            elif name == "question_prior" and task in (Task.SCANQA, Task.SQA3D):
                recs = question_prior_records(val, train.get(task, []), table)
            elif name == "nearest_template" and task is Task.SCAN2CAP and task in train:
                recs = nearest_template_records(val, train[task])
            else:
                continue
            write_jsonl(d / f"{task.value}.jsonl", recs)
            wrote = True
        if wrote:
            results[name] = metrics_from_dir(d, meteor=meteor)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(tables({n: {Task(k): v for k, v in r.items()}
                                          for n, r in results.items()}))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-baselines", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--train-files", nargs="+", required=True)
    p.add_argument("--val-files", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--no-meteor", action="store_true")
    a = p.parse_args(argv)
    return run_command("video3d-baselines", lambda: _run(a))


def _run(a: argparse.Namespace) -> int:
    run_baselines(a.data_root, a.train_files, a.val_files, a.out, a.limit, meteor=not a.no_meteor)
    print((a.out / "table.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
