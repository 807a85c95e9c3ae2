"""video3d: ask the Video-3D LLM about your own RGB-D recording (no ROS needed).

    video3d ask SCAN "How many chairs are there?"
    video3d ask SCAN "the lamp left of the bed" --task ground --json boxes.json --png boxes.png
    video3d ask SCAN --interactive          # encode once, then one question per line
    video3d ask bag.mcap "what is on the table?" --frames 16 --sampling uniform --verbose

SCAN is a ScanNet posed-images folder, a rosbag2 recording (.mcap / .db3 file
or bag folder) or a folder of rgb/ + depth/ images with a TUM-style
groundtruth.txt; see ``video3d_ros.recordings`` for the details and the
flags that change how they are read. Boxes are in the recording's world frame
(ScanNet: axis-aligned when the scan's alignment file is found).

Interactive mode: each line is a query; ``/task NAME`` sets the task of the
following lines (auto, question, ground, ground_multi, caption), ``/target
x,y,z[,dx,dy,dz]`` sets the caption target, ``/quit`` (or end of input) stops.

Exit status: 0 answered, 1 the model could not answer (no data / no
proposals / model error), 2 bad input (the message names the file and the fix).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .geometry import Box3D
from .keyframes import SamplingStrategy
from .node_config import NodeConfig
from .query import QueryResult, QueryStatus, QueryTask
from .recordings import DepthUnit, RecordingError, RecordingLayout, RecordingOptions, open_recording

PROG = "video3d"

def default_frames(model: str | None, frames: int | None, groups: int = 1,
                   cap: int | None = None) -> int:
    """The keyframe budget: ``frames`` when given, else ``groups`` × the frame count the
    model (the embedded one when ``model`` is None) was trained with, as its config.json
    records — at most ``cap`` (None: no cap), but never less than that count."""
    from .model.checkpoint import trained_frames_of
    from .scene_qa import EMBEDDED_MODEL_DIR

    if frames is not None:
        return frames
    trained = trained_frames_of(model or EMBEDDED_MODEL_DIR)
    return max(trained, min(groups * trained, cap)) if cap else groups * trained


def ask_qa_config(keyframe_groups: int, proposal_stride: int = 0):
    """The :class:`~video3d_ros.scene_qa.SceneQAConfig` of ``video3d ask``: the session already
    chose the frame budget, so the model reads all of its keyframes — in one pass
    (``keyframe_groups`` 1) or in groups of at most its training frame count."""
    from .proposals import ProposalConfig
    from .scene_qa import TRAINED_FRAMES, SceneQAConfig

    return SceneQAConfig(proposals=ProposalConfig(pixel_stride=proposal_stride),
                         default_max_keyframes=0 if keyframe_groups == 1 else TRAINED_FRAMES,
                         keyframe_groups=keyframe_groups)


def _parse_target(text: str) -> Box3D:
    vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    if len(vals) not in (3, 6):
        raise ValueError(f"target must be x,y,z or x,y,z,dx,dy,dz (metres), got {text!r}")
    return Box3D(center_m=vals[:3], size_m=vals[3:] if len(vals) == 6 else [0.0, 0.0, 0.0])


def _parse_intrinsics(text: str) -> tuple[float, float, float, float] | Path:
    parts = text.split(",")
    if len(parts) == 4:
        try:
            return tuple(float(p) for p in parts)  # type: ignore[return-value]
        except ValueError:
            pass
    return Path(text)


def _ask_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("ask", help="answer questions about a recorded RGB-D scan",
                       description="Answer questions about a recorded RGB-D scan (encode once, ask many).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("scan", type=Path, help="ScanNet scan folder, rosbag2 (.mcap/.db3/folder) or RGB-D folder")
    p.add_argument("question", nargs="?", default=None, help="the query; omit for interactive mode")
    p.add_argument("--task", default="auto", help="auto | question | ground | ground_multi | caption")
    p.add_argument("--target", default=None, help="caption target x,y,z[,dx,dy,dz] in the world frame, metres")
    p.add_argument("--frames", type=int, default=None,
                   help="keyframe budget (default: as the node reads its default buffer: "
                        "--keyframe-groups x the frame count the model was trained with, which its "
                        "config.json records — 8 for the embedded model, 32 for released "
                        "checkpoints —, at most 32 and at least that count)")
    p.add_argument("--keyframe-groups", type=int, default=NodeConfig().query_keyframe_groups,
                   help="read the keyframes as up to this many interleaved groups of at most the "
                        "model's training frame count, each its own sequence, averaged (default: "
                        "the node's query_keyframe_groups; 1: one pass over all of them, the paper's)")
    p.add_argument("--sampling", default="max-coverage", help="uniform | max-coverage | max-coverage-0.95")
    p.add_argument("--model", default=None, help="checkpoint directory (default: the embedded model)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("-i", "--interactive", action="store_true", help="read queries from stdin, one per line")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="print the result as JSON (to FILE when given)")
    p.add_argument("--png", type=Path, default=None, help="grounding figure (interactive: FILE_<n>.png)")
    p.add_argument("-v", "--verbose", action="store_true", help="print timings per stage")
    g = p.add_argument_group("frame selection")
    g.add_argument("--voxel-size-m", type=float, default=0.1)
    g.add_argument("--pixel-stride", type=int, default=4, help="voxelise every n-th pixel")
    g.add_argument("--min-depth-m", type=float, default=0.1)
    g.add_argument("--max-depth-m", type=float, default=10.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--proposal-stride", type=int, default=0,
                   help="pixel stride of the points for object proposals (0 = from the frame size: "
                        "about 80 x 60 points a frame)")
    g.add_argument("--proposals", type=Path, default=None,
                   help="JSON list of detector boxes {center_m, size_m[, label]} in the world frame "
                        "(default: proposals built from the keyframes' points)")
    r = p.add_argument_group("reading the recording")
    r.add_argument("--layout", default="auto", help="auto | scannet | rosbag2 | tum")
    r.add_argument("--depth-scale-m", type=float, default=0.001, help="metres per unit of 16-bit depth")
    r.add_argument("--float-depth-unit", default="m", help="unit of float depth images: m | mm")
    r.add_argument("--depth-invalid", type=float, default=None, help="a further 'no depth' value (0/NaN always are)")
    r.add_argument("--resize-depth", action="store_true", help="resample depth of another size to the colour size")
    r.add_argument("--max-dt-s", type=float, default=0.02, help="colour/depth/pose association tolerance")
    r.add_argument("--max-pose-gap-s", type=float, default=0.2, help="interpolate poses at most this far apart")
    r.add_argument("--fps", type=float, default=30.0, help="ScanNet: frame rate giving stamps from frame numbers")
    r.add_argument("--axis-alignment", type=Path, default=None, help="ScanNet: 4x4 matrix or meta .txt")
    r.add_argument("--poses", type=Path, default=None, help="RGB-D folder: TUM-style poses file")
    r.add_argument("--intrinsics", default=None, help="RGB-D folder: fx,fy,cx,cy or a YAML file")
    for name in ("color-topic", "depth-topic", "color-info-topic", "depth-info-topic", "pose-topic",
                 "world-frame", "camera-frame"):
        r.add_argument(f"--{name}", default=None, help="rosbag2 (default: detected)")
    p.set_defaults(func=_cmd_ask)
    return p


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _ask_parser(sub)
    return parser


def load_proposals(path: Path) -> tuple[list[Box3D], list[str]]:
    """Boxes from a JSON list of ``{"center_m": [3], "size_m": [3], "label": str}`` (world frame, metres)."""
    try:
        items = json.loads(Path(path).read_text())
        if not isinstance(items, list) or not items:
            raise ValueError("expected a non-empty JSON list")
        boxes = [Box3D(center_m=it["center_m"], size_m=it["size_m"]) for it in items]
        labels = [str(it.get("label", "")) for it in items]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--proposals {path}: {e}; expected [{{\"center_m\": [x, y, z], "
                         f"\"size_m\": [dx, dy, dz], \"label\": \"...\"}}, ...]") from e
    return boxes, labels


def _options(args) -> RecordingOptions:
    return RecordingOptions(
        depth_scale_m=args.depth_scale_m, float_depth_unit=DepthUnit.parse(args.float_depth_unit),
        depth_invalid_value=args.depth_invalid, resize_depth=args.resize_depth, max_dt_s=args.max_dt_s,
        max_pose_gap_s=args.max_pose_gap_s, fps=args.fps, axis_alignment=args.axis_alignment,
        poses_file=args.poses, intrinsics=None if args.intrinsics is None else _parse_intrinsics(args.intrinsics),
        color_topic=args.color_topic, depth_topic=args.depth_topic, color_info_topic=args.color_info_topic,
        depth_info_topic=args.depth_info_topic, pose_topic=args.pose_topic, world_frame=args.world_frame,
        camera_frame=args.camera_frame, progress=sys.stderr.isatty())


def _print_result(result: QueryResult, question: str, session, args, n: int | None) -> None:
    from .figures import grounding_figure
    from .files import atomic_write_bytes
    from .scan_session import result_to_json

    if args.json is not None:
        text = json.dumps(result_to_json(result, question, session), indent=1)
        if args.json == "-":
            print(text, flush=True)
        else:
            path = Path(args.json) if n is None else _numbered(Path(args.json), n)
            atomic_write_bytes(path, (text + "\n").encode())
    if args.json != "-":
        if result.status is not QueryStatus.OK:
            print(f"[{result.status.name.lower()}] {result.message}", flush=True)
        elif result.task in (QueryTask.GROUND, QueryTask.GROUND_MULTI):
            if not result.objects:
                print("no object matches", flush=True)
            for o in result.objects:
                print(_box_line(o), flush=True)
        else:
            print(result.answer, flush=True)
            # the object a model that grounds in answers found, then (a two-hop model) the
            # object its answer names
            for k, o in enumerate(result.objects):
                print(f"{'about' if k == 0 else 'the answer is'} {_box_line(o)}", flush=True)
    if args.png is not None and result.objects:
        path = args.png if n is None else _numbered(args.png, n)
        atomic_write_bytes(path, grounding_figure(session.snapshot, result.objects, session.K_color,
                                                  title=f"{question!r} — {session.reader.path.name}"))


def _box_line(o) -> str:
    c, s = o.box.center_m, o.box.size_m
    return (f"box {o.proposal_id}: score {o.score:.3f} centre ({c[0]:.2f}, {c[1]:.2f}, {c[2]:.2f}) m "
            f"size ({s[0]:.2f}, {s[1]:.2f}, {s[2]:.2f}) m")


def _numbered(path: Path, n: int) -> Path:
    return path.with_name(f"{path.stem}_{n}{path.suffix}")


def _cmd_ask(args) -> int:
    from .scan_session import ScanSession, SessionConfig, build_request
    from .scene_qa import SceneQA, load_engine

    def fail(msg: str) -> int:
        print(f"{PROG} ask: {msg}", file=sys.stderr)
        return 2

    try:
        task = QueryTask.parse(args.task)
        target = _parse_target(args.target) if args.target else None
        sampling = SamplingStrategy.parse(args.sampling)
        layout = None if args.layout == "auto" else RecordingLayout.parse(args.layout)
        if args.keyframe_groups < 1:
            raise ValueError(f"--keyframe-groups must be >= 1, got {args.keyframe_groups}")
        budget = default_frames(args.model, args.frames, args.keyframe_groups,
                                cap=NodeConfig().buffer_capacity)
        config = SessionConfig(frames=budget,
                               sampling=sampling,
                               voxel_size_m=args.voxel_size_m, pixel_stride=args.pixel_stride, min_depth_m=args.min_depth_m,
                               max_depth_m=args.max_depth_m, seed=args.seed)
        qa_config = ask_qa_config(args.keyframe_groups, args.proposal_stride)
        options = _options(args)
        external = load_proposals(args.proposals) if args.proposals else None
        interactive = args.interactive or args.question is None
        if not interactive:  # reject a bad query before the slow part
            build_request(args.question, task, target, config.max_text_chars)
    except ValueError as e:
        return fail(str(e))
    if args.json not in (None, "-") and not Path(args.json).parent.is_dir():
        return fail(f"--json {args.json}: folder does not exist")
    try:
        reader = open_recording(args.scan, layout, options=options)
        session = ScanSession(reader, config)
        session.prepare()
    except (RecordingError, ValueError) as e:
        return fail(str(e))
    try:
        engine = load_engine(args.model, device=args.device, max_new_tokens=args.max_new_tokens)
    except FileNotFoundError as e:
        return fail(f"{e} (pass --model DIR)")
    qa = SceneQA(engine, qa_config)
    if external is not None:
        qa.set_external_proposals(*external)
    if args.verbose:
        print(f"{reader.layout.value}: {len(reader)} frames"
              + (f", skipped {reader.skipped}" if reader.skipped else "")
              + f"; {len(session.snapshot)} keyframes ({config.sampling.value}, coverage "
              f"{session.selection.coverage_ratio:.3f})", file=sys.stderr)
    if not interactive:
        result = session.ask(qa, args.question, task, target)
        _print_result(result, args.question, session, args, None)
        if args.verbose:
            print(session.times.text(), file=sys.stderr)
        return 0 if result.status is QueryStatus.OK else 1
    return _interactive(session, qa, task, target, args)


def _interactive(session, qa, task: QueryTask, target: Box3D | None, args) -> int:
    session.encode(qa)
    if args.verbose:
        print(session.times.text(), file=sys.stderr)
    prompt = sys.stdin.isatty()
    n = 0
    while True:
        if prompt:
            print("? ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not line:
            continue
        try:
            if line in ("/quit", "/exit"):
                return 0
            if line.startswith("/task "):
                task = QueryTask.parse(line.split(None, 1)[1])
                continue
            if line.startswith("/target "):
                target = _parse_target(line.split(None, 1)[1])
                continue
            if line.startswith("/"):
                raise ValueError(f"unknown command {line.split()[0]!r}; use /task, /target or /quit")
            before = session.times.answering_s
            result = session.ask(qa, line, task, target)
        except ValueError as e:
            print(f"{PROG} ask: {e}", file=sys.stderr, flush=True)
            continue
        n += 1
        _print_result(result, line, session, args, n)
        if args.verbose:
            print(f"answering {session.times.answering_s - before:.2f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # argparse fills the optional QUESTION positional (empty) together with SCAN, so a question
    # written after the options ("ask SCAN --task ground 'the lamp'") arrives as a leftover.
    if extra and args.command == "ask" and args.question is None and len(extra) == 1 \
            and not extra[0].startswith("-"):
        args.question, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
