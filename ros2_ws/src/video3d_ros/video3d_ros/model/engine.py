"""Inference engine: encode keyframes once, ask many questions.

The segment-anything predictor pattern. :meth:`Video3DEngine.add_keyframe`
runs the vision tower, projector, pooling and 3D encoding for one keyframe and
caches the result (plus what grounding needs later: the un-pooled or pooled
features and the cropped per-pixel coordinates). Queries then only run the
language model. While the keyframe set is unchanged, the KV cache of the visual
prefix (system prompt + video tokens) is kept and every query only pre-fills
its own suffix; after the query the cache is cropped back to the prefix.

Keyframe groups: a model reads as many frames as it was trained with (the embedded model 8);
given more, ``groups=G`` reads the cached keyframes as G interleaved groups (keyframes 0, G,
2G, … ; 1, G+1, … ; …), each its own sequence with its own cached prefix, and combines them —
text: the mean of the groups' next-token log-probabilities, step by step; grounding: the mean
of the groups' scores, against object features pooled from every keyframe. ``groups=1`` is
the paper's single pass. (Ours, not the paper's; BENCHMARKS.md, "Reading the whole buffer in
groups".)

Grounding inside an answer: given ``proposals``, a text answer that begins with ``<ground>``
(a model trained with the recipe option ``ground_subject_first``: it grounds the object the
question names, then answers) is continued as training taught it — the proposals are scored
at ``<ground>`` as for a grounding query, and the best one's object feature (what the
grounding head scored: its pooled patches and box encoding) goes into the ``<coord>`` fed next
(``Answer.grounded_index``), followed by the features of the ``grounding.answer_neighbours``
proposals nearest it, a ``<coord>`` each. A model trained with ``ground_answer_object``
(``grounding.grounds_answer_object``) may then emit a second ``<ground>``: the object its answer
names (what is next to / under / on the first) is grounded the same way — the proposals
scored with their geometry relative to the first object (``GroundingHead.with_anchor``) — and
its box encoding (as a caption's ``<coord>``: the box's size tells the generated categories
apart) fed into one more ``<coord>`` (``Answer.answer_object_index``). Without proposals, or
for a model without the ``grounds_in_answers`` mark, ``<ground>`` is never chosen. (Ours, not
the paper's.)

Keyframes are ordered by ``stamp_s`` (then insertion). :meth:`sync` makes the
cached set equal to a keyframe-buffer snapshot (anything with ``keyframes``,
each having ``frame_id``, ``stamp_s``, ``rgb``, ``xyz_m``, ``valid``).

Errors inside the model (out of memory, kernel failures: ``RuntimeError``)
are re-raised as :class:`ModelError`; the prefix cache is dropped and the
engine remains usable. Input errors stay ``ValueError``.

Example::

    engine = Video3DEngine(model, processor)
    engine.sync(buffer.snapshot())
    engine.ask("How many chairs are there?").text
    engine.ground("the lamp left of the bed", proposals).best_box
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import DynamicCache

from video3d_ros.geometry import Box3D, anchor_relations_m, nearest_boxes

from .checkpoint import PAPER_TRAINED_FRAMES
from .config import ObjectFeatureKind
from .errors import ModelError
from .grounding import select_objects
from .modeling import Video3DModel, hf_text_config
from .object_features import CellIndex
from .position_encoding import center_points, size_points
from .processor import (
    Video3DProcessor,
    caption_prompt,
    grounding_prompt,
    multi_grounding_prompt,
    qa_prompt,
    sqa_prompt,
)
from .runtime import ENGINE_SDPA_BACKENDS


class KeyframeLike(Protocol):
    frame_id: int
    stamp_s: float
    rgb: np.ndarray
    xyz_m: np.ndarray
    valid: np.ndarray


class SnapshotLike(Protocol):
    keyframes: Sequence[KeyframeLike]


@dataclass
class _Keyframe:
    order: tuple[float, int]  # (stamp_s, serial: unique per add_keyframe call)
    tokens: torch.Tensor  # (T_f, D) visual tokens on the model device
    object_features: torch.Tensor | None  # (C, C, D) features for object proposals
    xyz_m: np.ndarray  # (S, S, 3) cropped coordinates
    valid: np.ndarray  # (S, S) cropped validity
    # weak references to the arrays it was encoded from (weak: an evicted keyframe's images
    # are not kept alive by the cache): sync re-encodes a snapshot keyframe whose id is
    # cached but whose arrays are others
    source: tuple[weakref.ref, weakref.ref] | None = None


@dataclass
class _Prefix:
    key: tuple[int, ...]  # the keyframes' serials in order (_frames_key)
    cache: DynamicCache  # KV of the prefix
    length: int  # prefix tokens


@dataclass
class Answer:
    text: str  # decoded answer, special tokens removed
    token_ids: list[int]  # generated ids (EOS excluded; <ground> and <coord> too)
    # the proposal the answer grounded before answering (a model trained to ground the
    # question's object first emits <ground>: generate's ``proposals``), else None
    grounded_index: int | None = None
    grounded_score: float | None = None  # its cosine score (the groups' mean)
    # the proposal a second <ground> picked: the object the answer names (a model trained
    # with ground_answer_object), else None
    answer_object_index: int | None = None
    answer_object_score: float | None = None


@dataclass
class SyncResult:
    added: tuple[int, ...]  # keyframe ids encoded by this sync
    removed: tuple[int, ...]  # keyframe ids dropped by this sync


@dataclass
class GroundingResult:
    scores: np.ndarray  # (N,) cosine score per proposal
    no_target_score: float  # score of the learned "no referent" entry
    best_index: int | None  # argmax over proposals (None when there are none)
    best_box: Box3D | None  # proposals[best_index]
    selected: list[int]  # multi-object decoding (may be empty: no referent)


class _GroupedRun:
    """``run(ids, coord_embeds) → (V,) fp32 next-token scores``: the keyframe groups'
    sequences fed the same tokens; one group's logits, or the groups' mean log-probabilities.
    ``last_hidden``: each group's last hidden state after the latest call (grounding)."""

    def __init__(self, sessions: list):
        self.sessions = sessions
        self.last_hidden: list[torch.Tensor] = []

    def __call__(self, ids: list[int], coord: torch.Tensor | None) -> torch.Tensor:
        outs = [r(ids, coord) for r in self.sessions]
        self.last_hidden = [o.last_hidden_state[0, -1] for o in outs]
        logits = [o.logits[0, -1].float() for o in outs]
        if len(logits) == 1:
            return logits[0]
        return torch.stack([torch.log_softmax(x, -1) for x in logits]).mean(0)


class Video3DEngine:
    def __init__(self, model: Video3DModel, processor: Video3DProcessor,
                 max_new_tokens: int = 64, multi_object_threshold: float | None = None,
                 trained_frames: int = PAPER_TRAINED_FRAMES):
        """``multi_object_threshold`` defaults to the config's, in the units of its
        ``multi_object_selection`` (the paper's rule: cumulative probability 0.4, as the
        reference code; the paper text says 0.25). ``trained_frames``: frames per sample the model
        was trained with (callers default a query's keyframe count to it)."""
        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
        if trained_frames < 1:
            raise ValueError(f"trained_frames must be >= 1, got {trained_frames}")
        self.trained_frames = trained_frames
        self.model = model.eval()
        self.processor = processor
        self.config = model.config
        self.max_new_tokens = max_new_tokens
        g = self.config.grounding
        if g is not None and multi_object_threshold is not None:
            g.check_threshold(multi_object_threshold)
        self.multi_object_threshold = (multi_object_threshold if multi_object_threshold
                                       is not None else (g.multi_object_threshold if g else 0.4))
        self._frames: dict[int, _Keyframe] = {}
        self._counter = itertools.count()
        self._prefixes: dict[tuple[int, ...], _Prefix] = {}  # per keyframe group (_frames_key)
        self._objects: tuple[tuple, torch.Tensor] | None = None  # (keyframes + boxes key, (N, D))
        self._cells: tuple[tuple[int, ...], CellIndex] | None = None  # per keyframe set
        self._lock = threading.RLock()
        self._text_config = hf_text_config(self.config, "sdpa")
        # kernels SDPA may pick for the decoder's calls (None: torch's own choice, all of them)
        self.sdpa_backends: tuple[SDPBackend, ...] | None = ENGINE_SDPA_BACKENDS

    # ---- keyframes ----------------------------------------------------------------------

    @property
    def keyframe_ids(self) -> tuple[int, ...]:
        """Cached keyframes in video order."""
        with self._lock:
            return tuple(sorted(self._frames, key=lambda k: self._frames[k].order))

    @torch.inference_mode()
    def add_keyframe(self, keyframe_id: int, rgb: np.ndarray, xyz_m: np.ndarray,
                     valid: np.ndarray, stamp_s: float | None = None) -> None:
        """Encode and cache one keyframe (replaces an existing one with the same id).

        Args:
            rgb: (H', W', 3) uint8; xyz_m: (H, W, 3) world metres; valid: (H, W) bool.
            stamp_s: capture time used for ordering; None → after all others.
        """
        frame = self.processor.prepare_frame(rgb, xyz_m, valid)
        points = None if frame.token_points is None else torch.from_numpy(frame.token_points)[None]
        with self._lock, self._model_errors():
            enc = self.model.encode_frames(frame.pixel_values[None].to(self.model.device), points)
            kind = self.config.grounding.object_feature if self.config.grounding else None
            feats = {ObjectFeatureKind.PATCH14: enc.patch_features,
                     ObjectFeatureKind.PATCH27: enc.pooled_features, None: None}[kind]
            n = next(self._counter)
            self._frames[keyframe_id] = _Keyframe(
                order=(float("inf") if stamp_s is None else float(stamp_s), n),
                tokens=enc.tokens[0], object_features=None if feats is None else feats[0],
                xyz_m=frame.xyz_m, valid=frame.valid)

    def remove_keyframe(self, keyframe_id: int) -> None:
        with self._lock:
            if keyframe_id not in self._frames:
                raise KeyError(f"keyframe {keyframe_id} is not cached")
            del self._frames[keyframe_id]

    def sync(self, snapshot: SnapshotLike) -> SyncResult:
        """Add/remove keyframes so the cached set equals ``snapshot.keyframes``.

        A keyframe is the cached one when its id is cached *and* its ``rgb`` and ``xyz_m``
        are the arrays that were encoded: a buffer's snapshots share their keyframe objects,
        while another recording (``ScanSession``) numbers its frames from 0 as well — its
        frame 20 is encoded anew, not taken for the last recording's (``added`` lists it)."""
        with self._lock:
            wanted = {int(k.frame_id): k for k in snapshot.keyframes}
            removed = tuple(k for k in self._frames if k not in wanted)
            for k in removed:
                del self._frames[k]
            added = tuple(k for k, f in wanted.items() if not self._is_cached(k, f))
            for k in added:
                f = wanted[k]
                self.add_keyframe(k, f.rgb, f.xyz_m, f.valid, stamp_s=f.stamp_s)
                self._frames[k].source = (weakref.ref(f.rgb), weakref.ref(f.xyz_m))
            return SyncResult(added=added, removed=removed)

    def _is_cached(self, keyframe_id: int, frame: KeyframeLike) -> bool:
        cached = self._frames.get(keyframe_id)
        return (cached is not None and cached.source is not None
                and cached.source[0]() is frame.rgb and cached.source[1]() is frame.xyz_m)

    # ---- queries ------------------------------------------------------------------------

    def ask(self, question: str, max_new_tokens: int | None = None,
            use_cache: bool = True, groups: int = 1,
            proposals: Sequence[Box3D] | None = None) -> Answer:
        """Answer a question about the scene (greedy decoding, stops at EOS; ``proposals``:
        the module docstring, grounding inside an answer)."""
        return self.generate(qa_prompt(question), max_new_tokens=max_new_tokens,
                             use_cache=use_cache, groups=groups, proposals=proposals)

    def ask_situated(self, situation: str, question: str,
                     max_new_tokens: int | None = None, groups: int = 1,
                     proposals: Sequence[Box3D] | None = None) -> Answer:
        """SQA3D-style: a situation description, then the question."""
        return self.generate(sqa_prompt(situation, question), max_new_tokens=max_new_tokens,
                             groups=groups, proposals=proposals)

    def caption(self, box: Box3D, max_new_tokens: int | None = None,
                use_cache: bool = True, groups: int = 1) -> Answer:
        """Describe the object in ``box`` (its centre's encoding goes into ``<coord>``)."""
        return self.generate(caption_prompt(), coord_box=box, max_new_tokens=max_new_tokens,
                             use_cache=use_cache, groups=groups)

    @torch.inference_mode()
    def generate(self, task_text: str, coord_box: Box3D | None = None,
                 max_new_tokens: int | None = None, use_cache: bool = True,
                 groups: int = 1, proposals: Sequence[Box3D] | None = None) -> Answer:
        """Greedy decoding of the answer to ``task_text`` (``groups``, ``proposals``: module
        docstring)."""
        limit = max_new_tokens or self.max_new_tokens
        ids = self.processor.token_ids
        suffix = self._suffix(task_text)
        coord = self._coord_embeds(coord_box)
        g = self.config.grounding
        can_ground = bool(proposals) and self.model.ground_head is not None and g.grounds_in_answers
        hops = 2 if can_ground and g.grounds_answer_object else 1
        picked: list[tuple[int, float]] = []  # (proposal, score) per <ground>, in order
        with self._lock, self._model_errors(), self._grouped(use_cache, task_text, groups) as run:
            objects = self._object_features(list(proposals)) if can_ground else None
            rows = np.stack([b.as_row() for b in proposals]) if can_ground else None
            scores = run(suffix, coord)
            tokens: list[int] = []
            for step in range(limit):
                scores[ids.video] = float("-inf")  # a placeholder is never a valid output
                scores[ids.coord] = float("-inf")  # fed after <ground>, never chosen
                # grounding opens an answer (then, for a two-hop model, may follow once more)
                if not (can_ground and not tokens and len(picked) < hops):
                    scores[ids.ground] = float("-inf")
                nxt = int(torch.argmax(scores))
                if nxt in ids.eos:
                    break
                if nxt == ids.ground:
                    run([nxt], None)
                    # a second hop sees the proposals relative to the first one's object
                    seen = (objects if not picked else self.model.ground_head.with_anchor(
                        objects, torch.from_numpy(anchor_relations_m(rows, picked[0][0]))))
                    per_group = [self.model.ground_scores(h, seen).float()
                                 for h in run.last_hidden]
                    g_scores = torch.stack(per_group).mean(0)[:len(proposals)]  # (N,)
                    best = int(torch.argmax(g_scores))
                    picked.append((best, float(g_scores[best])))
                    if len(picked) == 1:  # its object feature (pooled patches + box encoding,
                        # as scored), then its nearest neighbours', a <coord> each
                        fed = objects[[best] + nearest_boxes(rows, best, g.answer_neighbours)]
                    else:  # the answer's object: its box encoding, as a caption's <coord>
                        fed = self._coord_embeds(proposals[best])
                    scores = run([ids.coord] * fed.shape[0], fed)
                    continue
                tokens.append(nxt)
                scores = run([nxt], None)
        first, second = (picked + [(None, None), (None, None)])[:2]
        return Answer(text=self.processor.decode(tokens), token_ids=tokens,
                      grounded_index=first[0], grounded_score=first[1],
                      answer_object_index=second[0], answer_object_score=second[1])

    @torch.inference_mode()
    def next_token_logits(self, task_text: str, use_cache: bool = True,
                          coord_box: Box3D | None = None, groups: int = 1) -> torch.Tensor:
        """(V,) fp32 scores greedy decoding takes the first token's argmax of, after the
        prompt of ``task_text``: the logits, or for ``groups`` > 1 the groups' mean
        log-probabilities (for checks and benchmarks)."""
        suffix, coord = self._suffix(task_text), self._coord_embeds(coord_box)
        with self._lock, self._model_errors(), self._grouped(use_cache, task_text, groups) as run:
            return run(suffix, coord).cpu()

    @torch.inference_mode()
    def ground(self, description: str, proposals: Sequence[Box3D],
               threshold: float | None = None, use_cache: bool = True,
               multiple: bool = False, groups: int = 1) -> GroundingResult:
        """Score proposals against a referring expression.

        Returns per-proposal scores, the best proposal, and the multi-object
        selection (the model config's ``multi_object_selection``; ``threshold`` in its
        units, default the engine's).
        ``multiple``: ask as Multi3DRefer is trained (zero, one or several referents:
        :func:`multi_grounding_prompt`) instead of ScanRefer (one referent). Read
        ``selected`` then; a model's selection is only as good as the prompt it was
        trained with (BENCHMARKS.md, "The node's multi-object grounding").
        ``groups``: the module docstring; the scores are the groups' mean cosines.
        """
        task_text = (multi_grounding_prompt if multiple else grounding_prompt)(description)
        return self.ground_prompt(task_text, proposals, threshold, use_cache, groups)

    @torch.inference_mode()
    def ground_prompt(self, task_text: str, proposals: Sequence[Box3D],
                      threshold: float | None = None, use_cache: bool = True,
                      groups: int = 1) -> GroundingResult:
        """:meth:`ground` for a whole grounding task text (an evaluation file's prompt)."""
        if self.model.ground_head is None:
            raise ValueError("this model has no grounding head")
        if threshold is not None:
            self.config.grounding.check_threshold(threshold)
        thr = self.multi_object_threshold if threshold is None else threshold
        suffix = self._suffix(task_text) + [self.processor.token_ids.ground]
        with self._lock, self._model_errors():
            objects = self._object_features(list(proposals))  # pooled from every keyframe
            per_group = []
            for frames in self._groups(groups):
                with self._session(use_cache, task_text, frames) as run:
                    hidden = run(suffix, None).last_hidden_state[0, -1]  # (D,)
                per_group.append(self.model.ground_scores(hidden, objects).float())
            scores = torch.stack(per_group).mean(0).cpu()  # (N+1,)
        n = len(proposals)
        best = int(torch.argmax(scores[:n])) if n else None
        g = self.config.grounding
        return GroundingResult(
            scores=scores[:n].numpy(), no_target_score=float(scores[n]), best_index=best,
            best_box=None if best is None else proposals[best],
            selected=select_objects(scores, g.multi_object_selection, g.temperature, thr))

    @torch.inference_mode()
    def prepare(self, proposals: Sequence[Box3D] | None = None, groups: int = 1) -> None:
        """Do ahead the part of a query that does not depend on its text, for the synced
        keyframes: pre-fill their visual prefix, one per group (a question-first model has
        none: its prefix holds the question) and, given ``proposals``, pool their object
        features. Both stay cached until the keyframes (or the proposals) change, so the
        next query (with the same ``groups``) starts from them."""
        with self._lock, self._model_errors():
            if not self.processor.question_first:
                for frames in self._groups(groups):
                    self._ensure_prefix(frames)
            if proposals and self.model.ground_head is not None:
                self._object_features(list(proposals))

    # ---- internals ----------------------------------------------------------------------

    def _suffix(self, task_text: str) -> list[int]:
        return self.processor.suffix_ids(task_text)[0]

    def _coord_embeds(self, box: Box3D | None) -> torch.Tensor | None:
        if box is None:
            return None
        pos = self.config.position
        pts = torch.from_numpy(center_points(box.center_m, pos))[None]  # (1, K, 3)
        size = torch.from_numpy(size_points(box.size_m, pos))[None]  # (1, 1, 3)
        return self.model.encode_boxes(pts, size)  # (1, D)

    def _ordered(self) -> list[tuple[int, _Keyframe]]:
        return sorted(self._frames.items(), key=lambda kv: kv[1].order)

    @staticmethod
    def _frames_key(frames: list[tuple[int, _Keyframe]]) -> tuple[int, ...]:
        """What the cached prefix, cells and object features were computed from: the
        keyframes' serials, not their ids — a caller may reuse an id for another frame
        (``add_keyframe`` replaces it; an evaluation numbers every scene's frames 0…F−1),
        and a cache keyed by ids would then serve the old frame's encoding."""
        return tuple(f.order[1] for _, f in frames)

    def _video_tokens(self, frames: list[tuple[int, _Keyframe]]) -> torch.Tensor | None:
        if not frames:
            return None
        return torch.cat([f.tokens for _, f in frames])  # (F·T_f, D)

    def _ids_tensor(self, ids: list[int]) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.long, device=self.model.device)

    def _groups(self, groups: int) -> list[list[tuple[int, _Keyframe]]]:
        """The cached keyframes as ``groups`` interleaved groups in video order (fewer when
        there are fewer keyframes; one empty group when there are none). Cached prefixes of
        any other grouping are dropped: one grouping's are kept (a 32-frame prefix of the 7B
        shape is hundreds of MB on the GPU), so asking with another ``groups`` rebuilds."""
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        frames = self._ordered()
        n = max(1, min(groups, len(frames)))
        out = [frames[i::n] for i in range(n)]
        keep = {self._frames_key(g) for g in out}
        for k in [k for k in self._prefixes if k not in keep]:
            del self._prefixes[k]
        return out

    def _ensure_prefix(self, frames: list[tuple[int, _Keyframe]]) -> _Prefix:
        """The KV cache of ``frames``' visual prefix, built once while they stay cached."""
        key = self._frames_key(frames)
        if key in self._prefixes:
            return self._prefixes[key]
        ids = self.processor.prefix_ids(len(frames))
        cache = DynamicCache(config=self._text_config)
        self._decode(ids, self._video_tokens(frames), None, cache)
        self._prefixes[key] = _Prefix(key=key, cache=cache, length=len(ids))
        return self._prefixes[key]

    def _decode(self, ids: list[int], video: torch.Tensor | None, coord: torch.Tensor | None,
                cache: DynamicCache):
        """One decoder call continuing ``cache`` (last position's logits), with the attention
        kernels of ``sdpa_backends`` (torch's switches are process-wide: callers hold the
        engine's lock, and the previous setting is restored on return)."""
        kernels = (sdpa_kernel(list(self.sdpa_backends)) if self.sdpa_backends
                   else contextlib.nullcontext())
        with kernels:
            return self.model(self._ids_tensor(ids), video_tokens=video, coord_embeds=coord,
                              past_key_values=cache, use_cache=True, logits_to_keep=1)

    @contextlib.contextmanager
    def _grouped(self, use_cache: bool, task_text: str, groups: int) -> Iterator[_GroupedRun]:
        """Yield a :class:`_GroupedRun` over one sequence per keyframe group."""
        with contextlib.ExitStack() as stack:
            yield _GroupedRun([stack.enter_context(self._session(use_cache, task_text, frames))
                               for frames in self._groups(groups)])

    @contextlib.contextmanager
    def _session(self, use_cache: bool, task_text: str | None,
                 frames: list[tuple[int, _Keyframe]]) -> Iterator:
        """Yield ``run(ids, coord_embeds) → Video3DOutput`` continuing one sequence that
        reads ``frames``.

        Cached: starts after the visual prefix and crops the cache back on exit.
        Uncached: the first call pre-fills prefix + ids from scratch. A question-first
        model's prefix holds ``task_text``, so it is never cached.
        """
        if self.processor.question_first:
            use_cache = False
        if use_cache:
            prefix = self._ensure_prefix(frames)
            cache, first, head, video = prefix.cache, [False], [], None
        else:
            prefix, cache, first = None, DynamicCache(config=self._text_config), [True]
            head = self.processor.prefix_ids(len(frames), task_text)
            video = self._video_tokens(frames)

        def run(ids: list[int], coord: torch.Tensor | None):
            video_now = None
            if first[0]:
                first[0] = False
                ids, video_now = head + ids, video
            return self._decode(ids, video_now, coord, cache)

        try:
            yield run
        finally:
            if prefix is not None:
                extra = cache.get_seq_length() - prefix.length
                if extra > 0:
                    cache.crop(-extra)
                if cache.get_seq_length() != prefix.length:
                    self._prefixes.pop(prefix.key, None)

    def _object_features(self, proposals: list[Box3D]) -> torch.Tensor:
        """(N, D) proposal features; cached for the current keyframes and proposal set.

        They depend on the keyframes and the boxes, not on the query text, so
        repeated grounding queries on an unchanged buffer reuse them.
        """
        frames = self._ordered()
        d = self.config.text.hidden_size
        if not proposals:
            return torch.zeros(0, d, device=self.model.device, dtype=self.model.dtype)
        key = (self._frames_key(frames),
               np.stack([b.as_row() for b in proposals]).tobytes())
        if self._objects is not None and self._objects[0] == key:
            return self._objects[1]
        grid, g = self.config.grid, self.config.grounding
        if g.object_feature is ObjectFeatureKind.PATCH14:
            cell, per_side = grid.patch_size_px, grid.patches_per_side
        else:
            cell, per_side = grid.cell_px, grid.pooled_per_side
        if frames:
            index = self._cell_index(frames, key[0], cell, per_side)
            feats = torch.stack([f.object_features for _, f in frames])  # (F, C, C, D)
            masks = [index.inside(b, g.inside_fraction) for b in proposals]
        else:
            feats = torch.zeros(0, per_side, per_side, d, device=self.model.device,
                                dtype=self.model.dtype)
            masks = [np.zeros((0, per_side, per_side), bool) for _ in proposals]
        centres = sizes = None
        if g.add_center_encoding:
            c = np.stack([b.center_m for b in proposals])  # (N, 3)
            centres = torch.from_numpy(center_points(c, self.config.position))  # (N, K, 3)
            sz = np.stack([b.size_m for b in proposals])  # (N, 3)
            sizes = torch.from_numpy(size_points(sz, self.config.position))  # (N, 1, 3)
        out = self.model.object_features(feats, masks, centres, sizes)
        self._objects = (key, out)
        return out

    def _cell_index(self, frames: list[tuple[int, _Keyframe]], key: tuple[int, ...], cell: int,
                    per_side: int) -> CellIndex:
        if self._cells is None or self._cells[0] != key:
            xyz = np.stack([f.xyz_m for _, f in frames])  # (F, S, S, 3)
            valid = np.stack([f.valid for _, f in frames])  # (F, S, S)
            self._cells = (key, CellIndex(xyz, valid, cell, per_side))
        return self._cells[1]

    @contextlib.contextmanager
    def _model_errors(self) -> Iterator[None]:
        try:
            yield
        except RuntimeError as e:  # includes torch.OutOfMemoryError
            self._prefixes, self._objects, self._cells = {}, None, None
            if self.model.device.type == "cuda":
                torch.cuda.empty_cache()
            raise ModelError(f"model failed: {type(e).__name__}: {e}") from e
