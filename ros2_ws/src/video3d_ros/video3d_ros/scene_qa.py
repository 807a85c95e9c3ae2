"""Answer queries about the keyframe buffer with the Video-3D LLM (no ROS).

:class:`SceneQA` is what the node's query worker calls: it brings the
engine's cached keyframes in line with a buffer snapshot (encoding only new
keyframes), gets object proposals (a detector's, or built from the keyframes'
points, cached per buffer version), runs the task and returns a
:class:`~video3d_ros.query.QueryResult`. The CLI over recorded scans uses it too.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .geometry import Box3D, greedy_suppression
from .keyframes import BufferSnapshot
from .proposals import ProposalConfig, propose_boxes, snapshot_points_m
from .query import GroundedObject, QueryRequest, QueryResult, QueryStatus, QueryTask

log = logging.getLogger(__name__)

# The default model shipped inside the package (trained on generated scenes).
EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
def load_engine(model_path: str | Path | None = None, device: str | None = None,
                max_new_tokens: int = 32):
    """Build a :class:`~video3d_ros.model.engine.Video3DEngine`.

    Args:
        model_path: a directory in our checkpoint format, or a released
            LLaVA-style checkpoint directory; None/"" for the embedded default.
        device: "cpu", "cuda[:i]" or None (CUDA when available).
    Raises:
        FileNotFoundError when neither ``model_path`` nor the embedded model exists.
    """
    from .model.checkpoint import load_pretrained
    from .model.engine import Video3DEngine
    from .model.runtime import detect_runtime

    runtime = detect_runtime(device)
    path = Path(model_path) if model_path else EMBEDDED_MODEL_DIR
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no model at {path} (expected config.json + model.safetensors + tokenizer files); "
            "set model_path to a checkpoint directory")
    if _is_released_layout(path):
        from .model.released import load_released

        loaded = load_released(path, runtime=runtime)
    else:
        loaded = load_pretrained(path, runtime=runtime)
    log.info("model loaded from %s on %s (%s)", path, runtime.device, runtime.dtype)
    return Video3DEngine(loaded.model, loaded.processor, max_new_tokens=max_new_tokens,
                         trained_frames=loaded.trained_frames)


def _is_released_layout(path: Path) -> bool:
    import json

    meta = json.loads((path / "config.json").read_text())
    return meta.get("model_type") == "llava_qwen"


_SITUATION = re.compile(r"^\s*(i|i'm|my)\b", re.IGNORECASE)  # first person: "I am sitting ...", "I stopped ..."


def split_situation(text: str) -> tuple[str, str] | None:
    """SQA3D-style text: ("I am sitting on the bed facing the window.", "What is on my left?").

    Returns None when the text does not open with a first-person situation
    followed by a separate question sentence.
    """
    if not _SITUATION.match(text):
        return None
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    if len(sentences) < 2 or not sentences[-1].endswith("?"):
        return None
    return " ".join(sentences[:-1]), sentences[-1]


def subsample_snapshot(snapshot: BufferSnapshot, max_keyframes: int) -> BufferSnapshot:
    """At most ``max_keyframes`` keyframes, evenly spread in time (0 = all)."""
    n = len(snapshot.keyframes)
    if max_keyframes <= 0 or n <= max_keyframes:
        return snapshot
    ordered = sorted(snapshot.keyframes, key=lambda kf: kf.stamp_s)
    keep = np.unique(np.linspace(0, n - 1, max_keyframes).round().astype(int))
    return BufferSnapshot(tuple(ordered[i] for i in keep), snapshot.covered_voxels, snapshot.version)


TRAINED_FRAMES = -1  # SceneQAConfig.default_max_keyframes: the model's training frame count


@dataclass(frozen=True)
class SceneQAConfig:
    max_results: int = 5  # objects returned for single-object grounding (best first)
    # None: the model config's; else in the units of its multi_object_selection
    multi_object_threshold: float | None = None
    # multi-object answers: drop a selected box whose IoU with a better selected one is at
    # least this (0 = keep all); the built-in proposals are over-complete (four clustering
    # scales) and nest boxes of one object (BENCHMARKS.md, "Suppressing overlapping selections")
    multi_object_suppress_iou: float = 0.1
    proposals: ProposalConfig = ProposalConfig()
    # keyframes per query when the request does not set max_keyframes: -1 = the frame
    # count the model was trained with (its text answers break with many more: the embedded
    # model captioned with CIDEr 75.5 at its 8 frames, 0.09 at 16; BENCHMARKS.md), 0 = all
    default_max_keyframes: int = TRAINED_FRAMES
    # a query without max_keyframes reads up to default_max_keyframes × keyframe_groups
    # keyframes as that many interleaved groups of at most default_max_keyframes, each its
    # own sequence, and averages them (Video3DEngine; what it gains: BENCHMARKS.md, "Reading
    # the whole buffer in groups"); a query's own max_keyframes is read in as many groups as
    # it fills. 1 = one pass (the paper's)
    keyframe_groups: int = 1

    def __post_init__(self) -> None:
        if self.default_max_keyframes < TRAINED_FRAMES:
            raise ValueError(f"default_max_keyframes must be >= -1 (-1 = the model's training frame "
                             f"count, 0 = all), got {self.default_max_keyframes}")
        if self.keyframe_groups < 1:
            raise ValueError(f"keyframe_groups must be >= 1 (1 = one pass), got {self.keyframe_groups}")
        if self.max_results < 1:
            raise ValueError(f"max_results must be >= 1, got {self.max_results}")
        if self.multi_object_threshold is not None and not 0 < self.multi_object_threshold <= 1:
            raise ValueError(f"multi_object_threshold must be in (0, 1] (or None: the model's), "
                             f"got {self.multi_object_threshold}")
        if not 0 <= self.multi_object_suppress_iou <= 1:
            raise ValueError(f"multi_object_suppress_iou must be in [0, 1] (0 = keep all), got "
                             f"{self.multi_object_suppress_iou}")


def _same_objects(refs: tuple[weakref.ref, ...], objects) -> bool:
    """``refs`` refer to ``objects``, in order (identity, not equality)."""
    return len(refs) == len(objects) and all(r() is x for r, x in zip(refs, objects))


class SceneQA:
    """Engine + proposals over buffer snapshots. One caller at a time (the query worker)."""

    def __init__(self, engine, config: SceneQAConfig = SceneQAConfig()) -> None:
        grounding = engine.config.grounding
        if config.multi_object_threshold is not None and grounding is not None:
            grounding.check_threshold(config.multi_object_threshold)  # in the model's units
        self.engine = engine
        self.config = config
        # (weak references to the keyframes they were built from, the boxes): a buffer's
        # snapshots share keyframe objects; another recording's snapshot has the same version
        # and frame ids, not objects. Weak: evicted keyframes are not kept alive by the cache
        self._proposal_cache: tuple[tuple[weakref.ref, ...], list[Box3D]] | None = None
        self._external: tuple[list[Box3D], list[str]] | None = None
        self._lock = threading.Lock()

    @property
    def default_max_keyframes(self) -> int:
        """Keyframes a query gets when it does not say (0 = all)."""
        k = self.config.default_max_keyframes
        return self.engine.trained_frames if k == TRAINED_FRAMES else k

    def reading(self, snapshot: BufferSnapshot, max_keyframes: int = 0) -> tuple[BufferSnapshot, int]:
        """The keyframes a query reads and in how many groups: at most ``max_keyframes``
        (0: ``default_max_keyframes`` × ``keyframe_groups``) spread over time, in as many
        groups of at most ``default_max_keyframes`` as they fill, up to ``keyframe_groups``."""
        per_group = self.default_max_keyframes
        if per_group == 0:  # all keyframes in one pass
            return subsample_snapshot(snapshot, max_keyframes), 1
        snap = subsample_snapshot(snapshot, max_keyframes or per_group * self.config.keyframe_groups)
        filled = math.ceil(len(snap.keyframes) / per_group)
        return snap, max(1, min(self.config.keyframe_groups, filled))

    def set_external_proposals(self, boxes: list[Box3D] | None, labels: list[str] | None = None) -> None:
        """Proposals from a 3D detector (world frame); None goes back to built-in ones."""
        with self._lock:
            self._external = None if boxes is None else (list(boxes), list(labels or [""] * len(boxes)))

    def forget(self) -> None:
        """Drop the encoded keyframes and the built proposals: the next query pays for both,
        as the first one after the keyframe set changed does (benchmarks measure that)."""
        with self._lock:
            self._proposal_cache = None
        self.engine.sync(BufferSnapshot(keyframes=(), covered_voxels=0, version=0))

    def proposals(self, snapshot: BufferSnapshot) -> tuple[list[Box3D], list[str]]:
        with self._lock:
            if self._external is not None:
                return self._external
            cached = self._proposal_cache
            if cached is None or not _same_objects(cached[0], snapshot.keyframes):
                pts = snapshot_points_m(snapshot, self.config.proposals.pixel_stride)
                self._proposal_cache = (tuple(weakref.ref(kf) for kf in snapshot.keyframes),
                                        propose_boxes(pts, self.config.proposals))
            boxes = self._proposal_cache[1]
        return boxes, [""] * len(boxes)

    def prepare(self, snapshot: BufferSnapshot) -> None:
        """Do ahead what every query on ``snapshot`` starts with, so that the next one does
        not wait for it (the node runs this on its query worker once the keyframes stop
        changing): encode the keyframes a query reads by default, pre-fill their visual
        prefix, and for a model that grounds, build the proposals and pool their features."""
        if not snapshot.keyframes:
            return
        snap, groups = self.reading(snapshot)
        self.engine.sync(snap)
        grounds = self.engine.model.ground_head is not None
        self.engine.prepare(self.proposals(snapshot)[0] if grounds else None, groups=groups)

    def answer(self, request: QueryRequest, snapshot: BufferSnapshot) -> QueryResult:
        """Run one resolved request (task != AUTO) on a snapshot."""
        start = time.perf_counter()
        if not snapshot.keyframes:
            return QueryResult(QueryStatus.NO_DATA, task=request.task,
                               message="the keyframe buffer is empty: no synchronised RGB-D frame "
                                       "with a camera pose has been received yet")
        snap, groups = self.reading(snapshot, request.max_keyframes)
        self.engine.sync(snap)
        stamps = tuple(sorted(kf.stamp_s for kf in snap.keyframes))
        answer, objects = "", ()
        if request.task is QueryTask.QUESTION:
            situated = split_situation(request.text)
            # a model trained to ground the question's object before it answers
            # (grounds_in_answers) grounds it among the proposals; it comes back with the answer,
            # followed by the object the answer names where the model grounded that too
            g = self.engine.config.grounding
            boxes, labels = (self.proposals(snapshot) if g is not None and g.grounds_in_answers
                             else ([], []))
            reply = (self.engine.ask_situated(*situated, groups=groups, proposals=boxes)
                     if situated else self.engine.ask(request.text, groups=groups, proposals=boxes))
            answer = reply.text
            objects = tuple(GroundedObject(i, score, boxes[i], labels[i]) for i, score in
                            ((reply.grounded_index, reply.grounded_score),
                             (reply.answer_object_index, reply.answer_object_score))
                            if i is not None)
        elif request.task is QueryTask.CAPTION:
            assert request.target is not None  # validate_request guarantees it
            answer = self.engine.caption(request.target, groups=groups).text
        elif request.task in (QueryTask.GROUND, QueryTask.GROUND_MULTI):
            # proposals from every keyframe of the snapshot, not only the few the model reads:
            # more of the room's points, whole objects (ScanRefer on generated rooms through
            # this path, the model on 8 of 16 keyframes: Acc@0.25 35.7 → 47.9; BENCHMARKS.md)
            boxes, labels = self.proposals(snapshot)
            if not boxes:
                return QueryResult(QueryStatus.NO_DATA, task=request.task, keyframe_stamps_s=stamps,
                                   message="no object proposals: the keyframes hold no object-sized "
                                           "point clusters and no detector published proposals")
            g = self.engine.ground(request.text, boxes, threshold=self.config.multi_object_threshold,
                                   multiple=request.task is QueryTask.GROUND_MULTI, groups=groups)
            if request.task is QueryTask.GROUND:
                order = np.argsort(-g.scores, kind="stable")[: self.config.max_results]
            else:
                order = np.asarray(g.selected, dtype=int)
                if self.config.multi_object_suppress_iou > 0 and len(order) > 1:
                    rows = np.stack([boxes[i].as_row() for i in order])  # best first
                    order = order[greedy_suppression(rows, self.config.multi_object_suppress_iou)]
            objects = tuple(GroundedObject(int(i), float(g.scores[i]), boxes[i], labels[i])
                            for i in order)
        else:
            raise ValueError(f"task {request.task!r} must be resolved before answer()")
        return QueryResult(QueryStatus.OK, answer=answer, objects=objects, task=request.task,
                           keyframe_stamps_s=stamps, inference_time_s=time.perf_counter() - start,
                           keyframe_groups=groups)
