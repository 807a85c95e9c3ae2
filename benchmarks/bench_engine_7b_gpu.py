"""Engine figures for the paper's 7B shape with random weights (no download).

    python benchmarks/bench_engine_7b_gpu.py                 # paper_7b on CUDA, bf16
    python benchmarks/bench_engine_7b_gpu.py --shape tiny    # runs anywhere (CPU check)

The model is built on the meta device and materialised with random weights in
the runtime's dtype (bf16 + flash-attention/SDPA on CUDA, fp32 on CPU). With
--frames keyframes (32 by default) it reports: vision encode ms/frame
(preprocessing + tower + projector + pooling + 3D encoding), cold prefill ms
(first question: visual prefix + question), TTFT with the cached prefix and
without it (the whole prompt pre-filled again, as after a keyframe change),
decode ms/token, grounding ms (--proposals boxes) and peak memory. Frames and
decode steps are timed one by one; the first of each (which loads that shape's
kernels) is printed apart from the median of the rest.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from video3d_ros.geometry import Box3D
from video3d_ros.model.build import build_empty, materialize
from video3d_ros.model.engine import Video3DEngine
from video3d_ros.model.processor import Video3DProcessor, qa_prompt
from video3d_ros.model.runtime import ENGINE_SDPA_BACKENDS, detect_runtime
from video3d_ros.model.shapes import SHAPES
from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of

QUESTION = "How many chairs are there in the room?"


def frame(seed: int, h: int = 480, w: int = 640):
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    xyz = np.stack([u * 0.01 + seed * 0.2, v * 0.01, np.full_like(u, 1.5)], -1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), xyz, np.ones((h, w), bool)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> tuple[object, float]:
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, (time.perf_counter() - t) * 1e3


def attention_figures(engine: Video3DEngine, processor: Video3DProcessor, prompt: str,
                      args: argparse.Namespace, dev: torch.device) -> dict[str, float]:
    """Medians (ms) of the calls whose speed depends on the attention kernel."""
    ttft = [timed(lambda: engine.next_token_logits(prompt), dev)[1] for _ in range(args.repeats)]
    # each question one token-length apart: a new shape for every call, as on the service
    new = [timed(lambda: engine.next_token_logits(qa_prompt(QUESTION + " near the table" * k)),
                 dev)[1] for k in range(1, args.repeats + 1)]
    full = [timed(lambda: engine.next_token_logits(prompt, use_cache=False), dev)[1]
            for _ in range(args.repeats)]
    # decode: single-token steps on top of the cached prefix + question
    ids = processor.suffix_ids(prompt)[0]
    with torch.inference_mode(), engine._session(True, prompt, engine._ordered()) as run:  # noqa: SLF001
        run(ids, None)
        dec = [timed(lambda: run([ids[-1]], None), dev)[1] for _ in range(args.decode_tokens)]
    med = statistics.median
    return {"ttft": med(ttft), "ttft_new": med(new), "full": med(full),
            "decode": med(dec[1:] or dec), "decode_first": dec[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=["paper_7b", "tiny"], default="paper_7b")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--proposals", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = ap.parse_args()

    runtime = detect_runtime(args.device)
    words = ["chair", "table", "lamp", "bed", "sofa", "door", "left", "right", "near"]
    tok = build_tokenizer([f"{a} {b} {a}{b}" for a in words for b in words] * 4, vocab_size=400)
    maker = SHAPES[args.shape]
    cfg = maker(len(tok), token_ids_of(tok)) if args.shape == "tiny" else \
        maker(token_ids=token_ids_of(tok))
    model, build_ms = timed(lambda: materialize(build_empty(cfg, runtime.attn_implementation),
                                                runtime), runtime.device)
    processor = Video3DProcessor(tok, cfg)
    engine = Video3DEngine(model, processor)
    dev = runtime.device
    print(f"shape {args.shape}, device {dev}, dtype {runtime.dtype}, attention "
          f"{runtime.attn_implementation}, {args.frames} frames × {cfg.tokens_per_frame} tokens")
    if dev.type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(dev)}")
        torch.cuda.reset_peak_memory_stats(dev)
    print(f"build + random init: {build_ms:.0f} ms")

    frames = [frame(i) for i in range(args.frames)]
    # per frame: the first call of a shape loads its kernels (one-time), so the first frame,
    # first question and first decode step are reported apart from the steady state
    enc = [timed(lambda: engine.add_keyframe(i, *f, stamp_s=float(i)), dev)[1]
           for i, f in enumerate(frames)]
    prompt = qa_prompt(QUESTION)
    _, cold_ms = timed(lambda: engine.next_token_logits(prompt), dev)
    ours = attention_figures(engine, processor, prompt, args, dev)
    engine.sdpa_backends = None  # torch's own choice of kernel (cuDNN's included), the baseline
    torchs = attention_figures(engine, processor, prompt, args, dev)
    engine.sdpa_backends = ENGINE_SDPA_BACKENDS

    rng = np.random.default_rng(0)
    boxes = [Box3D(rng.uniform([0, 0, 1], [6, 4, 2]), rng.uniform(0.2, 1.0, 3))
             for _ in range(args.proposals)]
    engine.ground("the chair next to the table", boxes)  # warm-up
    ground = [timed(lambda: engine.ground("the chair next to the table", boxes), dev)[1]
              for _ in range(args.repeats)]

    print(f"vision encode: {statistics.median(enc[1:] or enc):.1f} ms/frame (median of frames "
          f"2…{args.frames}; the first {enc[0]:.1f} ms)")
    print(f"cold prefill (first question: prefix + question, one-time set-up included): "
          f"{cold_ms:.1f} ms")
    names = {"ttft": "TTFT with cached prefix, one question again",
             "ttft_new": "TTFT with cached prefix, questions of other lengths",
             "full": "TTFT without the cache (prefix + question pre-filled again)",
             "decode": "decode ms/token (steps 2…)"}
    print(f"attention kernels: ours = {[b.name for b in ENGINE_SDPA_BACKENDS]}, torch's = any "
          f"(cuDNN's included); medians of {args.repeats} (decode: of {args.decode_tokens - 1} steps)")
    print(f"{'':62s} {'ours':>9s} {'torch':>9s} {'torch/ours':>10s}")
    for k, name in names.items():
        print(f"{name:62s} {ours[k]:9.1f} {torchs[k]:9.1f} {torchs[k] / ours[k]:10.2f}")
    print(f"first decode step (one-time set-up included): ours {ours['decode_first']:.1f} ms, "
          f"torch's {torchs['decode_first']:.1f} ms")
    print(f"grounding ({args.proposals} proposals): {statistics.median(ground):.1f} ms")
    if dev.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")
    else:
        print(f"peak process RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
