"""Where the answer looks: attention mass on the objects a ScanQA question is about.

For each question whose named objects (``metadata.object_id``) are seen by some video
token, the last decoder layer's attention at the position that predicts the first
answer token is summed over those objects' tokens, per head. Next to it: the share of
the video tokens that are the objects' (what attention spread evenly over the video
would give) and the share of attention that goes to the video at all.

    python -m video3d_train.attention --checkpoint runs/x/final --data-root data/gen250 \
        --file processed/scanqa_val_llava_style.json --limit 200

A decoder that answers from the question text alone puts less on the objects than the
even share; :func:`video3d_train.step.answer_attention_loss` trains it to look.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from video3d_ros.model.checkpoint import load_pretrained
from video3d_ros.model.modeling import IGNORE_INDEX
from video3d_ros.model.runtime import Runtime

from .data import SceneStore, Video3DDataset, read_processed
from .step import Video3DForTraining, pad_batch, video_token_targets


def answer_attention(checkpoint: str | Path, data_root: str | Path, file: str,
                     limit: int | None = None, num_frames: int | None = None,
                     batch: int = 16, progress: bool = True) -> dict:
    """Mean per-head attention mass on the named objects' tokens (see the module doc)."""
    loaded = load_pretrained(checkpoint, Runtime(torch.device("cpu"), torch.float32, "eager"))
    model = loaded.model.eval()
    cfg = model.config
    samples, _ = read_processed(Path(data_root) / file)
    by_question: dict[str, object] = {}
    for s in samples:  # one sample per question (the processed file repeats it per answer)
        by_question.setdefault(s.sample_id.rsplit("_", 1)[0], s)
    samples = list(by_question.values())[:limit]
    store = SceneStore(data_root, loaded.processor, num_frames or loaded.trained_frames or 8)
    ds = Video3DDataset(samples, store, max_length=cfg.text.max_position_embeddings)
    step = Video3DForTraining(model, loaded.tokenizer.pad_token_id)
    on_objects, share, on_video, unseen = [], [], [], 0
    with torch.no_grad():
        for i in tqdm(range(0, len(ds), batch), desc="attention", disable=not progress):
            items = [ds[j] for j in range(i, min(i + batch, len(ds)))]
            out, _ = step.run(items, with_labels=True, output_attentions=True)
            ids, labels, _ = pad_batch(items, loaded.tokenizer.pad_token_id)
            for b, it in enumerate(items):
                if it.answer_cells is None:
                    unseen += 1
                    continue
                target = video_token_targets(it.answer_cells, cfg.video.newline)
                video_pos = (ids[b] == cfg.token_ids.video).nonzero().flatten()
                q = int((labels[b] != IGNORE_INDEX).nonzero()[0]) - 1
                weights = out.attentions[-1][b, :, q, video_pos]  # (H, N)
                on_objects.append(weights[:, target].sum(-1).numpy())
                on_video.append(weights.sum(-1).numpy())
                share.append(float(target.sum()) / target.numel())
    if not on_objects:
        raise ValueError(f"{file}: no question sees its named objects in the sampled frames")
    return {"questions": len(ds), "objects_not_in_view": unseen,
            "mass_on_objects_per_head": [round(float(x), 4) for x in np.mean(on_objects, 0)],
            "mass_on_video_per_head": [round(float(x), 4) for x in np.mean(on_video, 0)],
            "objects_share_of_video_tokens": round(float(np.mean(share)), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-attention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model directory (our format)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--file", default="processed/scanqa_val_llava_style.json",
                   help="processed ScanQA file with metadata.object_id (under --data-root)")
    p.add_argument("--limit", type=int, default=None, help="at most N questions")
    p.add_argument("--num-frames", type=int, default=None, help="default: the model's")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = answer_attention(args.checkpoint, args.data_root, args.file, args.limit,
                           args.num_frames)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
