"""Building a model without paying for a random init: meta device, then materialise.

:func:`build_empty` constructs on the meta device (no memory, no init);
:func:`materialize` allocates on the target device/dtype and either loads a
state dict (checked strictly) or draws random weights (:class:`RandomInit`), then recomputes the
non-persistent buffers (rotary frequencies, SigLIP position ids) that meta
construction left undefined.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

from .config import ModelPart, RandomInit, Video3DConfig
from .modeling import Video3DModel
from .runtime import Runtime


def build_empty(config: Video3DConfig, attn_implementation: str = "sdpa") -> Video3DModel:
    with torch.device("meta"):
        return Video3DModel(config, attn_implementation)


def check_keys(expected: set[str], given: set[str], where: str) -> None:
    """Raise ValueError listing missing and unexpected weight names."""
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise ValueError(f"weights of {where} do not match the model: "
                         f"missing {missing[:50]}{' …' if len(missing) > 50 else ''} "
                         f"({len(missing)}), unexpected {unexpected[:50]}"
                         f"{' …' if len(unexpected) > 50 else ''} ({len(unexpected)})")


def materialize(model: Video3DModel, runtime: Runtime,
                state_dict: dict[str, torch.Tensor] | None = None, where: str = "state dict",
                seed: int = 0, init: RandomInit = RandomInit.NORMAL_0_02) -> Video3DModel:
    """Allocate ``model`` on ``runtime`` and fill it (weights, or random per ``init`` when None)."""
    model = model.to_empty(device=runtime.device).to(runtime.dtype)
    if state_dict is None:
        _random_init(model, seed, init)
    else:
        check_keys(set(model.state_dict()), set(state_dict), where)
        for name, t in model.state_dict().items():
            if tuple(state_dict[name].shape) != tuple(t.shape):
                raise ValueError(f"weight {name} of {where} has shape "
                                 f"{tuple(state_dict[name].shape)}, the model expects "
                                 f"{tuple(t.shape)}")
        model.load_state_dict(state_dict, strict=True)
    _reset_buffers(model, runtime.device)
    return model.eval()


def reinitialize(model: Video3DModel, parts: Sequence[ModelPart], seed: int = 0,
                 init: RandomInit = RandomInit.NORMAL_0_02) -> int:
    """Re-draw the weights of ``parts`` of a built model as a fresh model's would be drawn;
    every other weight keeps its value. Returns how many tensors were re-drawn."""
    prefixes = tuple(p for part in parts for p in ModelPart(part).prefixes)
    n = _random_init(model, seed, init, prefixes)
    if parts and n == 0:
        raise ValueError(f"this model has no weights in {[ModelPart(p).value for p in parts]}")
    return n


@torch.no_grad()
def _random_init(model: Video3DModel, seed: int, init: RandomInit,
                 prefixes: tuple[str, ...] | None = None) -> int:
    """Norm layers: weight 1, bias 0; other biases 0; every other tensor drawn per ``init``.
    Only the parameters whose names start with one of ``prefixes``, when given.

    (Norm layers are told by their module type, not by parameter names: a name test once
    set every LayerNorm *bias* of the vision tower to 1, which put a constant offset on
    its residual stream and drove the projector's GELU dead within a few thousand steps.)
    """
    gen = torch.Generator(device=model.device).manual_seed(seed)
    n = 0
    for name, p in model.named_parameters():
        if prefixes is not None and not name.startswith(prefixes):
            continue
        n += 1
        owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        if name.endswith("bias"):
            p.zero_()
        elif isinstance(owner, _NORMS):
            p.fill_(1.0)
        else:
            p.normal_(0.0, init.std(name, tuple(p.shape)), generator=gen)
    return n


_NORMS = (nn.LayerNorm, Qwen2RMSNorm)


def _reset_buffers(model: Video3DModel, device: torch.device) -> None:
    emb = model.vision_tower.embeddings
    emb.position_ids = torch.arange(emb.num_positions, device=device).expand((1, -1))
    rot = model.language_model.model.rotary_emb
    fn = rot.compute_default_rope_parameters if rot.rope_type == "default" else None
    if fn is None:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
        fn = ROPE_INIT_FUNCTIONS[rot.rope_type]
    inv_freq, rot.attention_scaling = fn(rot.config)
    inv_freq = inv_freq.to(device)
    rot.inv_freq = inv_freq
    rot.original_inv_freq = inv_freq.clone()
