"""Train the Video-3D LLM: one script for `tiny` on a CPU and the 7B recipe on many GPUs.

    # tiny on generated scenes, one CPU process
    python -m video3d_train.train --recipe tiny_generated --set data.root=data/gen250 \
        --output-dir runs/tiny
    # the paper's recipe: 8 GPUs, DeepSpeed ZeRO-3 (or --set distributed=fsdp)
    torchrun --nproc_per_node 8 -m video3d_train.train --recipe paper_7b \
        --set data.root=/data/video3d --output-dir runs/paper_7b
    # resume an interrupted run (continues exactly where the last checkpoint left off)
    python -m video3d_train.train --recipe tiny_generated --output-dir runs/tiny --resume

Distribution, mixed precision and gradient accumulation come from
``accelerate`` (FSDP or DeepSpeed plugins); the data order is a seeded
``DistributedSampler`` per epoch. The run directory holds ``recipe.yaml``,
``tokenizer/``, ``history.jsonl`` (one row per logged step: the losses, the gradient norm before
clipping, the learning rates; rewritten at every checkpoint, so a running or killed run has
one), ``checkpoints/`` (atomic, resumable; the model and
optimiser through accelerate's ``save_state``, sharded per process under FSDP / ZeRO-3),
``loss.png`` + ``lr.png`` and ``final/`` (our checkpoint format, loadable with
``video3d_ros.model.checkpoint.load_pretrained``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from video3d_ros.files import atomic_write_bytes
from video3d_ros.model.build import build_empty, materialize, reinitialize
from video3d_ros.model.checkpoint import load_pretrained, load_tokenizer, save_pretrained
from video3d_ros.model.config import Video3DConfig
from video3d_ros.model.errors import CheckpointError
from video3d_ros.model.processor import SPATIAL_INSTRUCTION, SYSTEM_PROMPT, Video3DProcessor
from video3d_ros.model.runtime import Runtime, detect_runtime
from video3d_ros.model.shapes import SHAPES
from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of

from .checkpointing import (
    ENGINE_DIR,
    TrainProgress,
    checkpoint_dir,
    checkpoint_model_state,
    latest_checkpoint,
    load_training_checkpoint,
    partial_checkpoint_dir,
    save_training_checkpoint,
)
from .cli import report_user_error, run_command
from .data import Sample, SceneStore, Video3DDataset, collate, read_processed
from .recipes import (
    DistributedEngine,
    ModelInit,
    ModelRecipe,
    Precision,
    Schedule,
    TrainRecipe,
    load_recipe,
    save_recipe,
)
from .step import Video3DForTraining

log = logging.getLogger("video3d_train.train")


# ---- building blocks ---------------------------------------------------------------------


def read_samples(recipe: TrainRecipe, files: list[str], skip_bad: bool,
                 repeats: dict[str, int] | None = None) -> list[Sample]:
    """The samples of ``files`` in order; a file in ``repeats`` enters that many times."""
    root = Path(recipe.data.root)
    out: list[Sample] = []
    for f in files:
        samples, bad = read_processed(root / f, skip_bad=skip_bad)
        if bad:
            log.warning("%s: skipped %d bad sample(s)", root / f, bad)
        n = (repeats or {}).get(f, 1)
        if n > 1:
            log.info("%s: %d samples, repeated %d times", root / f, len(samples), n)
        out.extend(samples * n)
    if not out:
        raise ValueError(f"no training samples in {files} under {root}")
    return out


def tokenizer_corpus(samples: list[Sample]) -> list[str]:
    """Texts the tokenizer of a fresh model is trained on."""
    texts = [SYSTEM_PROMPT, SPATIAL_INSTRUCTION]
    for s in samples:
        texts.append(s.prompt)
        texts.extend(s.references)
        texts.append(s.answer)
        for question, answer in s.follow_ups:
            texts.extend((question, answer))
    return texts


def fresh_config(recipe: TrainRecipe, tok, vocab_size: int | None = None) -> Video3DConfig:
    """The config of a fresh model: the recipe's shape, its tokenizer's ids and box encoding.

    ``vocab_size``: rows of the embedding and LM head (default: the tokenizer's size; a
    benchmark of the 7B shape gives Qwen2's 152064 so that they have their real cost)."""
    if vocab_size is not None and vocab_size < len(tok):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer ({len(tok)} tokens)")
    config = SHAPES[recipe.model.shape](vocab_size or len(tok), token_ids_of(tok))
    config.position.box_size = recipe.model.box_size
    config.position.__post_init__()  # re-validate the combination
    return config


def build_model_and_tokenizer(recipe: TrainRecipe, samples: list[Sample], runtime: Runtime,
                              vocab_size: int | None = None):
    """Fresh (random) or checkpoint-initialised model + its tokenizer. ``vocab_size``: a fresh
    model's embedding rows (:func:`fresh_config`)."""
    mr = recipe.model
    if mr.init is ModelInit.CHECKPOINT:
        if vocab_size is not None:
            raise ValueError(f"vocab_size={vocab_size} sizes a fresh model; a checkpoint "
                             f"({mr.checkpoint}) keeps its own")
        try:
            loaded = load_pretrained(mr.checkpoint, runtime)
        except CheckpointError as e:
            if "released" not in str(e):
                raise
            from video3d_ros.model.released import load_released

            loaded = load_released(mr.checkpoint, runtime)
        model, tok = loaded.model, loaded.tokenizer
        if mr.reinit:
            n = reinitialize(model, mr.reinit, seed=recipe.seed, init=mr.random_init)
            log.info("re-drew %d weight tensors of %s (%s)", n,
                     ", ".join(p.value for p in mr.reinit), mr.random_init.value)
        if mr.tokenizer:
            tok = load_tokenizer(mr.tokenizer)
    else:
        tok = (load_tokenizer(mr.tokenizer) if mr.tokenizer
               else build_tokenizer(tokenizer_corpus(samples), vocab_size=mr.tokenizer_vocab_size))
        model = materialize(build_empty(fresh_config(recipe, tok, vocab_size),
                                        runtime.attn_implementation),
                            runtime, seed=recipe.seed, init=mr.random_init)
    apply_model_recipe(model.config, mr)
    if model.ground_head is not None:
        model.ground_head.cfg.loss = mr.ground_loss
    return model.train(), tok


def apply_model_recipe(config: Video3DConfig, mr: ModelRecipe) -> None:
    """What the recipe sets on any model, fresh or loaded: the grounding loss and, when
    given, the prompt layout (a video-first checkpoint can be trained question-first), the
    pool stride of the video tokens and how frames are fitted to the tower's square."""
    if config.grounding is not None:
        config.grounding.loss = mr.ground_loss
    if mr.prompt_layout is not None:
        config.video.prompt_layout = mr.prompt_layout
    if mr.pool_stride is not None:
        config.video.pool_stride = mr.pool_stride
    if mr.frame_fit is not None:
        config.video.frame_fit = mr.frame_fit
    config.video.__post_init__()  # re-validate what was set, as fresh_config does


def enable_activation_checkpointing(model) -> None:
    """Recompute each layer's activations in the backward pass, in both towers."""
    model.language_model.activation_checkpointing_enable()
    model.vision_tower.activation_checkpointing_enable()


def param_groups(model, recipe: TrainRecipe) -> list[dict]:
    """Vision tower at ``vision_lr``; everything else at ``lr``."""
    vision, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (vision if name.startswith("vision_tower.") else rest).append(p)
    o = recipe.optim
    return [{"params": rest, "lr": o.lr, "name": "main"},
            {"params": vision, "lr": o.vision_lr, "name": "vision_tower"}]


def make_scheduler(optimizer, recipe: TrainRecipe, total_steps: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    warmup = int(math.ceil(recipe.optim.warmup_ratio * total_steps))
    if recipe.optim.schedule is Schedule.COSINE:
        return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def make_accelerator(recipe: TrainRecipe):
    """accelerate with the recipe's engine, precision and accumulation."""
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    kwargs = {}
    if recipe.distributed is not DistributedEngine.NONE and not cuda:
        log.warning("distributed=%s shards only on GPUs (accelerate applies it to CUDA "
                    "processes); on CPU the processes run plain data parallel",
                    recipe.distributed.value)
    if recipe.distributed is DistributedEngine.FSDP:
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            sharding_strategy="FULL_SHARD", auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=["Qwen2DecoderLayer", "SiglipEncoderLayer"],
            activation_checkpointing=recipe.gradient_checkpointing,
            state_dict_type="SHARDED_STATE_DICT", use_orig_params=True)
    elif recipe.distributed is DistributedEngine.DEEPSPEED_ZERO3:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise SystemExit("distributed=deepspeed_zero3 needs the optional 'deepspeed' package "
                             "(pip install deepspeed); or use --set distributed=fsdp")
        from accelerate import DeepSpeedPlugin

        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(
            zero_stage=3, gradient_accumulation_steps=recipe.grad_accum,
            gradient_clipping=recipe.optim.grad_clip or None, zero3_init_flag=False,
            zero3_save_16bit_model=True)  # lets get_state_dict gather the final weights
    from accelerate import DistributedDataParallelKwargs

    # Plain data parallel (DDP, distributed=none under torchrun): a batch leaves parameters
    # unused (the grounding head without a grounding sample, box-size encoding without
    # boxes), which DDP refuses unless told to look for them.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    mp = "bf16" if recipe.precision is Precision.BF16 and cuda else "no"
    return Accelerator(mixed_precision=mp, gradient_accumulation_steps=recipe.grad_accum,
                       cpu=not cuda, kwargs_handlers=[ddp], **kwargs)


@dataclass
class Plan:
    micro_per_epoch: int
    total_steps: int


def plan(recipe: TrainRecipe, n_local: int) -> Plan:
    micro = math.ceil(n_local / recipe.micro_batch_size)
    steps = recipe.max_steps or max(1, recipe.epochs * micro // recipe.grad_accum)
    return Plan(micro, steps)


def epoch_batches(sampler, epoch: int, micro: int, skip: int) -> list[list[int]]:
    """Index micro-batches of one epoch, the first ``skip`` removed (resume)."""
    sampler.set_epoch(epoch)
    order = list(iter(sampler))
    batches = [order[i:i + micro] for i in range(0, len(order), micro)]
    return batches[skip:]


def micro_batches(dataset: Video3DDataset, batches: list[list[int]], num_workers: int):
    """The items of each micro-batch, in order: decoded in this process, or by
    ``num_workers`` DataLoader worker processes ahead of the step (the same batches; each
    worker keeps its own scene cache, for one epoch)."""
    if num_workers == 0:
        for idx in batches:
            yield collate([dataset[i] for i in idx])
        return
    yield from torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                           num_workers=num_workers)


LOSS_KEYS = ("loss", "lm_loss", "ground_loss", "attention_loss", "readout_loss",
             "subject_loss")  # logged per step (StepOutput)


def save_history(history: list[dict], out_dir: Path) -> None:
    """history.jsonl (atomically) and the two plots of :func:`save_plots`."""
    atomic_write_bytes(out_dir / "history.jsonl",
                       "".join(json.dumps(row) + "\n" for row in history).encode())
    save_plots(history, out_dir)


def save_plots(history: list[dict], out_dir: Path) -> None:
    """loss.png (total, LM, grounding, answer attention/readout, subject attention; the gradient norm before
    clipping, dashed) and lr.png (both groups) from the history."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in LOSS_KEYS:
        values = [h.get(key, 0.0) for h in history]
        if any(v > 0 for v in values):  # a loss the run does not have stays off the log plot
            ax.plot(steps, values, label=key)
    norms = [(h["step"], h["grad_norm"]) for h in history if h.get("grad_norm", 0.0) > 0]
    if norms:
        ax.plot(*zip(*norms), "--", color="0.4", label="grad norm (before clipping)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss / gradient norm")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "loss.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [h["lr"] for h in history], label="lr (LLM, projector, heads)")
    ax.plot(steps, [h["vision_lr"] for h in history], label="lr (vision tower)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("learning rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "lr.png", dpi=120)
    plt.close(fig)


# ---- the recipe --------------------------------------------------------------------------


def train(recipe: TrainRecipe, output_dir: str | Path, resume: bool = False,
          skip_bad: bool = False, stop_after_steps: int | None = None,
          progress_bar: bool = True) -> Path:
    """Run ``recipe``; returns the run directory. ``stop_after_steps`` simulates an interrupt."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    accel = make_accelerator(recipe)
    runtime = Runtime(accel.device, torch.float32, detect_runtime(
        "cuda" if accel.device.type == "cuda" else "cpu").attn_implementation)

    samples = read_samples(recipe, recipe.data.train_files, skip_bad, recipe.data.train_repeats)
    tok_dir = out / "tokenizer"
    if resume and tok_dir.is_dir():
        recipe.model.tokenizer = str(tok_dir)  # the tokenizer trained by the interrupted run
    corpus = list({id(s): s for s in samples}.values())  # each text once, whatever the repeats
    if recipe.data.tokenizer_files and not recipe.model.tokenizer:
        corpus = read_samples(recipe, recipe.data.tokenizer_files, skip_bad)
    model, tok = build_model_and_tokenizer(recipe, corpus, runtime)
    if recipe.ground_subject_first and model.config.grounding is None:
        raise ValueError("ground_subject_first needs a model with a grounding head")
    if model.config.grounding is not None:
        # the marks say how this run trains answers, whatever the checkpoint it started from
        # said (saved with every checkpoint; the engine follows them)
        g = model.config.grounding
        g.grounds_in_answers = recipe.ground_subject_first
        g.answer_neighbours = recipe.ground_subject_neighbours
        g.grounds_answer_object = recipe.ground_answer_object
        if recipe.ground_answer_object:
            model.ground_head.add_anchor_encoder()  # new weights (zero output until trained)
        else:
            model.ground_head.anchor = None  # a second hop's encoder this run does not train
    if accel.is_main_process:
        tok.save_pretrained(str(tok_dir))
        save_recipe(recipe, out / "recipe.yaml")
    if recipe.gradient_checkpointing:
        enable_activation_checkpointing(model)

    processor = Video3DProcessor(tok, model.config)
    store = SceneStore(recipe.data.root, processor, recipe.data.num_frames,
                       recipe.data.sampling, _under(recipe.data.root, recipe.data.selection_file),
                       max_scenes=recipe.data.max_cached_scenes)
    dataset = Video3DDataset(samples, store, recipe.data.max_length, recipe.answer_loss_tasks,
                             recipe.ground_subject_first, recipe.ground_subject_neighbours,
                             recipe.ground_answer_object)
    sampler = torch.utils.data.DistributedSampler(
        dataset, num_replicas=accel.num_processes, rank=accel.process_index, shuffle=True,
        seed=recipe.seed, drop_last=True)
    pl = plan(recipe, len(sampler))
    log.info("%d process(es) (%s), %d training samples each, %d steps", accel.num_processes,
             accel.distributed_type.value, len(sampler), pl.total_steps)

    wrapper = Video3DForTraining(model, tok.pad_token_id, recipe.ground_loss_scale,
                                 recipe.answer_attention_loss_scale,
                                 recipe.answer_attention_heads,
                                 recipe.answer_readout_loss_scale,
                                 recipe.answer_readout_source,
                                 recipe.subject_attention_loss_scale,
                                 recipe.subject_attention_layer,
                                 recipe.subject_attention_heads)
    o = recipe.optim
    optimizer = torch.optim.AdamW(param_groups(model, recipe), betas=o.betas, eps=o.eps,
                                  weight_decay=o.weight_decay)
    scheduler = make_scheduler(optimizer, recipe, pl.total_steps)
    # the scheduler is stepped by hand once per optimiser step (accelerate would step a
    # prepared one once per process)
    wrapper, optimizer = accel.prepare(wrapper, optimizer)

    progress, history = TrainProgress(), []
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        progress, state = load_training_checkpoint(ckpt)
        if (ckpt / ENGINE_DIR).is_dir():
            accel.load_state(str(ckpt / ENGINE_DIR))  # model + optimiser, each process its part
        else:  # a checkpoint of before the engine directory: full state dicts in state.pt
            accel.unwrap_model(wrapper).model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        log.info("resumed from %s at step %d", ckpt, progress.step)

    def checkpoint() -> None:
        # accelerate writes the model and optimiser: whole from the main process under data
        # parallel, one shard per process under FSDP / ZeRO-3 (never gathered)
        partial = partial_checkpoint_dir(out, progress.step)
        if accel.is_main_process and partial.exists():
            shutil.rmtree(partial)  # left by a run killed while writing
        accel.wait_for_everyone()
        accel.save_state(str(partial / ENGINE_DIR))
        accel.wait_for_everyone()
        if accel.is_main_process:
            save_training_checkpoint(out, progress, {"scheduler": scheduler.state_dict(),
                                                     "history": history}, partial=partial,
                                     keep_last=recipe.keep_checkpoints)
            save_history(history, out)
        accel.wait_for_everyone()

    bar = tqdm(total=pl.total_steps, initial=progress.step, desc="train", unit="step",
               disable=not (progress_bar and accel.is_local_main_process), dynamic_ncols=True)
    acc = dict.fromkeys(LOSS_KEYS, 0.0) | {"n": 0}
    # per optimiser step of the logging window, before clipping; kept as tensors so that a GPU
    # run synchronises once per logged row, not once per step
    grad_norms: list[torch.Tensor] = []
    t0 = time.time()
    wrapper.train()
    while progress.step < pl.total_steps:
        epoch, skip = divmod(progress.micro_batches, pl.micro_per_epoch)
        for items in micro_batches(dataset, epoch_batches(sampler, epoch, recipe.micro_batch_size,
                                                          skip), recipe.num_workers):
            with accel.accumulate(wrapper):
                res = wrapper(items)
                accel.backward(res.loss)
                if accel.sync_gradients and o.grad_clip:
                    norm = accel.clip_grad_norm_(wrapper.parameters(), o.grad_clip)
                    if norm is not None:  # DeepSpeed clips inside its engine and returns None
                        grad_norms.append(torch.as_tensor(norm).detach().float())
                optimizer.step()
                if accel.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            progress.micro_batches += 1
            for k in LOSS_KEYS:
                acc[k] += float(getattr(res, k).detach())
            acc["n"] += 1
            if progress.micro_batches % recipe.grad_accum:
                continue
            progress.step += 1
            bar.update(1)
            if progress.step % recipe.log_every_steps == 0 or progress.step == pl.total_steps:
                lrs = scheduler.get_last_lr()
                row = {"step": progress.step, **{k: acc[k] / acc["n"] for k in LOSS_KEYS},
                       "lr": lrs[0], "vision_lr": lrs[1], "elapsed_s": time.time() - t0}
                if grad_norms:
                    row["grad_norm"] = float(torch.stack(grad_norms).mean())
                history.append(row)
                acc = dict.fromkeys(LOSS_KEYS, 0.0) | {"n": 0}
                grad_norms = []
                bar.set_postfix(loss=f"{row['loss']:.3f}", lm=f"{row['lm_loss']:.3f}",
                                ground=f"{row['ground_loss']:.3f}",
                                **({"attn": f"{row['attention_loss']:.3f}"}
                                   if recipe.answer_attention_loss_scale else {}),
                                **({"read": f"{row['readout_loss']:.3f}"}
                                   if recipe.answer_readout_loss_scale else {}),
                                **({"subj": f"{row['subject_loss']:.3f}"}
                                   if recipe.subject_attention_loss_scale else {}),
                                **({"gnorm": f"{row['grad_norm']:.2f}"} if "grad_norm" in row else {}))
            stop = stop_after_steps is not None and progress.step >= stop_after_steps
            if progress.step % recipe.save_every_steps == 0 or progress.step == pl.total_steps \
                    or stop:
                checkpoint()
            if stop:
                bar.close()
                return out
            if progress.step >= pl.total_steps:
                break
    bar.close()
    # the full weights: gathered from every process's shard under FSDP / ZeRO-3 (a collective
    # call), the module's own under data parallel
    full_state = {k.removeprefix("model."): v for k, v in accel.get_state_dict(wrapper).items()}
    if accel.is_main_process:
        save_history(history, out)
        final = materialize(build_empty(model.config), Runtime(torch.device("cpu"), next(
            v.dtype for v in full_state.values() if v.is_floating_point()), "sdpa"),
            full_state, where="the trained weights")
        save_pretrained(final, tok, out / "final", trained_frames=recipe.data.num_frames)
        log.info("trained %d steps in %.1f s → %s", progress.step, time.time() - t0, out / "final")
    accel.wait_for_everyone()
    return out


def export_checkpoint(run_dir: str | Path, out: str | Path, step: int | None = None) -> Path:
    """Write a training checkpoint of ``run_dir`` in our model format to ``out``.

    ``step``: the checkpoint of that optimiser step (it must still be on disk, see the
    recipe's ``keep_checkpoints``); None: the latest.
    """
    if step is None:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise FileNotFoundError(f"{run_dir} has no training checkpoint")
    else:
        ckpt = checkpoint_dir(run_dir, step)
        if not (ckpt / "state.pt").exists():
            kept = [p.name for p in sorted((Path(run_dir) / "checkpoints").glob("step-*"))]
            raise FileNotFoundError(f"{run_dir} has no complete checkpoint of step {step}; "
                                    f"kept: {', '.join(kept) or 'none'}")
    recipe = load_recipe(Path(run_dir) / "recipe.yaml")
    tok = load_tokenizer(Path(run_dir) / "tokenizer")
    if recipe.model.init is ModelInit.CHECKPOINT:
        config = load_pretrained(recipe.model.checkpoint, Runtime(torch.device("cpu"),
                                 torch.float32, "sdpa")).model.config
    else:
        config = fresh_config(recipe, tok)
    state = {k.removeprefix("model."): v for k, v in checkpoint_model_state(ckpt).items()}
    model = materialize(build_empty(config), Runtime(torch.device("cpu"), torch.float32, "sdpa"),
                        state, where=str(ckpt))
    apply_model_recipe(model.config, recipe.model)
    save_pretrained(model, tok, out, trained_frames=recipe.data.num_frames)
    return Path(out)


def _under(root: str, path: str | None) -> Path | None:
    return None if path is None else Path(root) / path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", required=True,
                   help="shipped recipe name or YAML path (a YAML file may start with "
                        "'base: <recipe>' and set only what differs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--skip-bad", action="store_true", help="log and count bad samples")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--stop-after-steps", type=int, default=None,
                   help="stop (as if interrupted) after N steps and export those weights to "
                        "<output-dir>/step<N>/")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); 1 is fastest on a busy machine")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        recipe = load_recipe(args.recipe).with_overrides(args.set)
    except (ValueError, FileNotFoundError) as e:
        return report_user_error("video3d-train", e)
    return run_command("video3d-train", lambda: _run(recipe, args))


def _run(recipe: TrainRecipe, args: argparse.Namespace) -> int:
    train(recipe, args.output_dir, resume=args.resume, skip_bad=args.skip_bad,
          stop_after_steps=args.stop_after_steps, progress_bar=not args.no_progress)
    if args.stop_after_steps is not None and int(os.environ.get("RANK", "0")) == 0:
        try:
            export_checkpoint(args.output_dir, args.output_dir / f"step{args.stop_after_steps}")
        except ValueError as e:  # a sharded checkpoint: resumable, but no full copy to export
            print(f"video3d-train: stopped; not exported: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
