"""Benchmark annotation files → the reference's processed "LLaVA-style" JSON records.

One function per benchmark, original-format records in, processed records
out. The same functions serve the real files (ScanRefer_filtered_*.json,
multi3drefer_*.json, ScanQA_v1.0_*.json, SQA3D's balanced questions +
annotations) and the generated ones.

Processed record (as the reference's data loader reads it)::

    {"id": ..., "video": "scannet/<scene_id>",
     "conversations": [{"from": "human", "value": "<image>..."}, {"from": "gpt", "value": ...}],
     "metadata": {"dataset": ..., "question_type": ..., ...},
     # grounding:  "box": [cx, cy, cz, dx, dy, dz] (ScanRefer) or a list of them (Multi3DRefer)
     # Scan2Cap:   "box_input" (box whose centre feeds <coord>), "gt_box", and on val "annotations"}

Boxes are axis-aligned, centre + size in metres, in the axis-aligned scene
frame, keyed ``boxes[scene_id][str(object_id)]``.

    from video3d_train.convert import convert_scanrefer, load_boxes_npz
"""

from __future__ import annotations

import enum
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
from video3d_ros.geometry import box_iou_matrix
from video3d_ros.model.processor import (
    caption_prompt,
    grounding_prompt,
    multi_grounding_prompt,
    qa_prompt,
    referring_text,
    sqa_prompt,
)
from video3d_ros.model.tokenizer import COORD_TOKEN, GROUND_TOKEN, VIDEO_TOKEN

from .metrics import sqa3d_question_type

Box6 = list[float]
Boxes = Mapping[str, Mapping[str, Box6]]


class Benchmark(enum.Enum):
    """The five benchmarks; value is the ``metadata.dataset`` string the reference writes."""

    SCANREFER = "scanrefer"
    MULTI3DREFER = "multi3drefer"
    SCAN2CAP = "scan2cap"
    SCANQA = "scanQA"
    SQA3D = "sqa3d"

    @property
    def processed_name(self) -> str:
        """File stem of the processed JSON (``<stem>_<split>_llava_style.json``)."""
        return _PROCESSED_STEMS[self]


_PROCESSED_STEMS = {Benchmark.SCANREFER: "scanrefer_vg", Benchmark.MULTI3DREFER: "multi3drefer",
                    Benchmark.SCAN2CAP: "scan2cap", Benchmark.SCANQA: "scanqa", Benchmark.SQA3D: "sqa3d"}

IMAGE_TOKEN = VIDEO_TOKEN  # "<image>": where the video goes in the human turn
# The task texts come from video3d_ros.model.processor, the same functions the engine
# asks with, so training and inference prompts cannot drift apart.


def processed_filename(benchmark: Benchmark, split: str) -> str:
    return f"{benchmark.processed_name}_{split}_llava_style.json"


def _video(scene_id: str) -> str:
    return f"scannet/{scene_id}"


def _conversation(question: str, answer: str) -> list[dict[str, str]]:
    return [{"value": question, "from": "human"}, {"value": answer, "from": "gpt"}]


def _box(boxes: Boxes, scene_id: str, object_id: object) -> Box6:
    try:
        return [float(v) for v in boxes[scene_id][str(object_id)]]
    except KeyError as e:
        raise KeyError(f"no box for scene {scene_id!r} object {object_id!r}") from e


def scanrefer_eval_types(records: Iterable[Mapping], class_of: Callable[[str], str] | None = None) -> dict:
    """unique / multiple per (scene_id, object_id): whether another annotated object shares the class.

    ``class_of`` maps an object_name to its class (the reference maps raw
    ScanNet names to NYU40 classes); default: the name with '_' → ' '.
    """
    cls = class_of or (lambda name: name.replace("_", " "))
    objects_per_class: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        objects_per_class[(r["scene_id"], cls(r["object_name"]))].add(str(r["object_id"]))
    out = {}
    for (scene, _), ids in objects_per_class.items():
        for oid in ids:
            out[(scene, oid)] = "unique" if len(ids) == 1 else "multiple"
    return out


def convert_scanrefer(records: list[Mapping], boxes: Boxes, *, eval_types: Mapping | None = None) -> list[dict]:
    """ScanRefer records → grounding samples (answer ``<ground>``, target ``box``).

    ``eval_types``: (scene_id, object_id) → "unique"/"multiple"; taken from a
    record's own ``eval_type`` field if present, else computed with
    :func:`scanrefer_eval_types`.
    """
    types = eval_types or scanrefer_eval_types(records)
    out = []
    for i, r in enumerate(records):
        qtype = r.get("eval_type") or types[(r["scene_id"], str(r["object_id"]))]
        out.append({
            "id": i, "video": _video(r["scene_id"]),
            "conversations": _conversation(IMAGE_TOKEN + grounding_prompt(r["description"]), GROUND_TOKEN),
            "box": _box(boxes, r["scene_id"], r["object_id"]),
            "metadata": {"dataset": Benchmark.SCANREFER.value, "question_type": qtype, "ann_id": str(r["ann_id"]),
                         "object_id": str(r["object_id"])},
        })
    return out


def convert_multi3drefer(records: list[Mapping], boxes: Boxes) -> list[dict]:
    """Multi3DRefer records → grounding samples with zero, one or several target boxes."""
    out = []
    for i, r in enumerate(records):
        out.append({
            "id": i, "video": _video(r["scene_id"]),
            "conversations": _conversation(IMAGE_TOKEN + multi_grounding_prompt(r["description"]),
                                           GROUND_TOKEN),
            "box": [_box(boxes, r["scene_id"], oid) for oid in r["object_ids"]],
            "metadata": {"dataset": Benchmark.MULTI3DREFER.value, "question_type": r["eval_type"],
                         "ann_id": str(r["ann_id"]), "object_id": [int(o) for o in r["object_ids"]]},
        })
    return out


def convert_scan2cap(records: list[Mapping], boxes: Boxes, *, split: str,
                     proposals: Mapping[str, list[Box6]] | None = None, iou_threshold: float = 0.5,
                     eval_types: Mapping | None = None) -> list[dict]:
    """ScanRefer records → dense-captioning samples.

    train: one sample per description, ``box_input`` = ground-truth box.
    other splits: one sample per object with all its descriptions in
    ``annotations``; ``box_input`` = the proposal (``proposals[scene_id]``)
    with the highest IoU ≥ ``iou_threshold`` to the ground truth, ``None`` if
    none (that object then scores zero); without proposals, the ground truth.
    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold {iou_threshold} outside (0, 1]")
    types = eval_types or scanrefer_eval_types(records)
    key = lambda r: f"{r['scene_id']}|{r['object_id']}|{r['object_name']}"  # noqa: E731
    descriptions: dict[str, list[str]] = defaultdict(list)
    for r in records:
        descriptions[key(r)].append(r["description"])
    out, seen = [], set()
    for i, r in enumerate(records):
        k = key(r)
        if split != "train" and k in seen:
            continue
        seen.add(k)
        gt = _box(boxes, r["scene_id"], r["object_id"])
        box_input: Box6 | None = gt
        if split != "train" and proposals is not None:
            props = np.asarray(proposals.get(r["scene_id"], []), float).reshape(-1, 6)
            box_input = None
            if len(props):
                iou = box_iou_matrix(props, np.asarray([gt]))[:, 0]
                j = int(np.argmax(iou))
                if iou[j] >= iou_threshold:
                    box_input = [float(v) for v in props[j]]
        item = {
            "id": i, "video": _video(r["scene_id"]),
            "conversations": _conversation(IMAGE_TOKEN + caption_prompt(), referring_text(r["description"])),
            "box_input": box_input, "gt_box": gt,
            "metadata": {"dataset": Benchmark.SCAN2CAP.value,
                         "question_type": r.get("eval_type") or types[(r["scene_id"], str(r["object_id"]))],
                         "ann_id": str(r["ann_id"]), "object_id": str(r["object_id"])},
        }
        if split != "train":
            item["annotations"] = descriptions[k]
        out.append(item)
    return out


def convert_scanqa(records: list[Mapping]) -> list[dict]:
    """ScanQA records → one sample per reference answer (as the reference); all answers in metadata.

    The record's ``object_ids`` (the objects the answer is about) are kept as
    ``metadata.object_id`` (a list): the answer-attention loss reads them (step.py); our
    generator's ``subject_object_ids`` (the objects the question names; not in the published
    files) as ``metadata.subject_object_id``: the subject-attention loss reads them.
    """
    out = []
    for r in records:
        answers = r.get("answers") or []
        meta = {"dataset": Benchmark.SCANQA.value, "question_type": "unknow",
                "question_id": r["question_id"], "answers": list(answers)}
        if r.get("object_ids"):
            meta["object_id"] = [int(o) for o in r["object_ids"]]
        if r.get("subject_object_ids"):
            meta["subject_object_id"] = [int(o) for o in r["subject_object_ids"]]
        for j, answer in enumerate(answers):
            out.append({
                "id": f"scanqa_{r['question_id']}_{j}", "video": _video(r["scene_id"]),
                "conversations": _conversation(IMAGE_TOKEN + qa_prompt(r["question"]), answer),
                "metadata": dict(meta),
            })
    return out


def convert_sqa3d(questions: Mapping, annotations: Mapping, *, split: str) -> list[dict]:
    """SQA3D balanced questions + annotations files (the whole JSON objects) → samples.

    train: one sample per situation text (the situation and each alternative);
    other splits: the main situation only. Exactly one answer per question. An
    annotation's ``object_ids`` (the object the question names; written by our
    generator, absent from the published files) are kept as ``metadata.object_id``.
    """
    by_qid = {q["question_id"]: q for q in questions["questions"]}
    out = []
    for a in annotations["annotations"]:
        q = by_qid.get(a["question_id"])
        if q is None:
            raise KeyError(f"SQA3D annotation question_id {a['question_id']!r} has no question")
        if len(a["answers"]) != 1:
            raise ValueError(f"SQA3D question {a['question_id']}: expected 1 answer, got {len(a['answers'])}")
        situations = (list(q.get("alternative_situation", [])) + [q["situation"]]) if split == "train" \
            else [q["situation"]]
        meta = {"dataset": Benchmark.SQA3D.value, "question_type": sqa3d_question_type(q["question"])}
        if a.get("object_ids"):
            meta["object_id"] = [int(o) for o in a["object_ids"]]
        for s in situations:
            out.append({
                "id": a["question_id"], "video": _video(a["scene_id"]),
                "conversations": _conversation(IMAGE_TOKEN + sqa_prompt(s, q["question"]),
                                               a["answers"][0]["answer"]),
                "metadata": dict(meta),
            })
    return out


def validate_processed(record: Mapping) -> None:
    """Raise ValueError naming the first thing a processed record gets wrong."""
    for k in ("id", "video", "conversations", "metadata"):
        if k not in record:
            raise ValueError(f"processed record lacks {k!r}: {str(record)[:200]}")
    conv = record["conversations"]
    if len(conv) < 2 or len(conv) % 2:
        raise ValueError(f"record {record['id']}: conversations must alternate human/gpt, got {len(conv)} turns")
    for j, turn in enumerate(conv):
        want = "human" if j % 2 == 0 else "gpt"
        if turn.get("from") != want or not isinstance(turn.get("value"), str):
            raise ValueError(f"record {record['id']}: turn {j} must be from {want!r} with a string value")
    if conv[0]["value"].count(IMAGE_TOKEN) != 1:
        raise ValueError(f"record {record['id']}: first human turn must hold exactly one {IMAGE_TOKEN}")
    try:
        dataset = Benchmark(record["metadata"]["dataset"])
    except (KeyError, ValueError) as e:
        raise ValueError(f"record {record['id']}: unknown metadata.dataset {record['metadata'].get('dataset')!r}") \
            from e

    def is_box(b: object) -> bool:
        return isinstance(b, list) and len(b) == 6 and all(isinstance(v, float) for v in b) and min(b[3:]) >= 0

    if dataset in (Benchmark.SCANREFER, Benchmark.MULTI3DREFER):
        if conv[1]["value"] != GROUND_TOKEN:
            raise ValueError(f"record {record['id']}: grounding answer must be {GROUND_TOKEN}")
        box = record.get("box")
        ok = is_box(box) if dataset is Benchmark.SCANREFER else isinstance(box, list) and all(map(is_box, box))
        if not ok:
            raise ValueError(f"record {record['id']}: bad box {box!r}")
    if dataset is Benchmark.SCAN2CAP:
        if COORD_TOKEN not in conv[0]["value"]:
            raise ValueError(f"record {record['id']}: Scan2Cap question lacks {COORD_TOKEN}")
        if not is_box(record.get("gt_box")) or not (record.get("box_input") is None or is_box(record["box_input"])):
            raise ValueError(f"record {record['id']}: bad gt_box/box_input")
    if dataset in (Benchmark.SCANQA, Benchmark.SQA3D, Benchmark.SCAN2CAP) and not conv[1]["value"].strip():
        raise ValueError(f"record {record['id']}: empty answer")


def load_boxes_npz(paths: Iterable[Path]) -> dict[str, dict[str, Box6]]:
    """Boxes from point-cloud files holding ``aabb_obj_ids`` (N,) and ``aabb_corner_xyz`` (N, 8, 3).

    The scene id is the file stem (``pcd_with_object_aabbs/<split>/<scene_id>.npz``).
    """
    out: dict[str, dict[str, Box6]] = {}
    for p in paths:
        with np.load(p) as z:
            ids, corners = z["aabb_obj_ids"], z["aabb_corner_xyz"]
        if corners.ndim != 3 or corners.shape[1:] != (8, 3) or len(ids) != len(corners):
            raise ValueError(f"{p}: aabb_corner_xyz {corners.shape} / aabb_obj_ids {ids.shape} mismatch")
        lo, hi = corners.min(axis=1), corners.max(axis=1)
        out[Path(p).stem] = {str(int(i)): [float(v) for v in np.concatenate([(l + h) / 2, h - l])]
                             for i, l, h in zip(ids, lo, hi)}
    return out


def write_json(path: Path, records: object) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(records))
