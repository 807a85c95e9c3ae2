"""Reader of the processed LLaVA-style JSON files + the ScanNet posed-images layout.

One reader for the files the paper's authors published and for ours from
generated scenes. A processed file is a JSON list; one sample::

    {"id": 0, "video": "scannet/scene0000_00",
     "conversations": [{"from": "human", "value": "<image>Identify the object ..."},
                       {"from": "gpt", "value": "<ground>"}],
     "box": [cx, cy, cz, dx, dy, dz]               ScanRefer (one box)
          | [[...], ...]                            Multi3DRefer (zero or more)
     "box_input": [...], "gt_box": [...],           Scan2Cap (box to caption / its truth)
     "annotations": ["...", ...],                   Scan2Cap val: all descriptions of the object
     "metadata": {"dataset": "scanrefer", "question_type": "unique",
                  "object_id": "3" | [3, 5], "answers": [...] (ScanQA val)}}

A ScanQA or SQA3D sample may hold further human/gpt turns after the first, as
LLaVA's multi-turn conversations do (``video3d-pack-turns`` writes them):
training puts the language-model loss on every answer; the metadata (type,
object ids, references) are the first question's, and the evaluator, which asks
one question at a time, refuses them.

Scene files under ``root``:

    scannet/posed_images/<scene>/{color,depth,pose}/NNNNN.*, intrinsic/intrinsic_depth.txt
    scannet/scans/<scene>/<scene>.txt                 axisAlignment (optional)
    scannet/pcd_with_object_aabbs/<split>/<scene>.npz   aabb_obj_ids, aabb_corner_xyz (.pth too)

A bad file or sample raises :class:`DataError` naming the file and the sample
id; with ``skip_bad`` it is logged and counted instead. Nothing is silently
dropped.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from video3d_ros.geometry import (
    Box3D,
    anchor_relations_m,
    box_iou_matrix,
    depth_to_world_m,
    nearest_boxes,
)
from video3d_ros.keyframes import SamplingStrategy, uniform_indices
from video3d_ros.keyframes.scan_io import (
    ScanFormatError,
    list_frames,
    read_axis_alignment,
    read_intrinsics,
    read_matrix,
)
from video3d_ros.model.config import ObjectFeatureKind, Video3DConfig
from video3d_ros.model.object_features import CellIndex
from video3d_ros.model.position_encoding import center_points, size_points
from video3d_ros.model.processor import Video3DProcessor
from video3d_ros.model.tokenizer import COORD_TOKEN, GROUND_TOKEN, VIDEO_TOKEN
from video3d_ros.scenes.vocab import Colour

from .checkpointing import load_torch_file
from .metrics import SCANQA_PLACEHOLDER_TYPE, Task, scanqa_question_kind, sqa3d_question_type

log = logging.getLogger(__name__)


# tasks whose samples may hold several question/answer turns: their prompts are plain text (a
# grounding sample has one <ground>, a caption's <coord> box is the sample's)
MULTI_TURN_TASKS = (Task.SCANQA, Task.SQA3D)


class DataError(ValueError):
    """A data file or sample is malformed; the message names the file and the sample."""

    @classmethod
    def in_sample(cls, file: str, sid: Any, msg: str) -> "DataError":
        """The error for sample ``sid`` of ``file``: ``"<file>: sample '<sid>': <msg>"``."""
        return cls(f"{file}: sample {sid!r}: {msg}")


_fail = DataError.in_sample  # the short name this module raises with


@dataclass
class Sample:
    """One question of a processed file, validated."""

    file: str  # the processed JSON it came from
    sample_id: str  # its "id" (as a string)
    task: Task
    scene_id: str  # e.g. scene0000_00
    video: str  # the "video" field (scannet/<scene>)
    prompt: str  # human text with the <image> placeholder removed
    answer: str  # gpt text ("<ground>" for grounding)
    question_type: str | None
    target_boxes: np.ndarray  # (M, 6) grounding truth (M ≥ 0); Scan2Cap: its truth box
    object_ids: list[int] | None  # truth object ids when the metadata names them
    box_input: np.ndarray | None  # (6,) Scan2Cap: the box whose centre goes into <coord>
    references: list[str] = field(default_factory=list)  # all acceptable answers / captions
    # (question, answer) turns after the first, in order (multi-turn ScanQA / SQA3D samples)
    follow_ups: list[tuple[str, str]] = field(default_factory=list)
    # the objects the question names (metadata.subject_object_id, written by our generator:
    # for "what is next to the desk?" the desk); target of the subject-attention loss (step.py)
    subject_ids: list[int] | None = None


def _box_array(x: Any, file: str, sid: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise _fail(file, sid, f"{what} must be (centre, size) boxes of 6 numbers ({e})") from e
    if arr.size == 0:
        return np.zeros((0, 6))
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 6 or not np.all(np.isfinite(arr)) \
            or np.any(arr[:, 3:] < 0):
        raise _fail(file, sid, f"{what} must be finite (centre, size) boxes of 6 numbers, got "
                               f"{np.shape(x)}")
    return arr


def parse_sample(raw: Any, file: str) -> Sample:
    """Validate one processed-JSON entry."""
    if not isinstance(raw, dict):
        raise DataError(f"{file}: a sample is a {type(raw).__name__}, expected an object")
    sid = raw.get("id")
    if sid is None:
        raise _fail(file, sid, "missing 'id'")
    conv = raw.get("conversations")
    if not (isinstance(conv, list) and len(conv) >= 2 and len(conv) % 2 == 0
            and all(isinstance(c, dict) and c.get("from") == ("human", "gpt")[j % 2]
                    for j, c in enumerate(conv))):
        raise _fail(file, sid, "'conversations' must be [human, gpt] turns, possibly repeated")
    values = [c.get("value") for c in conv]
    if not all(isinstance(v, str) for v in values):
        raise _fail(file, sid, "conversation values must be strings")
    human, answer = values[0], values[1]
    if human.count(VIDEO_TOKEN) != 1:
        raise _fail(file, sid, f"the question must hold exactly one {VIDEO_TOKEN}")
    follow_ups = list(zip(values[2::2], values[3::2]))
    if any(VIDEO_TOKEN in q for q, _ in follow_ups):
        raise _fail(file, sid, f"only the first question may hold {VIDEO_TOKEN}")
    video = raw.get("video")
    if not isinstance(video, str) or not video:
        raise _fail(file, sid, "missing 'video'")
    meta = raw.get("metadata") or {}
    try:
        task = Task.parse(meta.get("dataset", ""))
    except ValueError as e:
        raise _fail(file, sid, str(e)) from e
    prompt = human.replace(VIDEO_TOKEN, "", 1)
    qtype = meta.get("question_type")
    object_ids = _id_list(meta, "object_id", file, sid)
    subject_ids = _id_list(meta, "subject_object_id", file, sid)
    boxes, box_input = np.zeros((0, 6)), None
    refs = [answer]
    if task is Task.SCANREFER:
        boxes = _box_array(raw.get("box"), file, sid, "'box'")
        if len(boxes) != 1:
            raise _fail(file, sid, f"ScanRefer needs exactly one 'box', got {len(boxes)}")
    elif task is Task.MULTI3DREFER:
        boxes = _box_array(raw.get("box", []), file, sid, "'box'")
    elif task is Task.SCAN2CAP:
        if "gt_box" not in raw:
            raise _fail(file, sid, "Scan2Cap needs 'gt_box'")
        boxes = _box_array(raw["gt_box"], file, sid, "'gt_box'")
        bi = raw.get("box_input")
        box_input = None if bi is None else _box_array(bi, file, sid, "'box_input'")[0]
        refs = list(raw.get("annotations") or [answer])
    elif task is Task.SCANQA:
        refs = list(meta.get("answers") or [answer])
        if qtype in (None, "", SCANQA_PLACEHOLDER_TYPE):
            qtype = scanqa_question_kind(prompt)
    elif task is Task.SQA3D and not qtype:
        qtype = sqa3d_question_type(prompt)
    if follow_ups and task not in MULTI_TURN_TASKS:
        raise _fail(file, sid, f"only ScanQA and SQA3D samples may hold several questions; this "
                               f"{task.value} sample holds {len(conv) // 2}")
    if task.is_grounding and answer.strip() != GROUND_TOKEN:
        raise _fail(file, sid, f"grounding answers must be {GROUND_TOKEN}, got {answer!r}")
    if not all(isinstance(r, str) for r in refs):
        raise _fail(file, sid, "references must be strings")
    scene_id = Path(video).name
    return Sample(file=file, sample_id=str(sid), task=task, scene_id=scene_id, video=video,
                  prompt=prompt, answer=answer, question_type=qtype, target_boxes=boxes,
                  object_ids=object_ids, box_input=box_input, references=refs,
                  follow_ups=follow_ups, subject_ids=subject_ids)


def _id_list(meta: dict, key: str, file: str, sid: Any) -> list[int] | None:
    """metadata[key] (an object id or a list of them) as a list of ints; None when absent."""
    obj = meta.get(key)
    if obj is None:
        return None
    try:
        return [int(o) for o in (obj if isinstance(obj, list) else [obj])]
    except (TypeError, ValueError) as e:
        raise _fail(file, sid, f"bad metadata.{key} {obj!r}") from e


def read_sample_list(path: Path) -> list:
    """The JSON list of a processed file; DataError naming the file otherwise."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read a processed JSON file ({e})") from e
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a JSON list of samples")
    return raw


def read_processed(path: str | Path, skip_bad: bool = False) -> tuple[list[Sample], int]:
    """All samples of one processed file and how many bad ones were skipped."""
    path = Path(path)
    out, bad = [], 0
    for item in read_sample_list(path):
        try:
            out.append(parse_sample(item, str(path)))
        except DataError as e:
            if not skip_bad:
                raise
            bad += 1
            log.warning("skipping bad sample: %s", e)
    return out, bad


def single_turns(samples: Sequence[Sample]) -> list[Sample]:
    """Each multi-turn sample as one sample per question, in order (a follow-up's type from
    its wording, its one reference its answer, no object ids); single-turn samples as they
    are. For what counts answers per question (the text-prior baselines)."""
    out = []
    for s in samples:
        out.append(replace(s, follow_ups=[]) if s.follow_ups else s)
        kind = scanqa_question_kind if s.task is Task.SCANQA else sqa3d_question_type
        for k, (question, answer) in enumerate(s.follow_ups, 1):
            out.append(replace(s, sample_id=f"{s.sample_id}#{k}", prompt=question, answer=answer,
                               question_type=kind(question), object_ids=None, references=[answer],
                               follow_ups=[]))
    return out


def refuse_multi_turn(samples: Sequence[Sample]) -> None:
    """DataError naming the first multi-turn sample: what scores answers one question at a
    time (the evaluator, the baselines' validation files) cannot take them."""
    multi = next((s for s in samples if s.follow_ups), None)
    if multi is not None:
        raise _fail(multi.file, multi.sample_id,
                    f"{len(multi.follow_ups) + 1} questions in one conversation; evaluation "
                    "asks one at a time (a multi-turn file is for training)")


def write_questions_of_kind(src: str | Path, dst: str | Path, kind: str) -> int:
    """Write to ``dst`` the samples of processed file ``src`` whose question type is ``kind``
    (as the evaluator assigns it, e.g. ``colour`` for ScanQA), unchanged; return how many.
    The embedded model's mix oversamples ``scanqa_colour_train.json`` written this way."""
    src = Path(src)
    chosen = [item for item in read_sample_list(src) if parse_sample(item, str(src)).question_type == kind]
    Path(dst).write_text(json.dumps(chosen))
    return len(chosen)


# ---- scenes ------------------------------------------------------------------------------


@dataclass
class SceneObjects:
    """Axis-aligned boxes of a scene's objects (aligned frame)."""

    object_ids: np.ndarray  # (N,) int
    boxes: np.ndarray  # (N, 6) centre + size, metres


def read_scene_boxes(root: str | Path, scene_id: str) -> SceneObjects:
    """Object boxes from ``pcd_with_object_aabbs/<split>/<scene>.npz`` (or the reference's .pth)."""
    base = Path(root) / "scannet" / "pcd_with_object_aabbs"
    hits = sorted(base.glob(f"*/{scene_id}.npz")) + sorted(base.glob(f"*/{scene_id}.pth"))
    if not hits:
        raise DataError(f"{base}/<split>/{scene_id}.npz: object boxes of scene {scene_id} not found")
    path = hits[0]
    try:
        if path.suffix == ".npz":
            with np.load(path) as d:
                ids, corners = d["aabb_obj_ids"], d["aabb_corner_xyz"]
        else:
            d = load_torch_file(path)  # no code from the file: arrays and containers only
            ids, corners = np.asarray(d["aabb_obj_ids"]), np.asarray(d["aabb_corner_xyz"])
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: cannot read object boxes ({e})") from e
    corners = np.asarray(corners, dtype=np.float64).reshape(len(ids), -1, 3)
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    return SceneObjects(np.asarray(ids, dtype=np.int64), np.concatenate([(lo + hi) / 2, hi - lo], 1))


@dataclass(frozen=True)
class ObjectLabel:
    """Category and colour of one object of a generated room."""

    object_id: int
    category: str
    colour: str  # a :class:`~video3d_ros.scenes.vocab.Colour` value


def read_object_labels(root: str | Path, scene_id: str) -> list[ObjectLabel]:
    """Every object of a generated room, from ``scannet/scans/<scene>/<scene>_objects.json``
    (written by ``video3d-scenes``; ScanNet scans have no such file). A file that is
    missing, not JSON, or whose objects lack ``object_id`` / ``object_name`` / ``colour`` (or
    name an unknown colour) raises :class:`DataError` naming the file."""
    path = Path(root) / "scannet" / "scans" / scene_id / f"{scene_id}_objects.json"
    try:
        return [ObjectLabel(int(o["object_id"]), str(o["object_name"]), Colour(o["colour"]).value)
                for o in json.loads(path.read_text())["objects"]]
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DataError(f"{path}: cannot read object categories/colours "
                        f"({type(e).__name__}: {e})") from e


def read_proposals(path: str | Path) -> dict[str, np.ndarray]:
    """Evaluation proposals: JSON ``{scene_id: [[cx, cy, cz, dx, dy, dz], ...]}``."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read proposals ({e})") from e
    if not isinstance(raw, dict):
        raise DataError(f"{path}: proposals must map scene id → list of boxes")
    return {k: _box_array(v, str(path), k, "proposals") for k, v in raw.items()}


def read_selection(path: str | Path) -> dict[str, dict[str, Any]]:
    """Max-coverage selection file (list of records) keyed by scene id."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read a frame selection file ({e})") from e
    recs = raw if isinstance(raw, list) else [raw]
    out = {}
    for r in recs:
        for key in ("video_id", "frame_files", "voxel_nums", "num_all_voxels"):
            if key not in r:
                raise DataError(f"{path}: selection record lacks {key!r}")
        if len(r["frame_files"]) != len(r["voxel_nums"]):
            raise DataError(f"{path}: {r['video_id']}: frame_files and voxel_nums differ in length")
        out[Path(r["video_id"]).name] = r
    return out


def selected_frame_numbers(record: dict[str, Any], strategy: SamplingStrategy,
                           max_frames: int) -> list[int]:
    """Frame numbers (NNNNN) picked by max coverage, cut at the ratio, in time order."""
    files, gains = record["frame_files"][:max_frames], np.asarray(record["voxel_nums"][:max_frames])
    ratio = strategy.coverage_ratio
    if ratio is not None and len(gains):
        reached = np.flatnonzero(np.cumsum(gains) >= ratio * float(record["num_all_voxels"]))
        files = files[: int(reached[0]) + 1 if reached.size else len(files)]
    return sorted(int(Path(f).stem) for f in files)


@dataclass
class SceneTensors:
    """A scene's frames ready for the model, plus its objects' cell masks."""

    pixel_values: torch.Tensor  # (F, 3, S, S) float32
    token_points: torch.Tensor | None  # (F, G, G, K, 3)
    xyz_m: np.ndarray  # (F, S, S, 3) cropped world coordinates (for proposals' masks)
    valid: np.ndarray  # (F, S, S) bool
    objects: SceneObjects
    object_masks: np.ndarray  # (N, F, C, C) bool: cells inside each object box


def uniform_frame_numbers(scan_dir: Path, num_frames: int) -> list[int]:
    """Frame numbers (NNNNN) of ``num_frames`` evenly spaced frames of a posed-images scan."""
    frames = list_frames(scan_dir)
    return [frames[i].index for i in uniform_indices(len(frames), num_frames)]


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """``--sampling`` and ``--selection-file`` for the command-line tools that read scans."""
    p.add_argument("--sampling", default="uniform",
                   help="frame sampling: uniform | max-coverage | max-coverage-0.90 | "
                        "max-coverage-0.95 (the last three need --selection-file)")
    p.add_argument("--selection-file", type=Path, default=None,
                   help="max-coverage selection JSON (video3d-keyframes over the scans)")


def sampling_from_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> SamplingStrategy:
    """The strategy ``add_sampling_arguments`` asked for; a bad name or a max-coverage
    strategy without a selection file ends the program with the reason."""
    try:
        sampling = SamplingStrategy.parse(args.sampling)
    except ValueError as e:
        p.error(f"--sampling: {e}")
    if sampling is not SamplingStrategy.UNIFORM and args.selection_file is None:
        p.error(f"--sampling {sampling.value} needs --selection-file")
    return sampling


def sampled_frame_numbers(scan_dir: Path, num_frames: int, sampling: SamplingStrategy,
                          selection: dict[str, dict[str, Any]] | None) -> list[int]:
    """The frames a sample of the scan at ``scan_dir`` (named by its scene id) is given:
    ``uniform`` spaces ``num_frames`` evenly over the frames on disk; the max-coverage
    variants take the selection file's first ``num_frames`` picks (cut at the ratio)."""
    if sampling is SamplingStrategy.UNIFORM:
        return uniform_frame_numbers(scan_dir, num_frames)
    if selection is None:
        raise ValueError(f"sampling {sampling.value} needs a selection file")
    if scan_dir.name not in selection:
        raise DataError(f"selection file has no record for scene {scan_dir.name}")
    return selected_frame_numbers(selection[scan_dir.name], sampling, num_frames)


class SceneStore:
    """Loads scenes from the posed-images layout (and caches them in memory).

    Frames: ``uniform`` takes ``num_frames`` evenly spaced frames of those on
    disk; max-coverage variants take the selection file's picks.
    """

    def __init__(self, root: str | Path, processor: Video3DProcessor, num_frames: int,
                 sampling: SamplingStrategy = SamplingStrategy.UNIFORM,
                 selection_file: str | Path | None = None, max_scenes: int | None = None):
        """``max_scenes``: decoded scenes kept in memory, the most recently used (None: all;
        0: none, every load decodes)."""
        self.root = Path(root)
        self.processor = processor
        self.config: Video3DConfig = processor.config
        self.num_frames = num_frames
        self.sampling = sampling
        self.selection = read_selection(selection_file) if selection_file else None
        if sampling is not SamplingStrategy.UNIFORM and self.selection is None:
            raise ValueError(f"sampling {sampling.value} needs a selection file")
        self._cache: collections.OrderedDict[str, SceneTensors] | None = (
            collections.OrderedDict() if max_scenes != 0 else None)
        self._max_scenes = max_scenes
        # masks_for's CellIndex of the frames it last saw (kept with those frames, so the key
        # cannot be reused by another array): evaluation asks for the proposals' masks of one
        # room question after question.
        self._cells: tuple[np.ndarray, CellIndex] | None = None

    def scan_dir(self, scene_id: str) -> Path:
        return self.root / "scannet" / "posed_images" / scene_id

    def frame_numbers(self, scene_id: str) -> list[int]:
        return sampled_frame_numbers(self.scan_dir(scene_id), self.num_frames, self.sampling,
                                     self.selection)

    def load(self, scene_id: str) -> SceneTensors:
        if self._cache is not None and scene_id in self._cache:
            self._cache.move_to_end(scene_id)
            return self._cache[scene_id]
        try:
            st = self._load(scene_id)
        except ScanFormatError as e:
            raise DataError(f"scene {scene_id}: {e}") from e
        if self._cache is not None:
            self._cache[scene_id] = st
            if self._max_scenes is not None and len(self._cache) > self._max_scenes:
                self._cache.popitem(last=False)  # the least recently used
        return st

    def raw_frames(self, scene_id: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Sampled frames before cropping: (rgb (H, W, 3) uint8, xyz_m (H, W, 3), valid (H, W))."""
        from PIL import Image

        scan = self.scan_dir(scene_id)
        K = read_intrinsics(scan)[:3, :3]
        meta = self.root / "scannet" / "scans" / scene_id / f"{scene_id}.txt"
        T_align = read_axis_alignment(meta) if meta.is_file() else None
        out = []
        for n in self.frame_numbers(scene_id):
            name = f"{n:05d}"
            with Image.open(scan / "color" / f"{name}.jpg") as im:
                rgb = np.asarray(im.convert("RGB"))
            with Image.open(scan / "depth" / f"{name}.png") as im:
                depth = np.asarray(im).astype(np.uint16)
            pose = read_matrix(scan / "pose" / f"{name}.txt")
            if not np.all(np.isfinite(pose)):
                raise DataError(f"{scan / 'pose' / (name + '.txt')}: non-finite pose")
            pm = depth_to_world_m(depth, K, pose, T_align=T_align)
            if rgb.shape[:2] != depth.shape:  # ScanNet colour is larger than depth
                rgb = np.asarray(Image.fromarray(rgb).resize(depth.shape[::-1], Image.BILINEAR))
            out.append((rgb, pm.xyz_m, pm.valid))
        return out

    def _load(self, scene_id: str) -> SceneTensors:
        pixel, points, xyzs, valids = [], [], [], []
        for rgb, xyz_m, valid in self.raw_frames(scene_id):
            fr = self.processor.prepare_frame(rgb, xyz_m, valid)
            pixel.append(fr.pixel_values)
            xyzs.append(fr.xyz_m)
            valids.append(fr.valid)
            if fr.token_points is not None:
                points.append(torch.from_numpy(fr.token_points))
        objects = read_scene_boxes(self.root, scene_id)
        xyz, valid = np.stack(xyzs), np.stack(valids)
        masks = self.masks_for(xyz, valid, objects.boxes)
        return SceneTensors(torch.stack(pixel), torch.stack(points) if points else None, xyz,
                            valid, objects, masks)

    def mask_cells(self) -> tuple[int, int]:
        """(cell side in pixels, cells per side) of the grounding masks: the patches for
        ``patch14`` object features, the pooled cells otherwise. Needs a grounding config."""
        grid, g = self.config.grid, self.config.grounding
        if g is None:
            raise ValueError("the model config has no grounding head, so no object masks")
        if g.object_feature is ObjectFeatureKind.PATCH14:
            return grid.patch_size_px, grid.patches_per_side
        return grid.cell_px, grid.pooled_per_side

    def masks_for(self, xyz: np.ndarray, valid: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, F, C, C) cells of each box (C per the grounding config's object feature)."""
        g = self.config.grounding
        if g is None:
            return np.zeros((len(boxes), xyz.shape[0], 0, 0), bool)
        cell, per = self.mask_cells()
        out = np.zeros((len(boxes), xyz.shape[0], per, per), bool)
        if len(boxes) == 0:
            return out
        # CellIndex bounds each cell once and tests pixels only in the cells a box face
        # cuts: the same masks as inside_cells per box (tested); a 16-frame room loads in
        # 58 ms instead of 144 (benchmarks/bench_scene_load.py, BENCHMARKS.md).
        if self._cells is None or self._cells[0] is not xyz:
            self._cells = (xyz, CellIndex(xyz, valid, cell, per))
        index = self._cells[1]
        for i, b in enumerate(boxes):
            out[i] = index.inside(Box3D(b[:3], b[3:]), g.inside_fraction)
        return out


# ---- training items ----------------------------------------------------------------------


@dataclass
class Item:
    """One training/evaluation example, ready for the model."""

    sample: Sample
    input_ids: torch.Tensor  # (T,)
    labels: torch.Tensor  # (T,)
    pixel_values: torch.Tensor  # (F, 3, S, S)
    token_points: torch.Tensor | None  # (F, G, G, K, 3)
    object_masks: np.ndarray | None  # (N, F, C, C) grounding candidates' cells
    object_centres: torch.Tensor | None  # (N, K, 3) encoding input of candidate centres
    positives: list[int] | None  # indices of the target candidates (grounding)
    coord_points: torch.Tensor | None  # (1, K, 3) Scan2Cap <coord> centre
    object_sizes: torch.Tensor | None = None  # (N, 1, 3) encoding input of candidate sizes
    coord_sizes: torch.Tensor | None = None  # (1, 1, 3) Scan2Cap <coord> box size
    answer_cells: torch.Tensor | None = None  # (F, G, G) bool: video tokens that see an object
    # the answer is about (the sample's object_ids); target of the answer losses (step.py)
    subject_cells: torch.Tensor | None = None  # (F, G, G) bool: likewise for the objects the
    # question names (the sample's subject_ids); target of the subject-attention loss
    coord_objects: list[int] | None = None  # candidates whose object features (what the
    # grounding head scores: pooled patches + box encoding) go into the <coord>s, in order
    # (ground_subject_first: the named object, then its nearest neighbours)
    answer_positives: list[int] | None = None  # ground_answer_object: the candidate the
    # second <ground> is taught to pick (the object the answer names); its box encoding goes
    # into the <coord> after it
    anchor_relations: torch.Tensor | None = None  # (N, 8) with it: every candidate's geometry
    # relative to the named object (geometry.anchor_relations_m), what the second hop sees


def target_indices(sample: Sample, objects: SceneObjects) -> list[int]:
    """Candidate indices of the sample's target objects (by object id, else by box)."""
    if sample.object_ids is not None:
        index = {int(o): i for i, o in enumerate(objects.object_ids)}
        missing = [o for o in sample.object_ids if o not in index]
        if not missing:
            return [index[o] for o in sample.object_ids]
    if len(sample.target_boxes) == 0:
        return []
    iou = box_iou_matrix(sample.target_boxes, objects.boxes) if len(objects.boxes) else None
    if iou is None or np.any(iou.max(axis=1) < 0.99):
        raise _fail(sample.file, sample.sample_id,
                    f"target box(es) not among the objects of scene {sample.scene_id}")
    return [int(i) for i in iou.argmax(axis=1)]


class Video3DDataset(torch.utils.data.Dataset):
    """Processed samples → :class:`Item` (training: truth boxes are the candidates)."""

    def __init__(self, samples: Sequence[Sample], store: SceneStore, max_length: int,
                 answer_tasks: Collection[Task] = (Task.SCANQA,),
                 ground_subject_first: bool = False, subject_neighbours: int = 0,
                 ground_answer_object: bool = False):
        """``answer_tasks``: tasks whose samples with ``object_ids`` get ``answer_cells``.
        ``ground_subject_first``: a single-turn ScanQA sample whose question names one object
        (``subject_ids``) is answered ``<ground><coord>answer`` (:func:`grounds_subject_first`),
        with ``subject_neighbours`` more ``<coord>``s for the objects nearest it.
        ``ground_answer_object`` (with ``ground_subject_first``, without neighbours): where the
        answer names one other object (:func:`answer_object_ids`: what is next to / under /
        on the named one), a second hop follows — ``<ground><coord><ground><coord>answer``, the
        second ``<ground>`` taught to pick that object and its box encoding (as a caption's
        ``<coord>``; ``step.run``) fed into the second ``<coord>``."""
        if subject_neighbours < 0:
            raise ValueError(f"subject_neighbours must be >= 0, got {subject_neighbours}")
        if ground_answer_object and (not ground_subject_first or subject_neighbours):
            raise ValueError("ground_answer_object needs ground_subject_first and no "
                             f"subject_neighbours (got {subject_neighbours})")
        self.samples = list(samples)
        self.store = store
        self.max_length = max_length
        self.answer_tasks = frozenset(answer_tasks)
        self.ground_subject_first = ground_subject_first
        self.subject_neighbours = subject_neighbours
        self.ground_answer_object = ground_answer_object

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Item:
        s = self.samples[i]
        try:
            return self.item(s)
        except DataError:
            raise
        except (ValueError, KeyError, OSError) as e:
            raise _fail(s.file, s.sample_id, f"{type(e).__name__}: {e}") from e

    def item(self, s: Sample, with_answer: bool = True,
             candidates: np.ndarray | None = None) -> Item:
        """``candidates`` (N, 6): grounding proposals instead of the truth boxes (evaluation;
        no positives then)."""
        scene = self.store.load(s.scene_id)
        proc = self.store.processor
        n_frames = scene.pixel_values.shape[0]
        first = self.ground_subject_first and grounds_subject_first(s) and with_answer
        coord_objects = answer_positives = anchor_relations = None
        answer_text = s.answer
        if first:  # the named object, then its nearest neighbours: one <coord> each
            k = _object_index(s, scene.objects, s.subject_ids[0], "subject")
            coord_objects = [k] + nearest_boxes(scene.objects.boxes, k, self.subject_neighbours)
            answer_text = f"{GROUND_TOKEN}{COORD_TOKEN * len(coord_objects)}{s.answer}"
            other = answer_object_ids(s) if self.ground_answer_object else []
            if len(other) == 1:  # a second hop: the object the answer names
                answer_positives = [_object_index(s, scene.objects, other[0], "answer")]
                anchor_relations = torch.from_numpy(anchor_relations_m(scene.objects.boxes, k))
                answer_text = f"{(GROUND_TOKEN + COORD_TOKEN) * 2}{s.answer}"
        enc = (proc.encode(n_frames, s.prompt, answer_text, s.follow_ups) if with_answer
               else proc.encode(n_frames, s.prompt))
        if enc.input_ids.numel() > self.max_length:
            raise _fail(s.file, s.sample_id, f"{enc.input_ids.numel()} tokens > max_length "
                                             f"{self.max_length}")
        pos_cfg = proc.config.position
        masks = centres = sizes = positives = coord = coord_size = None
        if s.task.is_grounding:
            boxes = scene.objects.boxes if candidates is None else candidates  # (N, 6)
            masks = (scene.object_masks if candidates is None
                     else self.store.masks_for(scene.xyz_m, scene.valid, candidates))
            centres = torch.from_numpy(center_points(boxes[:, :3], pos_cfg))
            sizes = torch.from_numpy(size_points(boxes[:, 3:], pos_cfg))
            if candidates is None:
                positives = target_indices(s, scene.objects)
        if s.task is Task.SCAN2CAP:
            box = s.box_input if s.box_input is not None else s.target_boxes[0]
            coord = torch.from_numpy(center_points(box[:3], pos_cfg))[None]
            coord_size = torch.from_numpy(size_points(box[3:], pos_cfg))[None]
        elif first:
            # the question's object: the room's objects as grounding candidates (the loss at
            # <ground>), the named one's object feature (and its neighbours') into the <coord>s
            # that follow (teacher forcing; at inference the engine puts the grounded
            # proposal's there)
            boxes = scene.objects.boxes
            masks, positives = scene.object_masks, coord_objects[:1]
            centres = torch.from_numpy(center_points(boxes[:, :3], pos_cfg))
            sizes = torch.from_numpy(size_points(boxes[:, 3:], pos_cfg))
        answer = subject = None
        if s.task in self.answer_tasks:
            g = proc.config.grid.pooled_per_side
            answer = object_token_cells(s.object_ids, scene, g) if s.object_ids else None
            subject = object_token_cells(s.subject_ids, scene, g) if s.subject_ids else None
        return Item(s, enc.input_ids, enc.labels, scene.pixel_values, scene.token_points,
                    masks, centres, positives, coord, sizes, coord_size, answer, subject,
                    coord_objects, answer_positives, anchor_relations)


def grounds_subject_first(sample: Sample) -> bool:
    """Whether a ``ground_subject_first`` model is taught to ground before it answers this
    sample: a single-turn ScanQA question that names exactly one object (our generator's
    ``metadata.subject_object_id``: the object of a colour, *where is*, *what is on* or *what
    is next to* question) and is not a count — a count names every object of its category,
    and grounding the one object of a category would teach "ground, then answer 1"."""
    return (sample.task is Task.SCANQA and not sample.follow_ups
            and sample.question_type != "count"
            and sample.subject_ids is not None and len(sample.subject_ids) == 1)


def answer_object_ids(sample: Sample) -> list[int]:
    """The objects a question's answer names besides the one the question names: the sample's
    ``object_ids`` less its ``subject_ids`` (our generator: what is next to the desk → the
    chair; where is the cup → the table under it; what is on the table → what stands on it).
    Empty for a colour question (the answer is about the named object itself)."""
    named = set(sample.subject_ids or [])
    return [o for o in (sample.object_ids or []) if o not in named]


def _object_index(sample: Sample, objects: SceneObjects, object_id: int, role: str) -> int:
    index = {int(o): i for i, o in enumerate(objects.object_ids)}
    if object_id not in index:
        raise _fail(sample.file, sample.sample_id, f"{role} object {object_id} is not among "
                                                   f"the objects of scene {sample.scene_id}")
    return index[object_id]


def answer_token_cells(sample: Sample, scene: SceneTensors, pooled_per_side: int
                       ) -> torch.Tensor | None:
    """(F, G, G) bool: pooled video tokens whose cell sees one of ``sample.object_ids``
    (:func:`object_token_cells`)."""
    return object_token_cells(sample.object_ids or [], scene, pooled_per_side)


def object_token_cells(object_ids: Sequence[int], scene: SceneTensors, pooled_per_side: int
                       ) -> torch.Tensor | None:
    """(F, G, G) bool: pooled video tokens whose cell sees one of ``object_ids``.

    Built from the scene's per-object cell masks (``SceneStore.masks_for``, C cells a
    side) by OR-ing the cells that fall into each pooled token (cell i → token
    ⌊i·G/C⌋). None when none of the objects is in the scene's boxes or in view.
    """
    index = {int(o): i for i, o in enumerate(scene.objects.object_ids)}
    rows = [index[o] for o in object_ids if o in index]
    if not rows or scene.object_masks.shape[-1] == 0:
        return None
    pooled = pool_cells(scene.object_masks[rows].any(axis=0), pooled_per_side)  # (F, G, G)
    return torch.from_numpy(pooled) if pooled.any() else None


def pool_cells(cells: np.ndarray, pooled_per_side: int) -> np.ndarray:
    """(..., C, C) bool cell masks → (..., G, G): a token is set when any of its cells is
    (cell i belongs to token ⌊i·G/C⌋)."""
    c, g = cells.shape[-1], pooled_per_side
    starts = np.flatnonzero(np.diff((np.arange(c) * g) // c, prepend=-1) > 0)
    if len(starts) != g:
        raise ValueError(f"cannot pool a {c}-cell object mask onto {g} tokens a side")
    return np.logical_or.reduceat(np.logical_or.reduceat(cells, starts, axis=-2), starts, axis=-1)


def collate(items: list[Item]) -> list[Item]:
    """Items stay a list; the training step pads the text itself."""
    return items
