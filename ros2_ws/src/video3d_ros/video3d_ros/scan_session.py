"""Encode a recorded scan once, answer many questions (no ROS).

The offline twin of the node's query path::

    reader = open_recording("scan/")                     # any layout
    session = ScanSession(reader, SessionConfig(frames=32))
    session.prepare()          # pass 1: unproject + voxelise every frame; select; pass 2: read the picks
    qa = SceneQA(load_engine(), SceneQAConfig())
    session.ask(qa, "How many chairs are there?")      # first call encodes the keyframes
    session.ask(qa, "the lamp left of the bed", QueryTask.GROUND)

Frame selection is :func:`video3d_ros.keyframes.select_frames` over the
frames' voxel sets; the keyframes go to :class:`~video3d_ros.scene_qa.SceneQA`
as a :class:`~video3d_ros.keyframes.BufferSnapshot`, exactly what the node
hands its query worker. Frame ids are the reader's frame indices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .geometry import Box3D, voxel_keys
from .ingest import RgbdObservation, observation_to_frame
from .keyframes import BufferSnapshot, Frame, SamplingStrategy, SelectionResult, select_frames
from .query import QueryRequest, QueryResult, QueryStatus, QueryTask, resolve_task, validate_request
from .recordings import RecordingError, RecordingReader


@dataclass(frozen=True)
class SessionConfig:
    """Frame selection and unprojection of a recorded scan."""

    frames: int = 32  # keyframe budget
    sampling: SamplingStrategy = SamplingStrategy.MAX_COVERAGE
    voxel_size_m: float = 0.1  # coverage voxel edge
    pixel_stride: int = 4  # voxelise every n-th pixel row/column for selection
    min_depth_m: float = 0.1  # nearer depth is invalid
    max_depth_m: float = 10.0  # farther depth is invalid
    seed: int = 0  # greedy tie-breaking seed
    max_text_chars: int = 2000  # longer query texts are rejected

    def __post_init__(self) -> None:
        object.__setattr__(self, "sampling", SamplingStrategy.parse(self.sampling))
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if not self.voxel_size_m > 0:
            raise ValueError(f"voxel_size_m must be > 0, got {self.voxel_size_m}")
        if self.pixel_stride < 1:
            raise ValueError(f"pixel_stride must be >= 1, got {self.pixel_stride}")
        if not 0 <= self.min_depth_m < self.max_depth_m:
            raise ValueError(f"need 0 <= min_depth_m < max_depth_m, got {self.min_depth_m}, {self.max_depth_m}")


def build_request(text: str, task: QueryTask = QueryTask.AUTO, target: Box3D | None = None,
                  max_text_chars: int = 2000) -> QueryRequest:
    """A validated request, AUTO resolved as the node does. Raises ValueError saying what is wrong."""
    resolved = resolve_task(task, text, target is not None)
    req = QueryRequest(task=resolved, text=text, target=target, max_keyframes=0)
    why = validate_request(req, max_text_chars)
    if why is not None:
        raise ValueError(why)
    return req


@dataclass
class StageTimes:
    """Wall time per stage, seconds (accumulated over calls)."""

    loading_s: float = 0.0  # reading and decoding images
    selection_s: float = 0.0  # unprojection, voxelisation, max-coverage selection
    encoding_s: float = 0.0  # vision tower + projector + 3D encoding of the keyframes
    answering_s: float = 0.0  # language model (and proposals for grounding)

    def text(self) -> str:
        return (f"loading {self.loading_s:.2f} s, frame selection {self.selection_s:.2f} s, "
                f"encoding {self.encoding_s:.2f} s, answering {self.answering_s:.2f} s")


@dataclass
class ScanSession:
    """A recording, its selected keyframes and their encoding state."""

    reader: RecordingReader
    config: SessionConfig = field(default_factory=SessionConfig)
    times: StageTimes = field(default_factory=StageTimes)
    selection: SelectionResult | None = None
    snapshot: BufferSnapshot | None = None
    K_color: dict[int, np.ndarray] = field(default_factory=dict)  # frame id → 3×3 K of its rgb
    _encoded_by: object = None

    def _frame(self, index: int, obs: RgbdObservation) -> Frame:
        c = self.config
        try:
            return observation_to_frame(obs, index, depth_scale_m=self.reader.depth_scale_m,
                                        min_depth_m=c.min_depth_m, max_depth_m=c.max_depth_m)
        except (ValueError, TypeError) as e:
            raise RecordingError(f"{self.reader.source(index)}: {e}") from e

    def _timed_observations(self, indices, desc: str):
        it = self.reader.observations(indices, desc=desc)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self.times.loading_s += time.perf_counter() - t0
            yield item

    def prepare(self) -> BufferSnapshot:
        """Select keyframes (two passes over the recording) and build the snapshot."""
        c = self.config
        sets: list[np.ndarray] = []
        for i, obs in self._timed_observations(None, "voxelising frames"):
            t0 = time.perf_counter()
            f = self._frame(i, obs)
            sets.append(voxel_keys(f.xyz_m, f.valid, c.voxel_size_m, c.pixel_stride))
            self.times.selection_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        self.selection = select_frames(sets, c.sampling, c.frames, seed=c.seed)
        self.times.selection_s += time.perf_counter() - t0
        frames = []
        for i, obs in self._timed_observations(self.selection.indices, "reading keyframes"):
            t0 = time.perf_counter()
            frames.append(self._frame(i, obs))
            self.K_color[i] = np.asarray(obs.K_color, float)[:3, :3]
            self.times.loading_s += time.perf_counter() - t0
        frames.sort(key=lambda f: (f.stamp_s, f.frame_id))
        self.snapshot = BufferSnapshot(keyframes=tuple(frames), covered_voxels=self.selection.selected_voxels,
                                       version=1)
        return self.snapshot

    def encode(self, qa) -> None:
        """Encode the keyframes with ``qa.engine`` (once per engine)."""
        if self.snapshot is None:
            self.prepare()
        if self._encoded_by is not qa.engine:
            t0 = time.perf_counter()
            qa.engine.sync(self.snapshot)
            self.times.encoding_s += time.perf_counter() - t0
            self._encoded_by = qa.engine

    def request(self, text: str, task: QueryTask = QueryTask.AUTO, target: Box3D | None = None) -> QueryRequest:
        return build_request(text, task, target, self.config.max_text_chars)

    def ask(self, qa, text: str, task: QueryTask = QueryTask.AUTO, target: Box3D | None = None) -> QueryResult:
        """Answer one query about the scan with a :class:`~video3d_ros.scene_qa.SceneQA`."""
        req = self.request(text, task, target)
        self.encode(qa)
        t0 = time.perf_counter()
        result = qa.answer(req, self.snapshot)
        self.times.answering_s += time.perf_counter() - t0
        return result


def result_to_json(result: QueryResult, question: str, session: ScanSession) -> dict:
    """JSON-ready dict of a result: answer, boxes (world frame, metres), keyframes."""
    reader = session.reader
    return {
        "status": result.status.name.lower(),
        "message": result.message,
        "task": result.task.name.lower(),
        "question": question,
        "answer": result.answer,
        "frame": "world",
        "recording": {"path": str(reader.path), "layout": reader.layout.value, "frames": len(reader)},
        "objects": [{"proposal_id": o.proposal_id, "score": o.score,
                     "center_m": [float(v) for v in o.box.center_m],
                     "size_m": [float(v) for v in o.box.size_m], "label": o.label}
                    for o in result.objects],
        "keyframe_indices": list(session.snapshot.frame_ids) if session.snapshot else [],
        "keyframe_stamps_s": list(result.keyframe_stamps_s),
        "keyframe_groups": result.keyframe_groups,
        "ok": result.status is QueryStatus.OK,
    }
