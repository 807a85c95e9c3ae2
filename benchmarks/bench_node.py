"""video3d_node on a real rclpy graph: ingest rate, query latency, memory growth.

    python benchmarks/bench_node.py                 # all parts
    python benchmarks/bench_node.py --part ingest   # ingest | process | latency | memory

Frames are pre-rendered from a generated room and published by a separate
node at a fixed rate, so rendering speed does not limit the measurement.

* ingest: share of frames published at 30 Hz that the node ingested (paired,
  posed, unprojected, offered to the buffer), without and with a query loop
  running at the same time (side by side in one run); with the node on its
  SingleThreadedExecutor and, as the baseline, on the MultiThreadedExecutor it
  used before.
* process: video3d_node in its own process (as `ros2 run` starts it) fed at
  30 Hz from this one, reliable and best-effort topics; its /diagnostics.
* latency: end-to-end service round trip with 16 keyframes, grounding and a
  question: first query after the keyframes changed (encodes them, builds the
  proposals) vs. later queries (cached keyframes, proposals and visual-prefix
  KV cache) — ratio printed.
* memory: process RSS after 1,000 frames and after 10,000 more.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 30))

from rclpy.executors import MultiThreadedExecutor  # noqa: E402

from video3d_interfaces.srv import Query  # noqa: E402
from video3d_ros.model.untrained import write_untrained_tiny  # noqa: E402
from video3d_ros.ros.harness import FramePublisher, Graph  # noqa: E402
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR  # noqa: E402

REQ = Query.Request


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def model_dir() -> tuple[Path, str]:
    if (EMBEDDED_MODEL_DIR / "config.json").is_file():
        return EMBEDDED_MODEL_DIR, "embedded default model"
    return write_untrained_tiny(Path(tempfile.mkdtemp())), "untrained tiny (same shape as the embedded one)"


def publish_at(feeder: FramePublisher, rate_hz: float, seconds: float) -> int:
    n = int(rate_hz * seconds)
    t0 = time.perf_counter()
    for i in range(n):
        feeder.send()
        delay = t0 + (i + 1) / rate_hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return n


def ingest(graph: Graph, feeder: FramePublisher, seconds: float) -> tuple[float, float]:
    print(f"\n## ingest at 30 Hz, {feeder.frames[0].rgb.shape[1]}x{feeder.frames[0].rgb.shape[0]}, "
          f"{seconds:.0f} s per run")
    rows = []
    for with_queries in (False, True):
        stop = threading.Event()
        answered = []

        def loop():
            texts = ["the chair next to the table", "how many chairs are there?"]
            while not stop.is_set():
                r = graph.query(task=REQ.TASK_AUTO, text=texts[len(answered) % 2])
                answered.append(r.status)

        thread = threading.Thread(target=loop, daemon=True) if with_queries else None
        before = graph.node.diagnostics_values()
        if thread:
            thread.start()
        sent = publish_at(feeder, 30.0, seconds)
        time.sleep(1.0)
        stop.set()
        if thread:
            thread.join(60)
        after = graph.node.diagnostics_values()
        got = after["frames_ingested"] - before["frames_ingested"]
        rows.append((with_queries, sent, got, len(answered)))
        print(f"  query loop {'on ' if with_queries else 'off'}: published {sent}, ingested {got} "
              f"({100 * got / sent:.1f}%), queries answered during the run: {len(answered)}")
    (_, s0, g0, _), (_, s1, g1, _) = rows
    print(f"  ratio (with / without queries): {(g1 / s1) / (g0 / s0):.3f}")
    return g0 / s0, g1 / s1


def latency(graph: Graph, feeder: FramePublisher, repeats: int) -> None:
    print("\n## end-to-end query latency, 16 keyframes (service round trip)")
    for task, text in ((REQ.TASK_GROUND, "the chair next to the table"),
                       (REQ.TASK_QUESTION, "how many chairs are there?")):
        cold, warm = [], []
        for _ in range(repeats):
            graph.node.scene_qa.forget()  # as after a keyframe change: encode and propose anew
            t = time.perf_counter()
            r = graph.query(task=task, text=text)
            cold.append(time.perf_counter() - t)
            assert r.status == Query.Response.STATUS_OK, r.message
            for _ in range(3):
                t = time.perf_counter()
                graph.query(task=task, text=text)
                warm.append(time.perf_counter() - t)
        c, w = 1e3 * np.median(cold), 1e3 * np.median(warm)
        name = "grounding" if task == REQ.TASK_GROUND else "question"
        print(f"  {name:9s}: first after change {c:7.1f} ms | cached {w:7.1f} ms "
              f"(p90 {1e3 * np.percentile(warm, 90):.1f}) | speed-up {c / w:.1f}x")


def memory(graph: Graph, feeder: FramePublisher, frames: int) -> None:
    print(f"\n## RSS growth over {frames} frames")
    publish_at(feeder, 200.0, 5.0)
    graph.node.ingestor.wait_idle(30)
    start = rss_mb()
    t = time.perf_counter()
    sent = 0
    while sent < frames:
        sent += publish_at(feeder, 200.0, 5.0)
    graph.node.ingestor.wait_idle(60)
    end = rss_mb()
    v = graph.node.diagnostics_values()
    print(f"  after warm-up {start:.1f} MB, after {sent} more frames {end:.1f} MB: growth {end - start:+.1f} MB "
          f"({time.perf_counter() - t:.0f} s; ingested {v['frames_ingested']}, keyframes {v['keyframes']})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["all", "ingest", "process", "latency", "memory"], default="all")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, default=10_000)
    args = p.parse_args()
    path, what = model_dir()
    print(f"model: {what}; {os.cpu_count()} CPUs; torch threads {__import__('torch').get_num_threads()}")
    if args.part in ("all", "ingest"):
        shares = {}
        for name, make in EXECUTORS.items():
            with started_graph(path, args, make) as (graph, feeder):
                print(f"\n# executor: {name}")
                shares[name] = ingest(graph, feeder, args.seconds)
        (a, sa), (b, sb) = shares.items()
        print(f"\n  ingested share, {a} / {b}: query loop off {sa[0] / sb[0]:.2f}x, on {sa[1] / sb[1]:.2f}x")
    if args.part in ("all", "process"):
        own_process(args)
    if args.part in ("all", "latency", "memory"):
        with started_graph(path, args, None) as (graph, feeder):
            if args.part in ("all", "latency"):
                latency(graph, feeder, args.repeats)
            if args.part in ("all", "memory"):
                memory(graph, feeder, args.frames)


def own_process(args) -> None:
    """video3d_node started as `ros2 run` starts it, fed from this process; its /diagnostics."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    print(f"\n## node in its own process, {args.width}x{args.height} at 30 Hz from another, "
          f"{args.seconds:.0f} s per QoS")
    for sensor_qos in (False, True):
        node = subprocess.Popen(["video3d_node", "--ros-args", "-p", f"sensor_qos:={str(sensor_qos).lower()}",
                                 "-p", "buffer_capacity:=16", "-p", "diagnostics_period_s:=0.25",
                                 "-p", "pose_source:=topic"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        context = rclpy.Context()
        rclpy.init(context=context)
        listener = rclpy.create_node("v3d_bench_diagnostics", context=context)
        latest: dict[str, str] = {}
        listener.create_subscription(DiagnosticArray, "/diagnostics", lambda m: latest.update(
            {kv.key: kv.value for kv in m.status[0].values}), 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        try:
            feeder = FramePublisher(context, n_frames=60, width=args.width,
                                    height=args.height, seed=7)
            deadline = time.monotonic() + 60
            while not latest and time.monotonic() < deadline:
                time.sleep(0.1)
            before = int(latest["frames_ingested"])
            sent = publish_at(feeder, 30.0, args.seconds)
            time.sleep(1.0)
            got = int(latest["frames_ingested"]) - before
            print(f"  {'best effort (sensor_qos)' if sensor_qos else 'reliable':25s}: published {sent}, "
                  f"ingested {got} ({100 * got / sent:.1f}%), pose failures {latest['pose_failures']}")
        finally:
            node.terminate()
            node.wait(20)
            executor.shutdown()
            listener.destroy_node()
            context.try_shutdown()


# the node's own (video3d_node runs on SingleThreadedExecutor), and what it ran on before
EXECUTORS = {
    "single-threaded (the node's)": None,
    "multi-threaded, 8 threads (before)": lambda c: MultiThreadedExecutor(num_threads=8, context=c),
}


@contextlib.contextmanager
def started_graph(path: Path, args, make_executor):
    graph = Graph(path, with_camera=False, make_executor=make_executor,
                  node_params={"buffer_capacity": 16, "max_new_tokens": 8, "sensor_qos": False})
    try:
        graph.wait_active()
        feeder = FramePublisher(graph.context, n_frames=60, width=args.width, height=args.height, seed=7)
        publish_at(feeder, 30.0, 3.0)
        graph.wait_for(lambda: graph.keyframes() >= 16, 60, "16 keyframes")
        yield graph, feeder
    finally:
        graph.close()

if __name__ == "__main__":
    main()
