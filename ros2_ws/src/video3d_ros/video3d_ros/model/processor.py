"""Processor: frames → tower inputs and token coordinates; text → prompt ids.

Prompt layout (Qwen2 chat template, "qwen_1_5" conversation)::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n
    <image> × (frames · tokens_per_frame)                          ← visual prefix
    \\n{SPATIAL_INSTRUCTION}\\n{task text}<|im_end|>\\n<|im_start|>assistant\\n  ← suffix
    {answer}<|im_end|>                                             ← training only

Everything up to the video tokens is the *visual prefix* whose KV cache the
engine reuses across questions. The task texts follow the reference data files.

That is the paper's layout (``PromptLayout.VIDEO_FIRST``). Ours, ``QUESTION_FIRST``,
moves the task text before the video so that each video token can attend to the
question (a causal decoder's video tokens otherwise never see it)::

    <|im_start|>system\n…<|im_end|>\n<|im_start|>user\n{SPATIAL_INSTRUCTION}\n{task text}\n
    <image> × (frames · tokens_per_frame)                          ← prefix (holds the task)
    <|im_end|>\n<|im_start|>assistant\n                              ← suffix
    {answer}<|im_end|>                                             ← training only

Its prefix depends on the question, so the engine cannot reuse it.

Frames: RGB is resized (bilinear, antialiased) and windowed to the tower's square
with the same :class:`CropSpec` the per-pixel coordinates go through (nearest
neighbour), so pixels and coordinates line up. ``video.frame_fit`` picks the window:
the paper's centre crop of the short side, or the whole frame padded (padding is
grey — 0 after SigLIP's normalisation — and its pixels are invalid, with the
coordinates of the nearest frame pixel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from video3d_ros.geometry import CropSpec, patch_coords_m, resize_crop_nearest, resize_crop_params

from .config import PositionEncodingKind, PromptLayout, Video3DConfig
from .modeling import IGNORE_INDEX
from .position_encoding import prepare_coords
from .tokenizer import COORD_TOKEN, IM_END, IM_START, VIDEO_TOKEN, token_ids_of

SYSTEM_PROMPT = "You are a helpful assistant."
SPATIAL_INSTRUCTION = ("The video captures 3D spatial information of a scene. Please focus on "
                       "the spatial relationships in the video and answer the following "
                       "questions.")
PIXEL_MEAN = 0.5  # SigLIP normalisation
PIXEL_STD = 0.5


# ---- task prompts -----------------------------------------------------------------------
# The one definition of every task's user text. The data converter
# (video3d_train.convert) writes the processed training files with these functions and
# the engine asks with them, so a model sees at inference exactly the text it was
# trained on (tests/training/test_prompts.py checks it token by token).

GROUNDING_INSTRUCTION = "Identify the object according to the following description."
MULTI_OBJECT_NOTE = "There may be no corresponding object, or there may be one or more objects."


def referring_text(description: str) -> str:
    """A referring expression as the model sees it: first character upper-cased, rest as written.

    ScanRefer/Multi3DRefer descriptions are lower-case; for them this equals the
    reference's ``str.capitalize``, but a user's "The lamp. It is next to the TV." keeps
    its other capitals instead of becoming "The lamp. it is next to the tv.".
    """
    return description[:1].upper() + description[1:]


def qa_prompt(question: str) -> str:
    """ScanQA-style question."""
    return f" {question} Answer the question simply."


def sqa_prompt(situation: str, question: str) -> str:
    """SQA3D: situation then question."""
    return f" {situation} {question} Answer the question using a single word or phrase."


def grounding_prompt(description: str) -> str:
    """ScanRefer ("cls" template): one target; the answer is ``<ground>``."""
    return f"{GROUNDING_INSTRUCTION}\n{referring_text(description)}"


def multi_grounding_prompt(description: str) -> str:
    """Multi3DRefer: zero, one or several targets; the answer is ``<ground>``."""
    return f"{grounding_prompt(description)}\n{MULTI_OBJECT_NOTE}"


def caption_prompt() -> str:
    """Scan2Cap: the ``<coord>`` token receives the encoding of the box centre.

    Spacing as in the processed Scan2Cap files (" <coord> , "), which the models were
    trained on.
    """
    return f" Given an object located at {COORD_TOKEN} , describe the object in detail."


@dataclass
class PreparedFrame:
    """One frame ready for the model."""

    pixel_values: torch.Tensor  # (3, S, S) float32, normalised
    xyz_m: np.ndarray  # (S, S, 3) float32 cropped per-pixel world coordinates, metres
    valid: np.ndarray  # (S, S) bool cropped validity
    token_points: np.ndarray | None  # (G, G, K, 3) encoding input per pooled token


@dataclass
class EncodedPrompt:
    input_ids: torch.Tensor  # (T,) int64
    labels: torch.Tensor  # (T,) int64, IGNORE_INDEX outside the answer
    prefix_len: int  # tokens up to the last video token (system, user header[, task], video)


class Video3DProcessor:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: Video3DConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.token_ids = token_ids_of(tokenizer)

    # ---- frames -------------------------------------------------------------------------

    def prepare_frame(self, rgb: np.ndarray, xyz_m: np.ndarray,
                      valid: np.ndarray) -> PreparedFrame:
        """Resize/crop one frame and compute its token coordinates.

        Args:
            rgb: (H', W', 3) uint8.
            xyz_m: (H, W, 3) world coordinates per depth pixel, metres (finite; the
                depth image may differ in size from rgb but not in aspect ratio).
            valid: (H, W) bool.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        hd, wd = np.shape(xyz_m)[:2]
        if np.shape(xyz_m) != (hd, wd, 3) or np.shape(valid) != (hd, wd):
            raise ValueError(f"xyz_m must be (H, W, 3) and valid (H, W), got {np.shape(xyz_m)} "
                             f"and {np.shape(valid)}")
        if abs(h * wd - w * hd) > max(h, w, hd, wd):
            raise ValueError(f"rgb ({h}, {w}) and depth ({hd}, {wd}) differ in aspect ratio; "
                             "their crops would not line up")
        size = self.config.vision.image_size_px
        fit = self.config.video.frame_fit
        spec = resize_crop_params(h, w, size, fit)
        dspec = resize_crop_params(hd, wd, size, fit)
        img = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)
        img = F.interpolate(img, size=(spec.resized_height_px, spec.resized_width_px),
                            mode="bilinear", antialias=True, align_corners=False)[0]
        pixel_values = _window(img, spec, PIXEL_MEAN)
        pixel_values = ((pixel_values - PIXEL_MEAN) / PIXEL_STD).contiguous()  # (3, S, S)
        xyz = resize_crop_nearest(np.asarray(xyz_m, dtype=np.float32), dspec)  # (S, S, 3)
        ok = resize_crop_nearest(np.asarray(valid, dtype=bool), dspec, fill=False)  # (S, S)
        pos = self.config.position
        points = None
        if pos.kind is not PositionEncodingKind.NONE:
            coords = patch_coords_m(xyz, ok, self.config.grid, pos.aggregation,
                                    pos.ignore_invalid)  # (G, G, 3K)
            points = prepare_coords(coords, pos)  # (G, G, K, 3)
        return PreparedFrame(pixel_values, xyz, ok, points)

    # ---- text ---------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def question_first(self) -> bool:
        """Whether the task text comes before the video (its prefix is then per question)."""
        return self.config.video.prompt_layout is PromptLayout.QUESTION_FIRST

    def prefix_ids(self, num_frames: int, task_text: str | None = None) -> list[int]:
        """System prompt, user header and ``num_frames · tokens_per_frame`` placeholders.

        Video-first (the paper's layout), the prefix is the same for every question and
        ``task_text`` is not part of it (it goes into :meth:`suffix_ids`). Question-first,
        the task text is part of the prefix and must be given.
        """
        head = f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n{IM_START}user\n"
        if self.question_first:
            if task_text is None:
                raise ValueError("the question-first layout puts the task text before the "
                                 "video: pass task_text to prefix_ids")
            _check_task_text(task_text)
            head += f"{SPATIAL_INSTRUCTION}\n{task_text}\n"
        ids = self._ids(head + VIDEO_TOKEN)
        vid = self.token_ids.video
        if ids.count(vid) != 1 or ids[-1] != vid:
            raise ValueError(f"the prompt header must end in exactly one {VIDEO_TOKEN} token")
        return ids[:-1] + [vid] * (num_frames * self.config.tokens_per_frame)

    def suffix_ids(self, task_text: str, answer: str | None = None) -> tuple[list[int], int]:
        """Ids after the video and how many of them belong to the answer (the task text is
        here video-first, in :meth:`prefix_ids` question-first)."""
        _check_task_text(task_text)
        user = "" if self.question_first else f"\n{SPATIAL_INSTRUCTION}\n{task_text}"
        ids = self._ids(f"{user}{IM_END}\n{IM_START}assistant\n")
        n_answer = 0
        if answer is not None:
            ans = self._ids(f"{answer}{IM_END}")
            ids, n_answer = ids + ans, len(ans)
        return ids, n_answer

    def encode(self, num_frames: int, task_text: str, answer: str | None = None,
               follow_ups: Sequence[tuple[str, str]] = ()) -> EncodedPrompt:
        """Whole prompt (and answer) with labels on the answer tokens only.

        ``follow_ups``: further (question, answer) turns of the same conversation, each a
        user turn without the video and an assistant turn whose tokens are labelled too
        (training on multi-turn samples; needs ``answer``)."""
        if follow_ups and answer is None:
            raise ValueError("follow-up turns need the first answer")
        prefix = self.prefix_ids(num_frames, task_text)
        suffix, n_answer = self.suffix_ids(task_text, answer)
        ids = prefix + suffix
        labelled = [(len(ids) - n_answer, len(ids))] if n_answer else []
        for question, reply in follow_ups:
            _check_task_text(question)
            ids += self._ids(f"\n{IM_START}user\n{question}{IM_END}\n{IM_START}assistant\n")
            start = len(ids)
            ids += self._ids(f"{reply}{IM_END}")
            labelled.append((start, len(ids)))
        ids = torch.tensor(ids, dtype=torch.long)
        labels = torch.full_like(ids, IGNORE_INDEX)
        for start, end in labelled:
            labels[start:end] = ids[start:end]
        return EncodedPrompt(ids, labels, len(prefix))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def _window(img: torch.Tensor, spec: CropSpec, fill: float) -> torch.Tensor:
    """(3, resized H, resized W) → the (3, S, S) window of ``spec``; ``fill`` on padding.
    One constant pad: a negative amount crops that side (the centre crop), a positive one
    pads it (the whole frame)."""
    size = spec.size_px
    return F.pad(img, (-spec.left_px, size - spec.resized_width_px + spec.left_px,
                       -spec.top_px, size - spec.resized_height_px + spec.top_px), value=fill)


def _check_task_text(task_text: str) -> None:
    if VIDEO_TOKEN in task_text:
        raise ValueError(f"task text must not contain {VIDEO_TOKEN}")
