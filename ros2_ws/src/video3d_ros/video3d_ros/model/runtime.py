"""Where and how the model runs: device, dtype, attention kernel.

CUDA → bf16 with ``flash_attention_2`` when the ``flash_attn`` package is
importable, else PyTorch SDPA; CPU → fp32 with SDPA. :func:`select_runtime` is
a pure function of its inputs so the GPU choices are tested on CPU.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend

# The attention kernels the engine lets PyTorch SDPA choose from, in torch's order of
# preference. cuDNN's is left out: it builds an execution plan for every new shape, and the
# engine's calls nearly all have new shapes (the cache grows by one token per decoded token;
# questions differ in length). On an H200 that planning took 1.4 ms of CPU time per layer and
# call, 56 ms per decoded token of the 7B shape (BENCHMARKS.md, "7B shape on GPU").
ENGINE_SDPA_BACKENDS = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH)


@dataclass(frozen=True)
class Runtime:
    device: torch.device  # where weights and activations live
    dtype: torch.dtype  # parameter / activation dtype
    attn_implementation: str  # transformers attention kernel name


def select_runtime(cuda_available: bool, flash_attn_available: bool,
                   device: str | None = None) -> Runtime:
    """Pick device, dtype and attention kernel.

    Args:
        cuda_available: whether CUDA can be used.
        flash_attn_available: whether ``flash_attn`` is importable.
        device: force "cpu" or "cuda[:i]"; None picks CUDA when available.
    """
    if device is None:
        device = "cuda" if cuda_available else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not cuda_available:
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        attn = "flash_attention_2" if flash_attn_available else "sdpa"
        return Runtime(dev, torch.bfloat16, attn)
    if dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r} (use 'cpu' or 'cuda')")
    return Runtime(dev, torch.float32, "sdpa")


def detect_runtime(device: str | None = None) -> Runtime:
    """:func:`select_runtime` for this machine."""
    return select_runtime(torch.cuda.is_available(),
                          importlib.util.find_spec("flash_attn") is not None, device)
