"""Training-step figures of a recipe on one device, random weights, real generated samples.

    python benchmarks/bench_train_step_gpu.py --data-root data/gen250               # paper_7b, CUDA
    python benchmarks/bench_train_step_gpu.py --data-root data/gen250 --shape tiny  # anywhere

The step is ``video3d_train.train``'s, piece by piece: the recipe (``paper_7b`` by default:
32 uniform frames, micro-batch 1, accumulation 2, bf16 autocast over fp32 weights through
accelerate, gradient checkpointing of both towers, AdamW with the vision tower at its own
rate, clipping at 1.0) run in one process (``distributed=none``), the multi-task loss of
``Video3DForTraining`` on items that ``Video3DDataset`` builds from a generated dataset
(``video3d-scenes``; ScanRefer, Multi3DRefer, Scan2Cap, ScanQA and SQA3D samples in turn).
The 7B shape's embedding and LM head get Qwen2's 152064 rows, so they cost what they do in
the paper's model; the weights are random (no download), which does not change the time.

It prints, per micro-batch, forward + backward ms and the LM sequence length (video tokens
included); per optimiser step (accumulation micro-batches), the optimiser ms; the recipe
step's tokens/s; "model TFLOP/s" as 6 · trainable parameters · tokens / time (no recompute,
no attention: the usual yardstick, not the work done); and peak device memory after the
weights are built and after the first optimiser step.

``--weights bf16`` keeps the weights and AdamW's state in bf16 (half the memory of fp32
master weights; not the recipe's numerics): for a device on which the recipe's one-process
step does not fit. The paper trains on 8 GPUs with ZeRO-3, which shards weights, gradients
and optimiser state eight ways.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from video3d_ros.model.processor import Video3DProcessor
from video3d_ros.model.runtime import Runtime, detect_runtime
from video3d_train.data import SceneStore, Video3DDataset
from video3d_train.metrics import Task
from video3d_train.recipes import load_recipe
from video3d_train.step import Video3DForTraining
from video3d_train.train import (build_model_and_tokenizer, enable_activation_checkpointing,
                                 make_accelerator, param_groups, read_samples)

QWEN2_VOCAB = 152064


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process RSS (Linux: KiB)


def task_mix(samples, n: int):
    """``n`` samples taking the tasks in turn (each task's samples in file order)."""
    by_task: dict[Task, list] = {}
    for s in samples:
        by_task.setdefault(s.task, []).append(s)
    rounds = itertools.zip_longest(*by_task.values())
    flat = [s for r in rounds for s in r if s is not None]  # read_samples refuses none
    return [flat[i % len(flat)] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True, help="a generated dataset (video3d-scenes)")
    ap.add_argument("--recipe", default="paper_7b")
    ap.add_argument("--shape", default=None, help="override the recipe's shape (e.g. tiny)")
    ap.add_argument("--frames", type=int, default=None, help="override the recipe's frames")
    ap.add_argument("--steps", type=int, default=4, help="timed optimiser steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed optimiser steps first")
    ap.add_argument("--weights", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--fused-adamw", action="store_true",
                    help="torch's fused AdamW (one kernel, no temporaries) instead of "
                         "train.py's (torch's default: foreach on CUDA)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="another recipe override (as video3d-train's --set)")
    args = ap.parse_args()

    sets = [f"data.root={args.data_root}", "distributed=none", "model.init=random",
            "model.checkpoint=null", "model.tokenizer=null", "num_workers=0", *args.set]
    if args.shape:
        sets.append(f"model.shape={args.shape}")
    if args.frames:
        sets.append(f"data.num_frames={args.frames}")
    recipe = load_recipe(args.recipe).with_overrides(sets)
    torch.manual_seed(recipe.seed)
    accel = make_accelerator(recipe)
    dev = accel.device
    dtype = torch.bfloat16 if args.weights == "bf16" else torch.float32
    attn = detect_runtime("cuda" if dev.type == "cuda" else "cpu").attn_implementation
    runtime = Runtime(dev, dtype, attn)

    samples = read_samples(recipe, recipe.data.train_files, skip_bad=False)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model, tok = build_model_and_tokenizer(  # the trainer's, with the 7B's real vocabulary rows
        recipe, samples, runtime, QWEN2_VOCAB if recipe.model.shape == "paper_7b" else None)
    config = model.config
    if recipe.gradient_checkpointing:
        enable_activation_checkpointing(model)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sync(dev)
    weights_gib = peak_gib(dev)

    processor = Video3DProcessor(tok, model.config)
    store = SceneStore(recipe.data.root, processor, recipe.data.num_frames, recipe.data.sampling)
    dataset = Video3DDataset(samples, store, recipe.data.max_length, recipe.answer_loss_tasks)
    accum = recipe.grad_accum
    micro = (args.warmup + args.steps) * accum
    items = [dataset.item(s) for s in task_mix(samples, micro * recipe.micro_batch_size)]
    batches = [items[i:i + recipe.micro_batch_size]
               for i in range(0, len(items), recipe.micro_batch_size)]

    wrapper = Video3DForTraining(model, tok.pad_token_id, recipe.ground_loss_scale)
    o = recipe.optim
    optimizer = torch.optim.AdamW(param_groups(model, recipe), lr=o.lr, betas=o.betas, eps=o.eps,
                                  weight_decay=o.weight_decay,
                                  **({"fused": True} if args.fused_adamw else {}))
    wrapper, optimizer = accel.prepare(wrapper, optimizer)
    wrapper.train()

    print(f"recipe {recipe.name}, shape {recipe.model.shape}, device {dev}"
          + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
          + f", weights {dtype}, autocast {accel.mixed_precision}, attention {attn}, "
          f"gradient checkpointing {recipe.gradient_checkpointing}, AdamW "
          f"{'fused' if args.fused_adamw else 'default (foreach on CUDA)'}")
    print(f"{n_params / 1e6:.1f} M trainable parameters; {recipe.data.num_frames} frames × "
          f"{config.tokens_per_frame} video tokens; micro-batch {recipe.micro_batch_size}, "
          f"accumulation {accum}; torch {torch.__version__}")
    print(f"peak memory after building the weights: {weights_gib:.2f} GiB")

    try:
        run_steps(args, accel, wrapper, optimizer, batches, recipe, n_params)
    except torch.OutOfMemoryError as e:
        raise SystemExit(f"out of device memory ({str(e).splitlines()[0]}); peak so far "
                         f"{peak_gib(dev):.2f} GiB") from None


def run_steps(args, accel, wrapper, optimizer, batches, recipe, n_params) -> None:
    dev, accum, o = accel.device, recipe.grad_accum, recipe.optim
    fb_ms, opt_ms, tokens, step_ms = [], [], [], []
    after_first = None
    for step in range(args.warmup + args.steps):
        timed = step >= args.warmup
        step_fb, step_tok = 0.0, 0
        for batch in batches[step * accum:(step + 1) * accum]:
            sync(dev)
            t = time.perf_counter()
            res = wrapper(batch)
            accel.backward(res.loss)
            sync(dev)
            ms = (time.perf_counter() - t) * 1e3
            n = sum(int(it.input_ids.numel()) for it in batch)
            step_fb, step_tok = step_fb + ms, step_tok + n
            if timed:
                fb_ms.append(ms)
                tokens.append(n)
        t = time.perf_counter()
        if o.grad_clip:
            accel.clip_grad_norm_(wrapper.parameters(), o.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(dev)
        ms = (time.perf_counter() - t) * 1e3
        if after_first is None:
            after_first = peak_gib(dev)
        if timed:
            opt_ms.append(ms)
            step_ms.append(step_fb + ms)
        print(f"step {step}{'' if timed else ' (warm-up)'}: forward+backward {step_fb:.0f} ms "
              f"over {accum} micro-batches ({step_tok} tokens), optimiser {ms:.0f} ms, "
              f"loss {float(res.loss.detach()):.3f}", flush=True)

    tok_s = sum(tokens) / (sum(step_ms) / 1e3)
    print(f"forward+backward: {statistics.median(fb_ms):.1f} ms per micro-batch (median of "
          f"{len(fb_ms)}; {statistics.mean(tokens):.0f} tokens on average)")
    print(f"optimiser step: {statistics.median(opt_ms):.1f} ms (median of {len(opt_ms)})")
    print(f"recipe step ({accum} micro-batches + optimiser): {statistics.median(step_ms):.0f} ms; "
          f"{tok_s:.0f} tokens/s")
    print(f"model TFLOP/s (6 · {n_params / 1e6:.1f} M · tokens / time): "
          f"{6 * n_params * tok_s / 1e12:.1f}")
    print(f"peak memory after the first optimiser step: {after_first:.2f} GiB; overall "
          f"{peak_gib(dev):.2f} GiB" + (f" (reserved {torch.cuda.max_memory_reserved(dev) / 2**30:.2f} GiB)"
                                         if dev.type == "cuda" else " (process RSS)"))


if __name__ == "__main__":
    main()
