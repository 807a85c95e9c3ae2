"""Write an evaluation proposals file from the posed RGB-D frames of a ScanNet-layout root.

    python -m video3d_train.proposals_file --data-root data/gen250 \
        --scenes-from processed/scanrefer_vg_val_llava_style.json --out data/gen250/proposals_val.json
    python -m video3d_train.evaluate ... --proposals data/gen250/proposals_val.json

The paper evaluates grounding on Mask3D proposals; ScanNet users pass those
(``{scene_id: [[cx, cy, cz, dx, dy, dz], ...]}``). For generated scenes, and
anyone without a 3D detector, this runs the node's built-in proposer
(:func:`video3d_ros.proposals.propose_boxes`) on every stored frame of each
scene (every ``--pixel-stride``-th pixel), so the benchmark can be scored the
way a robot would see it rather than on ground-truth boxes. It also prints
recall@0.25/0.5 against the scenes' boxes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from video3d_ros.files import atomic_write_bytes
from video3d_ros.geometry import Box3D, depth_to_world_m
from video3d_ros.keyframes.scan_io import list_frames, read_axis_alignment, read_intrinsics, read_matrix
from video3d_ros.proposals import ProposalConfig, auto_pixel_stride, proposal_recall, propose_boxes

from .cli import run_command
from .data import DataError, read_processed, read_scene_boxes


def scene_points_m(root: Path, scene_id: str, pixel_stride: int) -> np.ndarray:
    """(N, 3) valid world points (axis-aligned frame) of every stored frame of a scene."""
    scan = root / "scannet" / "posed_images" / scene_id
    K = read_intrinsics(scan)[:3, :3]
    meta = root / "scannet" / "scans" / scene_id / f"{scene_id}.txt"
    T_align = read_axis_alignment(meta) if meta.is_file() else None
    parts = []
    for f in list_frames(scan):
        with Image.open(f.depth) as im:
            depth = np.asarray(im).astype(np.uint16)
        pose = read_matrix(f.pose)
        if not np.all(np.isfinite(pose)):
            continue  # ScanNet marks lost tracking with -inf poses
        pm = depth_to_world_m(depth, K, pose, T_align=T_align)
        s = pixel_stride or auto_pixel_stride(*depth.shape[:2])
        parts.append(pm.xyz_m[::s, ::s][pm.valid[::s, ::s]])
    if not parts:
        raise DataError(f"{scan}: no frame with a finite pose")
    return np.concatenate(parts).astype(np.float32)


def build_proposals(root: Path, scene_ids: list[str], config: ProposalConfig,
                    progress: bool = True) -> tuple[dict[str, list[list[float]]], dict[str, float]]:
    """Proposals per scene and mean recall@0.25/0.5 against the scenes' object boxes."""
    out: dict[str, list[list[float]]] = {}
    recall = {"recall@0.25": 0.0, "recall@0.5": 0.0}
    for sid in tqdm(scene_ids, desc="proposals", unit="scene", disable=not progress):
        boxes = propose_boxes(scene_points_m(root, sid, config.pixel_stride), config)
        out[sid] = [[round(float(v), 4) for v in (*b.center_m, *b.size_m)] for b in boxes]
        truth = [Box3D(b[:3], b[3:]) for b in read_scene_boxes(root, sid).boxes]
        recall["recall@0.25"] += proposal_recall(boxes, truth, 0.25) / len(scene_ids)
        recall["recall@0.5"] += proposal_recall(boxes, truth, 0.5) / len(scene_ids)
    return out, recall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-proposals", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--scenes-from", nargs="+", required=True,
                   help="processed JSON files (under the data root) whose scenes get proposals")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pixel-stride", type=int, default=0,
                   help="every n-th pixel of each frame (0 = from the frame size: 2 at 160x120)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    return run_command("video3d-proposals", lambda: _run(a))


def _run(a: argparse.Namespace) -> int:
    scenes = sorted({s.scene_id for f in a.scenes_from
                     for s in read_processed(a.data_root / f)[0]})
    props, recall = build_proposals(a.data_root, scenes, ProposalConfig(pixel_stride=a.pixel_stride),
                                    progress=not a.no_progress)
    atomic_write_bytes(a.out, json.dumps(props).encode())
    n = sum(len(v) for v in props.values())
    print(f"{len(scenes)} scenes, {n} proposals ({n / max(len(scenes), 1):.1f} per scene), "
          + ", ".join(f"{k} {v:.3f}" for k, v in recall.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
