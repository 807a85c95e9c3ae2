"""The node's first query after its keyframes change, with and without preparing them ahead.

    python benchmarks/bench_prepare.py                      # embedded model, 3 rooms, CPU
    python benchmarks/bench_prepare.py --rooms 5 --keyframes 32 --width 320 --height 240
    python benchmarks/bench_prepare.py --rooms 5 --keyframe-groups 1,4   # one pass vs 4 groups

What the node's query worker does (``SceneQA``), side by side in one process, on the
keyframes of generated room scans (max coverage): for each room and each query kind, one
fresh engine answers the query cold (the keyframes encoded, the visual prefix pre-filled and,
for grounding, the proposals built and pooled inside the call — what a query pays when it
comes right after the keyframes changed, or with ``prepare_after_s: 0``), and another first
runs ``SceneQA.prepare`` (what the node does on its own once the keyframes stop changing for
``prepare_after_s``) and then answers the same query. Prints the medians of the answer
calls, the cold / prepared ratio, the time of the preparation itself, and a warm query
(everything cached, another text) for reference. ``--keyframe-groups 1,4`` runs all of it
once per ``SceneQAConfig.keyframe_groups`` (the node's ``query_keyframe_groups``), room by room
side by side, and prints each one's medians and their ratios to the first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_generated_scan import add_scan_arguments, benchmark_model, write_generated_scan
from video3d_ros.query import QueryTask
from video3d_ros.recordings import open_recording
from video3d_ros.scan_session import ScanSession, SessionConfig, build_request
from video3d_ros.scene_qa import SceneQA, SceneQAConfig, load_engine

QUERIES = {QueryTask.QUESTION: ("How many chairs are there?", "What colour is the sofa?"),
           QueryTask.GROUND: ("the chair next to the desk", "the white cabinet")}


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scan_arguments(ap, scan_frames=300)
    ap.add_argument("--rooms", type=int, default=3)
    ap.add_argument("--keyframes", type=int, default=32, help="keyframes in the snapshot")
    ap.add_argument("--query-keyframes", type=int, default=-1,
                    help="keyframes the model reads (-1: its trained count, as the node)")
    ap.add_argument("--keyframe-groups", default="1",
                    help="comma-separated keyframe_groups values to compare (the node's default: 4)")
    ap.add_argument("--seed", type=int, default=100)
    args = ap.parse_args()
    groups = [int(g) for g in args.keyframe_groups.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, which = benchmark_model(args.model, tmp)
        print(f"{which}; torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
        configs = {g: SceneQAConfig(default_max_keyframes=args.query_keyframes, keyframe_groups=g)
                   for g in groups}
        times: dict[tuple[int, str], list[float]] = {}
        for r in range(args.rooms):
            posed = write_generated_scan(tmp / f"scan{r}", args.seed + r, f"scene{r:04d}_00", args)
            snap = ScanSession(open_recording(posed), SessionConfig(frames=args.keyframes)).prepare()
            for g, config in configs.items():
                for task, (text, other) in QUERIES.items():
                    t = task.name.lower()
                    request, warm = build_request(text, task), build_request(other, task)
                    cold = SceneQA(load_engine(model, device="cpu"), config)
                    times.setdefault((g, f"{t} cold"), []).append(timed(lambda: cold.answer(request, snap)))
                    ready = SceneQA(load_engine(model, device="cpu"), config)
                    times.setdefault((g, f"{t} prepare"), []).append(timed(lambda: ready.prepare(snap)))
                    times.setdefault((g, f"{t} prepared"), []).append(
                        timed(lambda: ready.answer(request, snap)))
                    times.setdefault((g, f"{t} warm"), []).append(timed(lambda: ready.answer(warm, snap)))
            print(f"room {r}: {len(snap.keyframes)} keyframes, " + ", ".join(
                f"{k} (groups {g}) {v[-1] * 1e3:.1f} ms" for (g, k), v in times.items()))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"\nmedians over {args.rooms} rooms ({args.width}x{args.height}, {args.keyframes} keyframes):")
        for g in groups:
            print(f"keyframe_groups {g}:")
            for task in QUERIES:
                t = task.name.lower()
                m = {k: med[(g, f"{t} {k}")] for k in ("cold", "prepare", "prepared", "warm")}
                print(f"  {t:8s} cold {m['cold']:8.1f} ms | prepare {m['prepare']:8.1f} ms, "
                      f"then {m['prepared']:7.1f} ms | warm {m['warm']:6.1f} ms | "
                      f"cold / prepared {m['cold'] / m['prepared']:.1f}x")
        for g in groups[1:]:
            print(f"groups {g} / groups {groups[0]}: " + ", ".join(
                f"{t.name.lower()} {k} {med[(g, f'{t.name.lower()} {k}')] / med[(groups[0], f'{t.name.lower()} {k}')]:.2f}x"
                for t in QUERIES for k in ("cold", "prepared", "warm")))


if __name__ == "__main__":
    main()
