"""A fresh language side of another shape under a checkpoint's vision tower.

The ``tiny`` decoder (96 wide, 2 layers) learns one kind of question at a time but not all
of them together (BENCHMARKS.md). To try a larger one without re-learning what the vision
tower already sees, this writes a checkpoint whose vision tower (and tokenizer) are the
given checkpoint's and whose every part that depends on the decoder's width — projector,
position encoding, token embeddings, decoder, grounding head — is freshly drawn at the new
shape. It computes something new: train it (``model.init: checkpoint``), best after
``video3d-vision-pretrain --head words`` has aligned the new projector with the new token
embeddings.

    python -m video3d_train.widen --checkpoint runs/vpw9 --text-hidden 192 --text-layers 4 \\
        --text-intermediate 384 --text-heads 6 --text-kv-heads 2 --out runs/w192

(Unlike ``video3d-grow``, which deepens a decoder keeping its outputs, nothing of the
language side survives here.)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

from video3d_ros.model.build import build_empty, materialize
from video3d_ros.model.checkpoint import LoadedModel, load_pretrained, save_pretrained
from video3d_ros.model.config import RandomInit
from video3d_ros.model.modeling import Video3DModel

from .cli import run_command

# the decoder's size: the ``TextConfig`` fields this tool sets (validated by TextConfig)
SHAPE_FIELDS = ("hidden_size", "num_layers", "intermediate_size", "num_heads", "num_kv_heads")


def widened(loaded: LoadedModel, shape: dict[str, int], seed: int = 0,
            init: RandomInit = RandomInit.FAN_IN) -> Video3DModel:
    """A model with ``loaded``'s vision tower and a fresh language side of ``shape`` (keys:
    ``SHAPE_FIELDS``); ValueError when the shape is not a valid decoder."""
    unknown = set(shape) - set(SHAPE_FIELDS)
    if unknown:
        raise ValueError(f"not decoder shape fields: {sorted(unknown)} (known: {SHAPE_FIELDS})")
    config = copy.deepcopy(loaded.model.config)
    config.text = dataclasses.replace(config.text, **shape)  # runs TextConfig's checks
    runtime = loaded.runtime
    model = materialize(build_empty(config, runtime.attn_implementation), runtime, seed=seed,
                        init=init)
    # the vision config is the checkpoint's, so the tower's weights fit (strict load)
    model.vision_tower.load_state_dict(loaded.model.vision_tower.state_dict())
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-widen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (our format)")
    p.add_argument("--text-hidden", type=int, required=True, help="decoder width")
    p.add_argument("--text-layers", type=int, required=True, help="decoder layers")
    p.add_argument("--text-intermediate", type=int, required=True, help="MLP width")
    p.add_argument("--text-heads", type=int, required=True, help="attention heads")
    p.add_argument("--text-kv-heads", type=int, required=True, help="key/value heads")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh weights")
    p.add_argument("--init", default=RandomInit.FAN_IN.value,
                   choices=[r.value for r in RandomInit], help="draw of the fresh weights")
    p.add_argument("--out", type=Path, required=True, help="directory to write")
    args = p.parse_args(argv)
    return run_command("video3d-widen", lambda: _run(p, args))


def _run(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    loaded = load_pretrained(args.checkpoint)
    try:
        shape = dict(zip(SHAPE_FIELDS, (args.text_hidden, args.text_layers,
                                        args.text_intermediate, args.text_heads,
                                        args.text_kv_heads)))
        model = widened(loaded, shape, args.seed, RandomInit(args.init))
    except ValueError as e:
        p.error(str(e))
    save_pretrained(model, loaded.tokenizer, args.out, trained_frames=loaded.trained_frames)
    n = sum(v.numel() for v in model.parameters())
    print(f"{args.checkpoint}: vision tower kept, language side {shape} drawn fresh "
          f"({n / 1e6:.2f} M parameters) → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
