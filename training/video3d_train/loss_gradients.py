"""How large is each loss term's gradient next to the others'? (``video3d-loss-gradients``)

For a checkpoint and micro-batches drawn from a training mix, the gradient over every
trainable weight of each term the training step can add, each at scale 1:

- ``paper``: the paper's loss, answer-token cross-entropy + grounding (scale 1);
- ``attention``: our answer-attention loss (:func:`video3d_train.step.answer_attention_loss`);
- ``readout``: our answer-readout loss (:func:`video3d_train.step.answer_readout_loss`).

Reported per micro-batch and as means: each term's gradient norm, its cosine with the
paper's, and how many of the batch's samples the answer terms apply to. Why it matters:
AdamW scales each weight's step by the running size of that weight's whole gradient, and
``grad_clip`` scales the whole step by its total norm, so a term whose gradient is larger
than the paper's and nearly orthogonal to it takes most of every update. Multiply a norm
by the recipe's ``answer_*_loss_scale`` for what a run adds.

    python -m video3d_train.loss_gradients --checkpoint runs/x/final --data-root data/gen2400_s2 \
        --batches 8 --files processed/scanrefer_vg_train_llava_style.json \
        processed/multi3drefer_train_llava_style.json processed/scan2cap_train_llava_style.json \
        processed/scanqa_train_llava_style.json processed/sqa3d_train_llava_style.json
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from tqdm import tqdm

from video3d_ros.model.checkpoint import LoadedModel

from .attention import load_for_diagnostics, print_report
from .cli import run_command
from .data import Item, SceneStore, Video3DDataset, read_processed
from .metrics import Task
from .recipes import ANSWER_LOSS_TASKS
from .step import Video3DForTraining

TERMS = ("paper", "attention", "readout")


def _flat_gradient(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                      for g, p in zip(grads, params)])


def term_gradients(loaded: LoadedModel, items: list[Item]) -> tuple[dict[str, torch.Tensor], int]:
    """Each of :data:`TERMS`' gradient (flattened over the trainable weights) on ``items``,
    from one forward pass, and how many items the answer terms apply to."""
    params = [p for p in loaded.model.parameters() if p.requires_grad]
    # scales > 0 switch the decoder to eager attention (weights readable); the terms below are
    # taken apart, so the scales themselves do not enter
    step = Video3DForTraining(loaded.model, loaded.tokenizer.pad_token_id,
                              answer_attention_loss_scale=1.0, answer_readout_loss_scale=1.0)
    res = step.terms(items, attention=True, readout=True)
    losses = {"paper": res.lm_loss + step.ground_loss_scale * res.ground_loss,
              "attention": res.attention_loss, "readout": res.readout_loss}
    grads = {}
    for k, loss in losses.items():
        grads[k] = (_flat_gradient(loss, params) if loss.requires_grad
                    else torch.zeros(sum(p.numel() for p in params)))
    return grads, max(res.n_attention, res.n_readout)


def loss_gradients(loaded: LoadedModel, store: SceneStore, files: list[str], batches: int,
                   batch_size: int = 16, seed: int = 0,
                   answer_tasks: tuple[Task, ...] = ANSWER_LOSS_TASKS,
                   progress: bool = True) -> dict:
    """The report of the module docstring over ``batches`` micro-batches of ``batch_size``
    samples drawn (seeded) from ``files`` (paths under the store's root) together."""
    samples = [s for f in files for s in read_processed(store.root / f)[0]]
    if len(samples) < batches * batch_size:
        raise ValueError(f"{batches} batches of {batch_size} need {batches * batch_size} samples; "
                         f"{', '.join(files)} hold {len(samples)}")
    random.Random(seed).shuffle(samples)
    ds = Video3DDataset(samples[:batches * batch_size], store,
                        loaded.model.config.text.max_position_embeddings, answer_tasks)
    loaded.model.train()
    rows = []
    for b in tqdm(range(batches), desc="loss gradients", disable=not progress):
        items = [ds[i] for i in range(b * batch_size, (b + 1) * batch_size)]
        grads, n_answer = term_gradients(loaded, items)
        norms = {k: float(v.norm()) for k, v in grads.items()}
        total = float(sum(grads.values()).norm())
        cos = {k: float(grads[k] @ grads["paper"]) / (norms[k] * norms["paper"] + 1e-12)
               for k in TERMS[1:]}
        rows.append({"norm": norms, "total_norm": total, "cosine_with_paper": cos,
                     "answer_samples": n_answer})
    with_answers = [r for r in rows if r["answer_samples"]]
    if not with_answers:
        raise ValueError(f"no sampled batch has a sample the answer losses apply to "
                         f"({[t.value for t in answer_tasks]}); add those tasks' files")
    return {
        "batches": batches, "batch_size": batch_size,
        # means over the batches where the answer terms apply (the others have zero there)
        "mean_norm": {k: round(sum(r["norm"][k] for r in with_answers) / len(with_answers), 4)
                      for k in TERMS},
        "mean_total_norm": round(sum(r["total_norm"] for r in with_answers) / len(with_answers), 4),
        "mean_cosine_with_paper": {
            k: round(sum(r["cosine_with_paper"][k] for r in with_answers) / len(with_answers), 4)
            for k in TERMS[1:]},
        "batches_with_answer_samples": len(with_answers),
        "per_batch": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-loss-gradients", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model directory (our format)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--files", nargs="+", required=True,
                   help="processed training files under --data-root, drawn from together")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--answer-tasks", nargs="+", default=[t.value for t in ANSWER_LOSS_TASKS],
                   help="tasks whose samples the answer terms apply to (scanqa, sqa3d)")
    p.add_argument("--num-frames", type=int, default=None, help="default: the model's")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = p.parse_args(argv)
    return run_command("video3d-loss-gradients", lambda: _run(p, args))


def _run(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.batches < 1 or args.batch_size < 1:
        p.error("--batches and --batch-size must be at least 1")
    tasks = tuple(Task.parse(t) for t in args.answer_tasks)
    if any(t not in ANSWER_LOSS_TASKS for t in tasks):
        p.error(f"--answer-tasks: expected some of {[t.value for t in ANSWER_LOSS_TASKS]}")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded, store = load_for_diagnostics(args.checkpoint, args.data_root, args.num_frames)
    res = loss_gradients(loaded, store, args.files, args.batches, args.batch_size, args.seed,
                         tasks)
    print_report(res, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
