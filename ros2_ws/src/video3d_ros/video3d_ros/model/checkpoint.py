"""Our checkpoint format: one directory with ``config.json``, ``model.safetensors``
and the tokenizer files. ``save_pretrained`` → ``load_pretrained`` round-trips
exactly (same weights, same config, same tokenizer).

Only local directories are read; only safetensors weights; no remote code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..files import give_default_mode
from .build import build_empty, materialize
from .config import Video3DConfig
from .errors import CheckpointError
from .modeling import Video3DModel
from .processor import Video3DProcessor
from .runtime import Runtime, detect_runtime
from .tokenizer import token_ids_of

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_NAME = "video3d"
FORMAT_VERSION = 1
# Frames per sample of the paper's recipe, hence of the released checkpoints and of ours
# whose config.json does not say (written before ``trained_frames`` was recorded).
PAPER_TRAINED_FRAMES = 32


@dataclass
class LoadedModel:
    model: Video3DModel  # on runtime.device, eval mode
    tokenizer: PreTrainedTokenizerBase
    processor: Video3DProcessor
    runtime: Runtime
    trained_frames: int = PAPER_TRAINED_FRAMES  # frames per sample it was trained with


def save_pretrained(model: Video3DModel, tokenizer: PreTrainedTokenizerBase,
                    directory: str | os.PathLike, trained_frames: int | None = None) -> None:
    """Write config.json, model.safetensors and the tokenizer into ``directory``.

    ``trained_frames``: frames per sample the model was trained with, recorded in
    config.json; the node and ``video3d ask`` give a query that many keyframes by default
    (a model's text answers break with many more frames than it was trained on).
    """
    if trained_frames is not None and trained_frames < 1:
        raise ValueError(f"trained_frames must be >= 1, got {trained_frames}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "config": model.config.to_dict()}
    if trained_frames is not None:
        meta["trained_frames"] = int(trained_frames)
    (d / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(d / WEIGHTS_NAME), metadata={"format": "pt"})
    give_default_mode(d / WEIGHTS_NAME)  # safetensors writes 0600; the node may run as another user
    tokenizer.save_pretrained(str(d))


def trained_frames_of(directory: str | os.PathLike) -> int:
    """Frames per sample the checkpoint in ``directory`` was trained with.

    Ours record it in config.json (``trained_frames``); released LLaVA-style checkpoints
    and ours from before the field were trained with the paper's 32.
    """
    path = Path(directory) / CONFIG_NAME
    return _trained_frames(read_json_object(path), path)


def read_json_object(path: str | os.PathLike) -> dict:
    """A checkpoint's JSON file (config, shard index) as a dict; a file that cannot be read,
    is not JSON or holds no object raises CheckpointError naming it."""
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def _trained_frames(meta: dict, path: Path) -> int:
    """``trained_frames`` of a parsed config.json (the paper's 32 when absent)."""
    n = meta.get("trained_frames", PAPER_TRAINED_FRAMES)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise CheckpointError(f"{path}: trained_frames must be a positive integer, got {n!r}")
    return n


def read_safetensors(path: str | os.PathLike) -> dict:
    """The tensors of one safetensors file (on the CPU); a file that is cut short, not
    safetensors or unreadable raises CheckpointError naming it."""
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read the weights {path}: {exc}") from exc


def load_tokenizer(directory: str | os.PathLike) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True,
                                         trust_remote_code=False)


def load_pretrained(directory: str | os.PathLike, runtime: Runtime | None = None) -> LoadedModel:
    """Load a directory written by :func:`save_pretrained`."""
    d = Path(directory)
    if not (d / CONFIG_NAME).is_file():
        raise CheckpointError(f"{d} has no {CONFIG_NAME}")
    meta = read_json_object(d / CONFIG_NAME)
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{d / CONFIG_NAME} is not a {FORMAT_NAME} config (format="
                              f"{meta.get('format')!r}); released LLaVA-style checkpoints load "
                              "with video3d_ros.model.released.load_released")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"unsupported format_version {meta.get('format_version')!r}")
    config = Video3DConfig.from_dict(meta["config"])
    trained_frames = _trained_frames(meta, d / CONFIG_NAME)
    tokenizer = load_tokenizer(d)
    ids = token_ids_of(tokenizer)
    if ids != config.token_ids:
        raise CheckpointError(f"tokenizer token ids {ids} differ from config {config.token_ids}")
    if not (d / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{d} has no {WEIGHTS_NAME}")
    runtime = runtime or detect_runtime()
    state = read_safetensors(d / WEIGHTS_NAME)
    try:
        model = materialize(build_empty(config, runtime.attn_implementation), runtime,
                            {k: v.to(runtime.dtype) if v.is_floating_point() else v
                             for k, v in state.items()}, where=str(d))
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    return LoadedModel(model, tokenizer, Video3DProcessor(tokenizer, config), runtime, trained_frames)


