"""Time to answer the first and the tenth question about a 1,000-frame recorded scan, CPU.

    python benchmarks/bench_ask.py                       # embedded model (untrained tiny if not there yet)
    python benchmarks/bench_ask.py --model DIR --frames 32 --scan-frames 1000 --width 320 --height 240

Writes a generated room scan (ScanNet layout, every frame of a ``--scan-frames``
stream) to a temporary folder, then runs what ``video3d ask`` runs: open the
recording, select keyframes (max coverage), load the model, encode the
keyframes, answer. The first answer pays for all of it; questions 2..10 reuse
the encoded keyframes (encode once, ask many). Prints per-stage times and the
ratio first/tenth.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_generated_scan import add_scan_arguments, benchmark_model, write_generated_scan
from video3d_ros.cli import ask_qa_config
from video3d_ros.query import QueryTask
from video3d_ros.recordings import open_recording
from video3d_ros.scan_session import ScanSession, SessionConfig
from video3d_ros.scene_qa import SceneQA, load_engine

QUESTIONS = [
    ("How many chairs are there?", QueryTask.QUESTION),
    ("What colour is the sofa?", QueryTask.QUESTION),
    ("the lamp left of the bed", QueryTask.GROUND),
    ("What is on the table?", QueryTask.QUESTION),
    ("Is there a window?", QueryTask.QUESTION),
    ("the chair next to the desk", QueryTask.GROUND),
    ("How many tables are in the room?", QueryTask.QUESTION),
    ("What is next to the door?", QueryTask.QUESTION),
    ("the white cabinet", QueryTask.GROUND),
    ("Where is the bed?", QueryTask.QUESTION),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scan_arguments(ap, scan_frames=1000)
    ap.add_argument("--frames", type=int, default=32, help="keyframe budget")
    ap.add_argument("--keyframe-groups", type=int, default=4,
                    help="groups the keyframes are read in, as video3d ask (its default: 4)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, which = benchmark_model(args.model, tmp)
        print(which)
        t = time.perf_counter()
        posed = write_generated_scan(tmp / "scan", args.seed, "scene0999_00", args)
        print(f"scan: {args.scan_frames} frames {args.width}x{args.height} written in "
              f"{time.perf_counter() - t:.1f} s (not part of the figures)")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

        start = time.perf_counter()
        reader = open_recording(posed)
        session = ScanSession(reader, SessionConfig(frames=args.frames))
        session.prepare()
        t_load_model = time.perf_counter()
        qa = SceneQA(load_engine(model, device="cpu", max_new_tokens=args.max_new_tokens),
                     ask_qa_config(args.keyframe_groups))  # as video3d ask reads them
        model_s = time.perf_counter() - t_load_model
        per_q = []
        for text, task in QUESTIONS:
            t = time.perf_counter()
            session.ask(qa, text, task)
            per_q.append(time.perf_counter() - t)
            if len(per_q) == 1:
                first_total = time.perf_counter() - start
        print(f"frames in recording: {len(reader)}, keyframes: {len(session.snapshot)} "
              f"(coverage {session.selection.coverage_ratio:.3f})")
        print(f"stages: {session.times.text()}; model load {model_s:.2f} s")
        print(f"first question, from opening the scan: {first_total:.2f} s "
              f"(of which the answer call incl. encoding: {per_q[0]:.2f} s)")
        print(f"tenth question: {per_q[9]:.3f} s; questions 2-10 median {statistics.median(per_q[1:]):.3f} s")
        print(f"ratio first/tenth: {first_total / per_q[9]:.1f}x")


if __name__ == "__main__":
    main()
