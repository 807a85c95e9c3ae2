"""video3d-query: ask the running video3d_node a question from the shell.

    video3d-query "the lamp left of the bed" --task ground
    video3d-query "how many chairs are there?"
    video3d-query --task caption --target 1.2 0.4 0.8          # a point (or 6 numbers: a box)
    video3d-query "the red chairs" --task ground_multi --json

Prints the status, the answer, the grounded boxes (best first) and the latency.
Exit status: 0 on OK, 1 when the node answered another status, 2 on no answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy

from video3d_interfaces.msg import Box3D as Box3DMsg
from video3d_interfaces.srv import Query

from ..query import QueryStatus, QueryTask


def build_request(args: argparse.Namespace) -> Query.Request:
    req = Query.Request(task=int(QueryTask.parse(args.task)), text=args.text or "",
                        result_frame=args.frame, max_keyframes=args.max_keyframes,
                        publish_markers=not args.no_markers)
    if args.target is not None:
        if len(args.target) not in (3, 6):
            raise ValueError(f"--target takes 3 numbers (a point) or 6 (centre + size), got {len(args.target)}")
        req.has_target = True
        req.target_header.frame_id = args.target_frame
        box = Box3DMsg()
        box.center.x, box.center.y, box.center.z = args.target[:3]
        if len(args.target) == 6:
            box.size.x, box.size.y, box.size.z = args.target[3:]
        req.target = box
    return req


def response_to_dict(resp: Query.Response, round_trip_s: float) -> dict:
    return {
        "status": QueryStatus(resp.status).name,
        "success": resp.success,
        "message": resp.message,
        "answer": resp.answer,
        "frame_id": resp.header.frame_id,
        "objects": [{"id": o.id, "label": o.label, "score": round(o.score, 4),
                     "center_m": [round(o.box.center.x, 3), round(o.box.center.y, 3), round(o.box.center.z, 3)],
                     "size_m": [round(o.box.size.x, 3), round(o.box.size.y, 3), round(o.box.size.z, 3)]}
                    for o in resp.objects],
        "keyframes": len(resp.keyframe_stamps),
        "keyframe_groups": resp.keyframe_groups,
        "inference_time_s": round(resp.inference_time_s, 4),
        "round_trip_s": round(round_trip_s, 4),
    }


def format_response(d: dict) -> str:
    lines = [f"status: {d['status']}" + (f" ({d['message']})" if d["message"] else "")]
    if d["answer"]:
        lines.append(f"answer: {d['answer']}")
    for rank, o in enumerate(d["objects"], 1):
        c, s = o["center_m"], o["size_m"]
        lines.append(f"  #{rank} id={o['id']} score={o['score']:.3f} centre=({c[0]:.2f}, {c[1]:.2f}, "
                     f"{c[2]:.2f}) size=({s[0]:.2f}, {s[1]:.2f}, {s[2]:.2f}) m [{d['frame_id']}]"
                     + (f" {o['label']}" if o["label"] else ""))
    groups = f" in {d['keyframe_groups']} groups" if d["keyframe_groups"] > 1 else ""
    lines.append(f"keyframes: {d['keyframes']}{groups}  model: {d['inference_time_s'] * 1e3:.0f} ms  "
                 f"round trip: {d['round_trip_s'] * 1e3:.0f} ms")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="video3d-query", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="?", default="", help="question or referring expression")
    p.add_argument("--task", default="auto", help="auto | question | ground | ground_multi | caption")
    p.add_argument("--service", default="/video3d_node/query", help="service name")
    p.add_argument("--frame", default="", help="frame of the returned boxes (default: the node's world frame)")
    p.add_argument("--max-keyframes", type=int, default=0, help="use at most N keyframes (0 = all)")
    p.add_argument("--target", type=float, nargs="+", help="caption target: x y z [dx dy dz]")
    p.add_argument("--target-frame", default="", help="frame of --target (default: world frame)")
    p.add_argument("--no-markers", action="store_true", help="do not publish RViz markers")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        request = build_request(args)
    except ValueError as exc:
        print(f"video3d-query: {exc}", file=sys.stderr)
        return 2
    rclpy.init()
    node = rclpy.create_node("video3d_query_client")
    try:
        client = node.create_client(Query, args.service)
        if not client.wait_for_service(timeout_sec=min(args.timeout, 10.0)):
            print(f"video3d-query: service {args.service} is not available (is video3d_node running "
                  "and active, on this ROS_DOMAIN_ID?)", file=sys.stderr)
            return 2
        start = time.perf_counter()
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=args.timeout)
        if not future.done():
            print(f"video3d-query: no answer within {args.timeout:.0f} s", file=sys.stderr)
            return 2
        d = response_to_dict(future.result(), time.perf_counter() - start)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(d, indent=2) if args.json else format_response(d))
    return 0 if d["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
