"""The demo: a synthetic RGB-D camera in a generated room, video3d_node, and four queries.

    bash scripts/demo.sh                     # set-up, then this module
    python -m video3d_ros.ros.demo --seed 3 --out outputs/demo

Starts the synthetic camera and the node (embedded default model) on a real
rclpy graph in this process, waits until the keyframe buffer has filled, then
asks over the Query service: a grounding question, a counting/colour question,
a situated question and a caption request — taken from the room's own
generated annotations, so the true answers are known and printed alongside.
Writes ``demo.png``: top-down coverage with keyframe cameras, grounded boxes
and the true box, and the keyframe where the box is best seen.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm
from video3d_interfaces.srv import Query

from ..figures import grounding_figure
from ..files import atomic_write_bytes
from ..geometry import Box3D
from ..model.untrained import write_untrained_tiny
from ..node_config import NodeConfig
from ..query import GroundedObject, QueryStatus
from ..scene_qa import EMBEDDED_MODEL_DIR
from ..scenes.annotations import scanqa_records, scanrefer_records, sqa3d_records
from . import convert
from .harness import Graph


def pick_questions(scene) -> dict[str, tuple[str, object]]:
    """(text, truth) per demo query, from the scene's generated annotations."""
    refer = scanrefer_records(scene).records
    ground = next((r for r in refer if " of " in r["description"]), refer[0])
    qa = scanqa_records(scene, "val").records
    count = next((r for r in qa if r["question"].lower().startswith(("how many", "what color", "what colour"))),
                 qa[0])
    sqa_q, sqa_a = sqa3d_records(scene, "val")
    situated = sqa_q.records[0]
    target = scene.objects[int(ground["object_id"])]
    return {
        "ground": (ground["description"], target),
        "question": (count["question"], count["answers"]),
        "situated": (f"{situated['situation']} {situated['question']}",
                     [a["answer"] for a in sqa_a.records[0]["answers"]]),
        "caption": ("", target),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=7, help="room seed")
    p.add_argument("--model", default="", help="checkpoint directory (default: the embedded model)")
    p.add_argument("--keyframes", type=int, default=NodeConfig().buffer_capacity,
                   help="buffer capacity K (default: the node's)")
    p.add_argument("--fill-timeout", type=float, default=120.0, help="seconds to wait for the buffer")
    p.add_argument("--prepare-timeout", type=float, default=10.0,
                   help="seconds to wait, after the scan, for the node to prepare the keyframes "
                        "ahead of the queries (0: ask at once, the first query then pays for it)")
    p.add_argument("--out", default="outputs/demo", help="where demo.png goes")
    args = p.parse_args(argv)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

    model_dir = Path(args.model) if args.model else EMBEDDED_MODEL_DIR
    if not (model_dir / "config.json").is_file():
        if args.model:
            print(f"demo: no checkpoint at {model_dir}", file=sys.stderr)
            return 2
        model_dir = write_untrained_tiny(Path(tempfile.mkdtemp(prefix="video3d-untrained-")))
        print("demo: WARNING: no embedded model in this checkout; using an UNTRAINED tiny model "
              "(answers are noise)", file=sys.stderr)

    t0 = time.perf_counter()
    # the node's own answer length (the test harness's 4, or the 16 used before, cut the
    # captions mid-sentence)
    graph = Graph(model_dir, node_params={"buffer_capacity": args.keyframes,
                                          "max_new_tokens": NodeConfig().max_new_tokens},
                  camera_params={"seed": args.seed, "width": 320, "height": 240, "rate_hz": 30.0,
                                 "frame_step": 2})
    try:
        graph.wait_active()
        scene, n_frames = graph.camera.scene, len(graph.camera.camera)
        print(f"demo: room {scene.scene_id} ({len(scene.objects)} objects, "
              f"{scene.room_size_m[0]:.1f}×{scene.room_size_m[1]:.1f} m), node active after "
              f"{time.perf_counter() - t0:.1f} s; scanning …")
        full_pass = n_frames // 2  # frame_step 2: one pass over the scan
        with tqdm(total=full_pass, unit="frame", desc="scanning", mininterval=1.0) as bar:
            deadline = time.monotonic() + args.fill_timeout
            while graph.camera.published < full_pass and time.monotonic() < deadline:
                bar.n = min(graph.camera.published, full_pass)
                bar.set_postfix(keyframes=graph.keyframes(), refresh=False)
                bar.refresh()
                time.sleep(0.2)
            bar.n = min(graph.camera.published, full_pass)
            bar.set_postfix(keyframes=graph.keyframes())
        graph.node.ingestor.wait_idle(10.0)
        stats = graph.node.diagnostics_values()
        print(f"demo: {stats['keyframes']} keyframes cover {stats['covered_voxels']} voxels "
              f"({stats['frames_ingested']} frames ingested at {stats['ingest_rate_hz']} Hz)")
        # as a robot that scanned and then asks: the node prepares unchanged keyframes
        # (prepare_after_s) so that the first query does not wait for it
        t_wait, deadline = time.monotonic(), time.monotonic() + args.prepare_timeout
        while not graph.node.diagnostics_values()["keyframes_prepared"] and time.monotonic() < deadline:
            time.sleep(0.1)
        ready = graph.node.diagnostics_values()["keyframes_prepared"]
        print(f"demo: keyframes {'prepared' if ready else 'NOT prepared (still changing)'} by the node "
              f"after {time.monotonic() - t_wait:.1f} s")

        questions = pick_questions(scene)
        results = {}
        for task, code in (("ground", Query.Request.TASK_GROUND), ("question", Query.Request.TASK_QUESTION),
                           ("situated", Query.Request.TASK_QUESTION), ("caption", Query.Request.TASK_CAPTION)):
            text, truth = questions[task]
            fields = dict(task=code, text=text, publish_markers=task == "ground")
            if task == "caption":
                fields.update(has_target=True, target=convert.box_to_msg(Box3D(truth.center_m, truth.extent_m)))
            start = time.perf_counter()
            resp = graph.query(**fields)
            latency = time.perf_counter() - start
            results[task] = resp
            status = QueryStatus(resp.status).name
            print(f"\n[{task}] {text or f'describe the object at {np.round(truth.center_m, 2).tolist()}'}")
            if task == "ground":
                best = resp.objects[0] if resp.objects else None
                got = (f"box centre ({best.box.center.x:.2f}, {best.box.center.y:.2f}, {best.box.center.z:.2f}) "
                       f"score {best.score:.2f}") if best else "no box"
                print(f"  -> {status}: {got}   (truth: {truth.category.value} at "
                      f"{np.round(truth.center_m, 2).tolist()})")
            else:
                shown = truth if task != "caption" else f"a {truth.colour.value} {truth.category.value}"
                print(f"  -> {status}: {resp.answer!r}   (truth: {shown})")
            print(f"  latency {latency * 1e3:.0f} ms (model {resp.inference_time_s * 1e3:.0f} ms, "
                  f"{len(resp.keyframe_stamps)} keyframes in {resp.keyframe_groups} group"
                  f"{'s' if resp.keyframe_groups != 1 else ''})" + (f"  [{resp.message}]" if resp.message else ""))

        snapshot = graph.node.buffer.snapshot()
        g = results["ground"]
        objects = tuple(GroundedObject(o.id, o.score, convert.box_from_msg(o.box), o.label) for o in g.objects)
        target = questions["ground"][1]
        K = graph.camera.camera.K
        png = grounding_figure(snapshot, objects, {kf.frame_id: K for kf in snapshot.keyframes},
                               title=f"{scene.scene_id}: \"{questions['ground'][0][:90]}\"",
                               truth=Box3D(target.center_m, target.extent_m))
        out = atomic_write_bytes(Path(args.out) / "demo.png", png)
        print(f"\ndemo: wrote {out}  (total {time.perf_counter() - t0:.0f} s)")
        return 0 if all(r.status == Query.Response.STATUS_OK for r in results.values()) else 1
    finally:
        graph.close()


if __name__ == "__main__":
    sys.exit(main())
