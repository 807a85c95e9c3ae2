"""Atomic training checkpoints and exact resume.

A training checkpoint is a directory ``<run>/checkpoints/step-NNNNNNN/`` with
``state.pt`` (scheduler, loss history, RNG states, step, micro-batches consumed)
and ``engine/``: the model and optimiser as ``accelerate``'s ``save_state``
writes them (``model.safetensors`` + ``optimizer.bin`` for one process or data
parallel; one shard per process under FSDP or DeepSpeed ZeRO-3, so a sharded
7B run never gathers its optimiser state). Every process writes into
``.step-NNNNNNN.partial/``, then the main process adds ``state.pt`` and renames
it into place, and ``<run>/checkpoints/latest`` (a one-line file, itself
replaced atomically) names the newest complete one, so a run killed at any
moment leaves either the old or the new checkpoint, never a torn one.

Resuming restores every RNG and skips the micro-batches already consumed of the
deterministic, seeded data order, so a resumed run continues exactly.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from video3d_ros.files import atomic_write_bytes, create_temp_beside, give_default_mode
from video3d_ros.model.checkpoint import read_safetensors

LATEST = "latest"
ENGINE_DIR = "engine"  # accelerate's save_state output inside a checkpoint

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

# What torch.load may build besides tensors and plain containers: numpy arrays (the
# numpy RNG state in our checkpoints, arrays in the reference's .pth box files).
# Nothing else: pickle's code execution stays off (weights_only=True).
_NUMPY_GLOBALS = [_np_reconstruct, np.ndarray, np.dtype,
                  *{type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}]  # the numeric dtype classes


def load_torch_file(path: str | Path) -> Any:
    """``torch.load`` without running code from the file: tensors, numpy arrays and plain
    Python containers only (``weights_only=True``). Raises ValueError naming the file."""
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: refused to load: it holds objects other than tensors, numpy "
                         f"arrays and plain containers, which could run code ({first})") from e
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{path}: not a readable torch file ({e})") from e


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temporary file + rename."""
    path = Path(path)
    fd, tmp = create_temp_beside(path)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainProgress:
    """Where a run is: optimiser steps taken and micro-batches consumed."""

    step: int = 0
    micro_batches: int = 0


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """The directory of the (complete) checkpoint of optimiser step ``step``."""
    return Path(run_dir) / "checkpoints" / f"step-{step:07d}"


def partial_checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """Where every process writes its part of the checkpoint of ``step`` before the rename."""
    return Path(run_dir) / "checkpoints" / f".step-{step:07d}.partial"


def save_training_checkpoint(run_dir: str | Path, progress: TrainProgress,
                             state: dict[str, Any], keep_last: int = 2,
                             partial: Path | None = None) -> Path:
    """Write ``state`` (+ progress and RNG) as the newest checkpoint of ``run_dir``.

    ``partial``: a directory the processes already wrote their part into (the engine's
    model and optimiser files, ``partial_checkpoint_dir``); it is completed and renamed.
    Returns the checkpoint directory. Older checkpoints beyond ``keep_last`` are removed.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(run_dir, progress.step)
    tmp = partial if partial is not None else Path(tempfile.mkdtemp(prefix=f".{final.name}.",
                                                                     dir=root))
    try:
        payload = dict(state, progress=vars(progress).copy(), rng=rng_state())
        torch.save(payload, tmp / "state.pt")
        # mkdtemp makes the folder 0700 and the engine's safetensors files are 0600: give
        # every part the umask's mode, so that another user can export or evaluate it
        for part in (tmp, *tmp.rglob("*")):
            give_default_mode(part, directory=part.is_dir())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(root / LATEST, (final.name + "\n").encode())
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in done[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of ``run_dir`` (None when there is none)."""
    root = Path(run_dir) / "checkpoints"
    marker = root / LATEST
    if not marker.exists():
        return None
    ckpt = root / marker.read_text().strip()
    if not (ckpt / "state.pt").exists():
        raise FileNotFoundError(f"{marker} names {ckpt.name}, which has no state.pt")
    return ckpt


def load_training_checkpoint(ckpt: str | Path) -> tuple[TrainProgress, dict[str, Any]]:
    """State dicts of a checkpoint and its progress; RNG states are restored here."""
    payload = load_torch_file(Path(ckpt) / "state.pt")
    set_rng_state(payload.pop("rng"))
    progress = TrainProgress(**payload.pop("progress"))
    return progress, payload


def checkpoint_model_state(ckpt: str | Path) -> dict[str, torch.Tensor]:
    """The full model weights of a training checkpoint (keys as the trained module names them).

    Read from ``engine/model.safetensors`` (one process or data parallel) or, for
    checkpoints of before the engine directory, ``state.pt``. A sharded checkpoint (FSDP,
    DeepSpeed ZeRO-3) holds no full copy: merge it with ``accelerate merge-weights`` (FSDP)
    or DeepSpeed's ``zero_to_fp32.py`` first. The run's ``final/`` is always full.
    """
    ckpt = Path(ckpt)
    weights = ckpt / ENGINE_DIR / "model.safetensors"
    if weights.exists():
        return read_safetensors(weights)
    engine = ckpt / ENGINE_DIR
    if engine.is_dir():
        found = sorted(p.name for p in engine.iterdir())
        raise ValueError(f"{engine} holds no full model.safetensors (found: {', '.join(found)}): "
                         "a sharded checkpoint; merge it with `accelerate merge-weights` (FSDP) "
                         "or DeepSpeed's zero_to_fp32.py")
    payload = load_torch_file(ckpt / "state.pt")
    if "model" not in payload:
        raise ValueError(f"{ckpt}: neither {ENGINE_DIR}/model.safetensors nor model weights "
                         "in state.pt")
    return payload["model"]
