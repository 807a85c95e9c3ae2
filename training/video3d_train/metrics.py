"""Benchmark metrics of the five tasks, computed from results records alone.

A *results record* is one JSON object per question (see :mod:`video3d_train.results`):

    id, task, question_type, prediction, ground_truth
    grounding:  proposal_boxes (N, 6), proposal_scores (N + 1,) (last: "no target"),
                gt_boxes (M, 6)
    captioning: matched_iou (IoU of the captioned proposal with the object; the
                caption counts only when it is ≥ the threshold)

Boxes are axis-aligned: centre (x, y, z) + size (dx, dy, dz), metres. Every
number returned is ×100, as the papers report them.

- ScanRefer Acc@k: top-scoring real proposal vs. the single truth box.
- Multi3DRefer F1@k: decoded set (zero target / softmax(s/τ) / cumulative p)
  vs. the truth set, one-to-one Hungarian matching on IoU (scipy).
- Scan2Cap: COCO caption metrics (pycocoevalcap) on "sos … eos" texts with
  '.' and ',' spaced out, lowercase; a caption whose proposal has IoU < k is ''.
- ScanQA: exact match against any reference + text metrics on the answer with
  a trailing '.' removed.
- SQA3D: exact match after :func:`sqa3d_normalize`, overall and per type.
"""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from video3d_ros.enums import parse_enum
from video3d_ros.geometry import box_iou_matrix
from video3d_ros.model.grounding import select_multiple

IOU_THRESHOLDS = (0.25, 0.5)


class Task(enum.Enum):
    """The five benchmarks (values are our canonical names)."""

    SCANREFER = "scanrefer"
    MULTI3DREFER = "multi3drefer"
    SCAN2CAP = "scan2cap"
    SCANQA = "scanqa"
    SQA3D = "sqa3d"

    @classmethod
    def parse(cls, name: "str | Task") -> "Task":
        """Canonical task from a name as it appears in data files ("scanQA" → SCANQA)."""
        return parse_enum(cls, name, "task")

    @property
    def is_grounding(self) -> bool:
        return self in (Task.SCANREFER, Task.MULTI3DREFER)


# ---- grounding ---------------------------------------------------------------------------


def _boxes(x: Any, what: str, rid: Any) -> np.ndarray:
    arr = np.asarray(x if x is not None else [], dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 6))
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"record {rid!r}: {what} must be (N, 6) boxes, got shape {arr.shape}")
    return arr


def _scores(rec: Mapping[str, Any], n_props: int) -> np.ndarray:
    s = np.asarray(rec["proposal_scores"], dtype=np.float64)
    if s.shape != (n_props + 1,):
        raise ValueError(f"record {rec['id']!r}: proposal_scores must have N + 1 = {n_props + 1} "
                         f"entries (last: no target), got shape {s.shape}")
    return s


def scanrefer_prediction(rec: Mapping[str, Any]) -> np.ndarray:
    """The predicted box (1, 6): the real proposal with the highest score (none: (0, 6))."""
    props = _boxes(rec["proposal_boxes"], "proposal_boxes", rec["id"])
    scores = _scores(rec, len(props))
    if len(props) == 0:
        return props
    return props[int(np.argmax(scores[:-1]))][None]


def scanrefer_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Acc@0.25 / Acc@0.5 overall and per ``question_type`` ("unique" / "multiple")."""
    hits: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        gt = _boxes(rec["gt_boxes"], "gt_boxes", rec["id"])
        if len(gt) != 1:
            raise ValueError(f"record {rec['id']!r}: ScanRefer needs exactly one truth box, "
                             f"got {len(gt)}")
        pred = scanrefer_prediction(rec)
        iou = float(box_iou_matrix(pred, gt)[0, 0]) if len(pred) else 0.0
        for thr in IOU_THRESHOLDS:
            for group in ("overall", rec.get("question_type")):
                if group:
                    hits[f"acc@{thr}/{group}"].append(float(iou >= thr))
    return {k: 100.0 * float(np.mean(v)) for k, v in sorted(hits.items())}


def multi3drefer_prediction(rec: Mapping[str, Any], temperature: float,
                            threshold: float) -> np.ndarray:
    """Decoded predicted boxes (K, 6) of one Multi3DRefer record: the model's own selection
    when the record has one (``selected``, written by ``video3d-eval`` with the model's
    ``multi_object_selection``), else the paper's decoding of the scores."""
    props = _boxes(rec["proposal_boxes"], "proposal_boxes", rec["id"])
    if rec.get("selected") is not None:
        chosen = [int(i) for i in rec["selected"]]
        if any(not 0 <= i < len(props) for i in chosen):
            raise ValueError(f"record {rec['id']!r}: selected {chosen} outside the "
                             f"{len(props)} proposals")
    else:
        chosen = select_multiple(torch.as_tensor(_scores(rec, len(props))), temperature, threshold)
    return props[chosen] if chosen else np.zeros((0, 6))


def f1_one(pred: np.ndarray, gt: np.ndarray, iou_threshold: float) -> float:
    """F1 of one description (0…1).

    Both empty → 1; exactly one empty → 0; else a one-to-one matching that
    maximises the summed IoU, TP = matched pairs with IoU ≥ threshold,
    F1 = 2·TP / (#pred + #gt).
    """
    if len(pred) == 0 and len(gt) == 0:
        return 1.0
    if len(pred) == 0 or len(gt) == 0:
        return 0.0
    iou = box_iou_matrix(pred, gt)  # (P, G)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    tp = int(np.sum(iou[rows, cols] >= iou_threshold))
    return 2.0 * tp / (len(pred) + len(gt))


def multi3drefer_metrics(records: Sequence[Mapping[str, Any]], temperature: float = 0.07,
                         threshold: float = 0.4) -> dict[str, float]:
    """F1@0.25 / F1@0.5 overall and per ``question_type`` (zt_w_d, st_wo_d, mt, …)."""
    f1s: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        gt = _boxes(rec["gt_boxes"], "gt_boxes", rec["id"])
        pred = multi3drefer_prediction(rec, temperature, threshold)
        for thr in IOU_THRESHOLDS:
            f = f1_one(pred, gt, thr)
            for group in ("overall", rec.get("question_type")):
                if group:
                    f1s[f"f1@{thr}/{group}"].append(f)
    return {k: 100.0 * float(np.mean(v)) for k, v in sorted(f1s.items())}


# ---- text --------------------------------------------------------------------------------


def caption_scores(gts: Mapping[Any, list[str]], res: Mapping[Any, list[str]],
                   meteor: bool = True) -> dict[str, float]:
    """COCO caption metrics (×100): BLEU-1…4, ROUGE-L, CIDEr and (Java) METEOR.

    ``gts``: id → reference texts (≥ 1); ``res``: id → [one hypothesis].
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(gts) != set(res):
        raise ValueError("references and hypotheses must have the same ids")
    if not gts:
        raise ValueError("no captions to score")
    for k in gts:
        if len(res[k]) != 1 or not gts[k]:
            raise ValueError(f"id {k!r}: need exactly one hypothesis and ≥ 1 reference")
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(dict(gts), dict(res), verbose=0)
    for n, b in enumerate(bleu, 1):
        out[f"bleu-{n}"] = 100.0 * float(b)
    out["rouge-l"] = 100.0 * float(Rouge().compute_score(dict(gts), dict(res))[0])
    out["cider"] = 100.0 * float(Cider().compute_score(dict(gts), dict(res))[0])
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()  # starts a Java subprocess (stopped when collected); needs Java
        out["meteor"] = 100.0 * float(scorer.compute_score(dict(gts), dict(res))[0])
        del scorer
    return out


def caption_text(s: str) -> str:
    """Scan2Cap text form: lowercase, '.'/',' as separate tokens, wrapped in sos … eos."""
    s = s.replace(".", " . ").replace(",", " , ").lower()
    return " ".join(["sos", *s.split(), "eos"])


def scan2cap_metrics(records: Sequence[Mapping[str, Any]], iou_threshold: float = 0.5,
                     meteor: bool = True) -> dict[str, float]:
    """Caption metrics @``iou_threshold``: captions of unmatched objects are empty."""
    gts, res = {}, {}
    for rec in records:
        refs = rec["ground_truth"]
        if not refs:
            raise ValueError(f"record {rec['id']!r}: no reference captions")
        ok = rec.get("matched_iou") is not None and float(rec["matched_iou"]) >= iou_threshold
        pred = rec["prediction"] if ok else ""
        key = str(rec["id"])
        if key in gts:
            raise ValueError(f"duplicate record id {key!r}")
        res[key] = [caption_text(pred)]
        gts[key] = [caption_text(r) for r in refs]
    scores = caption_scores(gts, res, meteor=meteor)
    return {f"{k}@{iou_threshold}": v for k, v in scores.items()}


SCANQA_PLACEHOLDER_TYPE = "unknow"  # the question_type of every published processed ScanQA sample

# ScanQA question kinds (our breakdown; ScanQA itself has no types): the first rule whose
# pattern matches the lowercased question from its start ("colour" anywhere) names it.
_SCANQA_KINDS = (
    ("colour", r".*\bcolou?r\b"),
    ("count", r"(how many\b|(what is )?the number of\b)"),
    ("where", r"where\b"),
    ("support", r"what (is |are )?(on|placed on|sits on|sitting on|on top of|placed on top of)\b"
                r"(?! (the )?(left|right)\b)"),
    ("relation", r"what (object )?(is |are )?(next to|beside|closest to|near)\b"),
)


def scanqa_question_kind(question: str) -> str:
    """colour / count / where / support / relation / other, from the question's wording
    (our breakdown: "What color is …", "How many …", "Where is …", "What is on …",
    "What is next to …"; the rest is "other")."""
    q = question.strip().lower()
    for kind, pattern in _SCANQA_KINDS:
        if re.match(pattern, q):
            return kind
    return "other"


def scanqa_metrics(records: Sequence[Mapping[str, Any]], meteor: bool = True) -> dict[str, float]:
    """EM (prediction string is one of the references) overall and per ``question_type``
    (the kinds of :func:`scanqa_question_kind`) + text metrics."""
    gts, res, em = {}, {}, []
    per_type: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        refs = list(rec["ground_truth"])
        if not refs:
            raise ValueError(f"record {rec['id']!r}: no reference answers")
        pred = rec["prediction"]
        em.append(float(pred in refs))
        if rec.get("question_type") not in (None, "", SCANQA_PLACEHOLDER_TYPE):
            per_type[f"em/{rec['question_type']}"].append(em[-1])
        key = str(rec["id"])
        if key in gts:
            raise ValueError(f"duplicate record id {key!r}")
        res[key] = [pred.rstrip(".")]
        gts[key] = refs
    out = {"em": 100.0 * float(np.mean(em))}
    out.update({k: 100.0 * float(np.mean(v)) for k, v in sorted(per_type.items())})
    out.update(caption_scores(gts, res, meteor=meteor))
    return out


# SQA3D answer normaliser: ordered (pattern, replacement) rules applied after
# lowercasing, trimming, collapsing spaces and dropping odd characters.
_SQA_SPELLING = [
    ("ç", "c"), ("’", "'"), (r"\bletf\b", "left"), (r"\blet\b", "left"),
    (r"\btehre\b", "there"), (r"\brigth\b", "right"), (r"\brght\b", "right"),
    (r"\bbehine\b", "behind"), (r"\btv\b", "TV"), (r"\bchai\b", "chair"),
    (r"\bwasing\b", "washing"), (r"\bwaslked\b", "walked"), (r"\boclock\b", "o'clock"),
    (r"\bo'[ ]+clock\b", "o'clock"),
]
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                 "seventeen", "eighteen", "nineteen", "twenty"]
_SQA_NUMBERS = ([(r"\b0\b", "zero"), (r"\bnone\b", "zero")]
                + [(rf"\b{i}\b", w) for i, w in enumerate(_NUMBER_WORDS) if i > 0]
                + [(r"\b23\b", "twenty-three")])
_SQA_TAIL = [
    (r"\b([a-zA-Z]+)([0-9])\b", r"\g<1>"),  # "mat2" → "mat"
    (r"\ba\b ([a-zA-Z]+)", r"\g<1>"), (r"\ban\b ([a-zA-Z]+)", r"\g<1>"),
    (r"\bthe\b ([a-zA-Z]+)", r"\g<1>"),  # leading articles
    (r"\bbackwards\b", "backward"),
]


def sqa3d_normalize(text: str) -> str:
    """Normalise an SQA3D answer (applied to both prediction and reference)."""
    s = text.lower()
    s = re.sub(r"^[ ]+|[ ]+$", "", s)
    s = re.sub(r" {2,}", " ", s)
    s = re.sub(r"\.[ ]{2,}", ". ", s)
    s = re.sub(r"[^a-zA-Z0-9,'\s\-:]+", "", s)
    for pat, rep in _SQA_SPELLING + _SQA_NUMBERS + _SQA_TAIL:
        s = re.sub(pat, rep, s)
    return s


def sqa3d_question_type(question: str) -> str:
    """what / is / how / can / which / others, from the question's first word."""
    q = question.lstrip().lower()
    for t in ("what", "is", "how", "can", "which"):
        if q.startswith(t):
            return t
    return "others"


def sqa3d_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """EM after normalisation, overall and per question type."""
    hits: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        refs = rec["ground_truth"]
        if len(refs) != 1:
            raise ValueError(f"record {rec['id']!r}: SQA3D has exactly one reference answer, "
                             f"got {len(refs)}")
        ok = float(sqa3d_normalize(rec["prediction"]) == sqa3d_normalize(refs[0]))
        hits["em/overall"].append(ok)
        if rec.get("question_type"):
            hits[f"em/{rec['question_type']}"].append(ok)
    return {k: 100.0 * float(np.mean(v)) for k, v in sorted(hits.items())}


def task_metrics(task: Task | str, records: Iterable[Mapping[str, Any]],
                 meteor: bool = True, temperature: float = 0.07,
                 multi_threshold: float = 0.4) -> dict[str, float]:
    """Metrics of one task from its results records."""
    task = Task.parse(task)
    recs = list(records)
    if not recs:
        raise ValueError(f"no results records for task {task.value}")
    if task is Task.SCANREFER:
        return scanrefer_metrics(recs)
    if task is Task.MULTI3DREFER:
        return multi3drefer_metrics(recs, temperature, multi_threshold)
    if task is Task.SCAN2CAP:
        return scan2cap_metrics(recs, meteor=meteor)
    if task is Task.SCANQA:
        return scanqa_metrics(recs, meteor=meteor)
    return sqa3d_metrics(recs)


# The headline column of each task for the Markdown table.
HEADLINE = {
    Task.SCANREFER: ("acc@0.25/overall", "acc@0.5/overall"),
    Task.MULTI3DREFER: ("f1@0.25/overall", "f1@0.5/overall"),
    Task.SCAN2CAP: ("bleu-4@0.5", "cider@0.5", "meteor@0.5", "rouge-l@0.5"),
    Task.SCANQA: ("em", "bleu-4", "cider", "meteor", "rouge-l"),
    Task.SQA3D: ("em/overall",),
}


def type_breakdown_tables(rows: Mapping[str, Mapping[Task, Mapping[str, float]]]) -> str:
    """Per question type: a Markdown table for each task whose metrics are split by type
    (``<metric>/<type>`` keys other than ``/overall``: ScanRefer unique / multiple,
    Multi3DRefer's five types, ScanQA's kinds, SQA3D's question words), one row per system,
    the columns in the order the metrics list them; "" when no task has a split."""
    out = []
    for t in Task:
        cols: list[str] = []
        for r in rows.values():
            cols += [k for k in r.get(t, {}) if "/" in k and not k.endswith("/overall")
                     and k not in cols]
        if not cols:
            continue
        lines = [f"**{t.value}** by question type", "", "| system | " + " | ".join(cols) + " |",
                 "|---|" + "---:|" * len(cols)]
        for name, r in rows.items():
            m = r.get(t, {})
            lines.append(f"| {name} | " + " | ".join(f"{m[k]:.1f}" if k in m else "–" for k in cols)
                         + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def markdown_table(rows: Mapping[str, Mapping[Task, Mapping[str, float]]]) -> str:
    """One row per system (model, baselines), one column per headline metric."""
    cols = [(t, m) for t in Task for m in HEADLINE[t]]
    present = [(t, m) for t, m in cols if any(m in r.get(t, {}) for r in rows.values())]
    head = "| system | " + " | ".join(f"{t.value} {m}" for t, m in present) + " |"
    sep = "|---|" + "---:|" * len(present)
    lines = [head, sep]
    for name, r in rows.items():
        cells = [f"{r[t][m]:.1f}" if m in r.get(t, {}) else "–" for t, m in present]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
