"""Query latency of the inference engine, cached vs uncached visual prefix (CPU, tiny shape).

    python benchmarks/bench_engine.py
    python benchmarks/bench_engine.py --keyframes 8 16 32 --repeats 7

For each keyframe count the same engine answers the same question three ways,
side by side in one process:

- cached:    visual-prefix KV cache reused, only the question is pre-filled;
- uncached:  per-keyframe visual tokens reused, the whole prompt pre-filled;
- re-encode: every frame re-encoded and the whole prompt pre-filled (what the
             reference does for each question).

Latency = time to the first answer token's logits (median of --repeats).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from video3d_ros.model.engine import Video3DEngine
from video3d_ros.model.modeling import Video3DModel
from video3d_ros.model.processor import Video3DProcessor, qa_prompt
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of

QUESTION = "How many chairs are there in the room?"


def corpus() -> list[str]:
    objs = ["chair", "table", "lamp", "bed", "sofa", "door"]
    return [f"How many {a}s are there? There are {i % 5} {a}s next to the {b}."
            for i, (a, b) in enumerate(zip(objs * 50, objs[::-1] * 50))]


def frame(seed: int, h: int = 240, w: int = 320):
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    xyz = np.stack([u * 0.01 + seed * 0.2, v * 0.01, np.full_like(u, 1.5)], -1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), xyz, np.ones((h, w), bool)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keyframes", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tok = build_tokenizer(corpus(), vocab_size=600)
    cfg = tiny(len(tok), token_ids_of(tok))
    torch.manual_seed(0)
    model = Video3DModel(cfg).eval()
    processor = Video3DProcessor(tok, cfg)
    prompt = qa_prompt(QUESTION)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}")
    print(f"shape tiny: {cfg.tokens_per_frame} visual tokens per frame")
    print(f"{'keyframes':>9} {'tokens':>7} {'cached ms':>10} {'uncached ms':>12} "
          f"{'re-encode ms':>13} {'uncached/cached':>16} {'re-encode/cached':>17}")
    for n in args.keyframes:
        engine = Video3DEngine(model, processor)
        frames = [frame(i) for i in range(n)]
        for i, f in enumerate(frames):
            engine.add_keyframe(i, *f, stamp_s=float(i))

        def reencode() -> None:
            for i, f in enumerate(frames):
                engine.add_keyframe(i, *f, stamp_s=float(i))
            engine.next_token_logits(prompt, use_cache=False)

        cached = median_ms(lambda: engine.next_token_logits(prompt, use_cache=True), args.repeats)
        uncached = median_ms(lambda: engine.next_token_logits(prompt, use_cache=False),
                             args.repeats)
        full = median_ms(reencode, args.repeats)
        tokens = len(processor.prefix_ids(n, prompt)) + len(processor.suffix_ids(prompt)[0])
        print(f"{n:>9} {tokens:>7} {cached:>10.2f} {uncached:>12.2f} {full:>13.2f} "
              f"{uncached / cached:>16.2f} {full / cached:>17.2f}")


if __name__ == "__main__":
    main()
