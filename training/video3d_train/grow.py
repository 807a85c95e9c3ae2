"""Grow a trained checkpoint: a deeper decoder, or a larger input to its vision tower.

**Deeper** (``--text-layers``), by block expansion (Wu et al., *LLaMA Pro*, 2024): after
each of the decoder's layers, insert a copy of it whose two residual-writing projections
(attention ``o_proj``, MLP ``down_proj``) are zero. A layer whose writes are zero adds
nothing to the residual stream, so the grown model's outputs equal the original's exactly;
training then uses the new layers' capacity starting from everything the small model
already learned, instead of from scratch.

    python -m video3d_train.grow --checkpoint runs/phase5/final --text-layers 4 \
        --out runs/grown4

**Larger tower input** (``--image-size-px``): the side of the square crop the tower reads,
e.g. 112 → 224 for frames rendered at 320 × 240. The tower's learned patch position
embeddings are resampled bicubically from the old patch grid to the new one, as ViT and
SigLIP checkpoints are fine-tuned at a higher resolution; everything else is kept. Unlike
block expansion this changes what the model computes (each patch now covers less of the
scene), so continue training from it.

Both write a checkpoint (our format) that ``model.init: checkpoint`` continues from.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from video3d_ros.model.build import build_empty, materialize
from video3d_ros.model.checkpoint import LoadedModel, load_pretrained, save_pretrained
from video3d_ros.model.config import Video3DConfig
from video3d_ros.model.modeling import Video3DModel
from video3d_ros.model.runtime import Runtime

from .cli import run_command

_LAYER = re.compile(r"^language_model\.model\.layers\.(\d+)\.(.+)$")
# Projections that write into the residual stream; zero in an inserted layer.
_RESIDUAL_WRITES = ("self_attn.o_proj.weight", "self_attn.o_proj.bias", "mlp.down_proj.weight",
                    "mlp.down_proj.bias")
_TOWER_POSITIONS = "vision_tower.embeddings.position_embedding.weight"


def layer_plan(old_layers: int, new_layers: int) -> list[int | None]:
    """Source layer of each new layer: an int copies that layer as is; ``None`` marks an
    inserted layer (a zero-write copy of the original layer just before it).

    Inserted layers are spread evenly: with 2 → 4, ``[0, None, 1, None]``.
    """
    if new_layers <= old_layers:
        raise ValueError(f"new layer count {new_layers} must exceed the current {old_layers}")
    extra = new_layers - old_layers
    plan: list[int | None] = []
    for i in range(old_layers):
        plan.append(i)
        # inserted after layer i: this layer's share of the extras, earliest layers first
        plan.extend([None] * (extra // old_layers + (1 if i < extra % old_layers else 0)))
    return plan


def grown_state(state: dict[str, torch.Tensor], plan: list[int | None]) -> dict[str, torch.Tensor]:
    """State dict of the deepened model from ``state`` (the original's) and ``plan``."""
    by_layer: dict[int, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _LAYER.match(key)
        if m:
            by_layer.setdefault(int(m.group(1)), {})[m.group(2)] = value
        else:
            out[key] = value.clone()
    source = None
    for new_idx, src in enumerate(plan):
        inserted = src is None
        source = source if inserted else src
        for name, value in by_layer[source].items():
            grown = value.clone()
            if inserted and name in _RESIDUAL_WRITES:
                grown.zero_()
            out[f"language_model.model.layers.{new_idx}.{name}"] = grown
    return out


def grow_text_layers(loaded: LoadedModel, num_layers: int) -> Video3DModel:
    """A model like ``loaded.model`` with ``num_layers`` decoder layers, computing the same
    outputs (block expansion; see the module docstring)."""
    config = copy.deepcopy(loaded.model.config)
    plan = layer_plan(config.text.num_layers, num_layers)
    config.text.num_layers = num_layers
    config.text.__post_init__()
    return _rebuilt(loaded.runtime, config, grown_state(loaded.model.state_dict(), plan),
                    "grown model")


def _rebuilt(runtime: Runtime, config: Video3DConfig, state: dict[str, torch.Tensor],
             where: str) -> Video3DModel:
    """A model of ``config`` on ``runtime`` holding ``state``."""
    return materialize(build_empty(config, runtime.attn_implementation), runtime, state,
                       where=where)


def resample_patch_positions(table: torch.Tensor, new_grid: int) -> torch.Tensor:
    """(g², D) learned position embeddings of a g × g patch grid (row-major) → (G², D)
    for a G × G grid: bicubic resampling of the embedding field over the image, each
    patch's value taken at its centre (``align_corners=False``)."""
    n, dim = table.shape
    grid = round(n ** 0.5)
    if grid * grid != n:
        raise ValueError(f"tower position table has {n} rows: not a square patch grid")
    field = table.T.reshape(1, dim, grid, grid).float()
    out = F.interpolate(field, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    return out.reshape(dim, new_grid * new_grid).T.to(table.dtype).contiguous()


def resize_tower_input(loaded: LoadedModel, image_size_px: int) -> Video3DModel:
    """A model like ``loaded.model`` whose vision tower reads ``image_size_px`` square
    crops (see the module docstring)."""
    config = copy.deepcopy(loaded.model.config)
    patch = config.vision.patch_size_px
    if image_size_px % patch:
        raise ValueError(f"image size {image_size_px} px is not a multiple of the tower's "
                         f"{patch}-px patches")
    if image_size_px == config.vision.image_size_px:
        raise ValueError(f"the tower already reads {image_size_px}-px crops")
    config.vision.image_size_px = image_size_px
    config.vision.__post_init__()
    config.__post_init__()  # the pooled token grid must tile the new crop
    # no copies: the new model's load_state_dict copies into its own freshly built tensors
    state = dict(loaded.model.state_dict())
    state[_TOWER_POSITIONS] = resample_patch_positions(state[_TOWER_POSITIONS],
                                                       image_size_px // patch)
    return _rebuilt(loaded.runtime, config, state, "model with the resized tower input")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-grow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (our format)")
    p.add_argument("--text-layers", type=int,
                   help="decoder layers of the grown model (more than it has now)")
    p.add_argument("--image-size-px", type=int,
                   help="side of the square crop the vision tower reads (a multiple of its patch)")
    p.add_argument("--out", type=Path, required=True, help="directory to write")
    args = p.parse_args(argv)
    return run_command("video3d-grow", lambda: _run(p, args))


def _run(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.text_layers is None and args.image_size_px is None:
        p.error("nothing to grow: give --text-layers and/or --image-size-px")
    loaded = load_pretrained(args.checkpoint)
    before = loaded.model.config
    changes = []
    # each step replaces only the model; the tokenizer is what gets saved beside it
    try:
        if args.text_layers is not None:
            changes.append(f"{before.text.num_layers} → {args.text_layers} decoder layers")
            loaded = dataclasses.replace(loaded, model=grow_text_layers(loaded, args.text_layers))
        if args.image_size_px is not None:
            changes.append(f"tower input {before.vision.image_size_px} → {args.image_size_px} px")
            loaded = dataclasses.replace(loaded,
                                         model=resize_tower_input(loaded, args.image_size_px))
    except ValueError as e:
        p.error(str(e))
    save_pretrained(loaded.model, loaded.tokenizer, args.out, trained_frames=loaded.trained_frames)
    print(f"{args.checkpoint}: {', '.join(changes)} → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
