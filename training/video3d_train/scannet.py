"""ScanNet preparation: ``.sens`` → posed images, mesh segmentation → object boxes.

    python -m video3d_train.scannet sens scans/scene0000_00/scene0000_00.sens \
        --out data/scannet/posed_images/scene0000_00 --frame-skip 10
    python -m video3d_train.scannet boxes data/scannet/scans --scenes scene0000_00 \
        --split train --out data/scannet/pcd_with_object_aabbs

``.sens`` (ScanNet's SensorData, version 4), little-endian::

    uint32 version; uint64 n + n bytes sensor name
    float32[16] × 4: colour intrinsic, colour extrinsic, depth intrinsic, depth extrinsic
    int32 colour compression (2 = jpeg), int32 depth compression (1 = zlib uint16)
    uint32 colour width, height, depth width, height; float32 depth shift; uint64 frames
    per frame: float32[16] camera-to-world, uint64 colour/depth timestamps,
               uint64 colour bytes, uint64 depth bytes, the bytes

Boxes: the vertices of ``<scene>_vh_clean_2.ply`` are moved by the scene's
``axisAlignment``; each object of ``<scene>.aggregation.json`` (``segGroups``:
``objectId``, ``label``, ``segments``) owns the vertices whose segment id
(``<scene>_vh_clean_2.0.010000.segs.json``, ``segIndices``) it lists; its box
is their axis-aligned min/max. Written like our generated scenes'
``pcd_with_object_aabbs/<split>/<scene>.npz`` (points, labels, ``aabb_obj_ids``,
``aabb_corner_xyz``), which :func:`video3d_train.data.read_scene_boxes` reads.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

COLOR_JPEG = 2
DEPTH_ZLIB_USHORT = 1
DEPTH_RAW_USHORT = 0
COLOR_RAW = 0


class ScanNetFormatError(ValueError):
    """A ScanNet file is malformed; the message names the file."""


@dataclass
class SensHeader:
    version: int
    sensor_name: str
    intrinsic_color: np.ndarray  # (4, 4)
    extrinsic_color: np.ndarray  # (4, 4)
    intrinsic_depth: np.ndarray  # (4, 4)
    extrinsic_depth: np.ndarray  # (4, 4)
    color_compression: int
    depth_compression: int
    color_size: tuple[int, int]  # (width, height)
    depth_size: tuple[int, int]  # (width, height)
    depth_shift: float  # depth units per metre (1000: millimetres)
    num_frames: int


@dataclass
class SensFrame:
    index: int
    camera_to_world: np.ndarray  # (4, 4) float64 (ScanNet writes -inf for lost tracking)
    timestamp_color: int
    timestamp_depth: int
    color_bytes: bytes  # compressed colour
    depth_bytes: bytes  # compressed depth


def _read(f: BinaryIO, n: int, path: Path, what: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise ScanNetFormatError(f"{path}: file ends inside {what}")
    return b


def read_sens_header(f: BinaryIO, path: Path) -> SensHeader:
    (version,) = struct.unpack("<I", _read(f, 4, path, "the version"))
    if version != 4:
        raise ScanNetFormatError(f"{path}: .sens version {version}, only version 4 is supported")
    (n,) = struct.unpack("<Q", _read(f, 8, path, "the sensor name length"))
    name = _read(f, n, path, "the sensor name").decode("utf-8", "replace")
    mats = [np.frombuffer(_read(f, 64, path, "a calibration matrix"), "<f4").reshape(4, 4)
            .astype(np.float64) for _ in range(4)]
    cc, dc = struct.unpack("<ii", _read(f, 8, path, "the compression types"))
    cw, ch, dw, dh = struct.unpack("<IIII", _read(f, 16, path, "the image sizes"))
    (shift,) = struct.unpack("<f", _read(f, 4, path, "the depth shift"))
    (frames,) = struct.unpack("<Q", _read(f, 8, path, "the frame count"))
    return SensHeader(version, name, *mats, cc, dc, (cw, ch), (dw, dh), shift, frames)


def iter_sens_frames(path: str | Path) -> tuple[SensHeader, Iterator[SensFrame]]:
    """Header and a lazy iterator over the frames of a ``.sens`` file."""
    path = Path(path)
    f = open(path, "rb")
    try:
        header = read_sens_header(f, path)
    except BaseException:
        f.close()
        raise

    def frames() -> Iterator[SensFrame]:
        with f:
            for i in range(header.num_frames):
                pose = np.frombuffer(_read(f, 64, path, f"frame {i}'s pose"), "<f4")
                tc, td, nc, nd = struct.unpack("<QQQQ", _read(f, 32, path, f"frame {i}'s sizes"))
                color = _read(f, nc, path, f"frame {i}'s colour")
                depth = _read(f, nd, path, f"frame {i}'s depth")
                yield SensFrame(i, pose.reshape(4, 4).astype(np.float64), tc, td, color, depth)

    return header, frames()


def decode_depth(header: SensHeader, frame: SensFrame, path: Path) -> np.ndarray:
    """(H, W) uint16 depth in the file's units (millimetres when depth_shift is 1000)."""
    w, h = header.depth_size
    if header.depth_compression == DEPTH_ZLIB_USHORT:
        raw = zlib.decompress(frame.depth_bytes)
    elif header.depth_compression == DEPTH_RAW_USHORT:
        raw = frame.depth_bytes
    else:
        raise ScanNetFormatError(f"{path}: depth compression {header.depth_compression} is not "
                                 "supported (zlib or raw uint16)")
    if len(raw) != w * h * 2:
        raise ScanNetFormatError(f"{path}: frame {frame.index}: depth has {len(raw)} bytes, "
                                 f"expected {w}×{h}×2")
    return np.frombuffer(raw, "<u2").reshape(h, w).copy()


def decode_color(header: SensHeader, frame: SensFrame, path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    from PIL import Image

    w, h = header.color_size
    if header.color_compression == COLOR_JPEG:
        with Image.open(io.BytesIO(frame.color_bytes)) as im:
            rgb = np.asarray(im.convert("RGB"))
    elif header.color_compression == COLOR_RAW:
        rgb = np.frombuffer(frame.color_bytes, np.uint8).reshape(h, w, 3)
    else:
        raise ScanNetFormatError(f"{path}: colour compression {header.color_compression} is "
                                 "not supported (jpeg or raw)")
    if rgb.shape != (h, w, 3):
        raise ScanNetFormatError(f"{path}: frame {frame.index}: colour is {rgb.shape}, header "
                                 f"says {w}×{h}")
    return rgb


def _matrix_txt(m: np.ndarray) -> str:
    return "".join(" ".join(f"{v:.8f}" for v in row) + "\n" for row in np.asarray(m))


def export_sens(sens_path: str | Path, out_dir: str | Path, frame_skip: int = 10,
                jpeg_quality: int = 95) -> list[int]:
    """Write ``color/NNNNN.jpg``, ``depth/NNNNN.png`` (uint16 mm), ``pose/NNNNN.txt`` and
    ``intrinsic/intrinsic_{color,depth}.txt`` for every ``frame_skip``-th frame.

    Colour keeps the file's resolution (the reader resizes it to the depth size).
    Returns the written frame numbers.
    """
    from PIL import Image

    sens_path, out = Path(sens_path), Path(out_dir)
    if frame_skip < 1:
        raise ValueError(f"frame_skip must be ≥ 1, got {frame_skip}")
    header, frames = iter_sens_frames(sens_path)
    if abs(header.depth_shift - 1000.0) > 1e-3:
        raise ScanNetFormatError(f"{sens_path}: depth shift {header.depth_shift}, expected 1000 "
                                 "(millimetres)")
    for d in ("color", "depth", "pose", "intrinsic"):
        (out / d).mkdir(parents=True, exist_ok=True)
    (out / "intrinsic" / "intrinsic_color.txt").write_text(_matrix_txt(header.intrinsic_color))
    (out / "intrinsic" / "intrinsic_depth.txt").write_text(_matrix_txt(header.intrinsic_depth))
    written = []
    for fr in frames:
        if fr.index % frame_skip:
            continue
        name = f"{fr.index:05d}"
        depth = decode_depth(header, fr, sens_path)
        Image.fromarray(depth).save(out / "depth" / f"{name}.png")
        if header.color_compression == COLOR_JPEG:
            (out / "color" / f"{name}.jpg").write_bytes(fr.color_bytes)  # already a JPEG
        else:
            Image.fromarray(decode_color(header, fr, sens_path)).save(
                out / "color" / f"{name}.jpg", quality=jpeg_quality)
        (out / "pose" / f"{name}.txt").write_text(_matrix_txt(fr.camera_to_world))
        written.append(fr.index)
    return written


def write_sens(path: str | Path, header: SensHeader, frames: list[tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]]) -> None:
    """Write a version-4 ``.sens`` file (JPEG colour, zlib depth): frames of
    (rgb (H, W, 3) uint8, depth (h, w) uint16, camera_to_world (4, 4)). For tests and tools."""
    from PIL import Image

    with open(path, "wb") as f:
        name = header.sensor_name.encode()
        f.write(struct.pack("<IQ", 4, len(name)) + name)
        for m in (header.intrinsic_color, header.extrinsic_color, header.intrinsic_depth,
                  header.extrinsic_depth):
            f.write(np.asarray(m, "<f4").tobytes())
        f.write(struct.pack("<ii", COLOR_JPEG, DEPTH_ZLIB_USHORT))
        f.write(struct.pack("<IIII", *header.color_size, *header.depth_size))
        f.write(struct.pack("<fQ", header.depth_shift, len(frames)))
        for i, (rgb, depth, pose) in enumerate(frames):
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
            c = buf.getvalue()
            d = zlib.compress(np.asarray(depth, "<u2").tobytes())
            f.write(np.asarray(pose, "<f4").tobytes())
            f.write(struct.pack("<QQQQ", i, i, len(c), len(d)) + c + d)


# ---- boxes from the segmentation ---------------------------------------------------------


@dataclass
class SceneInstances:
    object_ids: np.ndarray  # (N,) objectId of each object
    labels: list[str]  # raw ScanNet label of each object
    boxes: np.ndarray  # (N, 6) axis-aligned centre + size, metres (aligned frame)
    vertices: np.ndarray  # (V, 3) aligned mesh vertices
    colors: np.ndarray  # (V, 3) uint8
    vertex_object: np.ndarray  # (V,) objectId of each vertex, -1 for none


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ScanNetFormatError(f"{path}: cannot read JSON ({e})") from e


def read_mesh_vertices(ply: Path) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) float64 vertices and (V, 3) uint8 colours of a ScanNet mesh (via open3d)."""
    import open3d as o3d

    if not ply.is_file():
        raise ScanNetFormatError(f"{ply}: mesh not found")
    mesh = o3d.io.read_triangle_mesh(str(ply))
    v = np.asarray(mesh.vertices, dtype=np.float64)
    if len(v) == 0:
        raise ScanNetFormatError(f"{ply}: mesh has no vertices")
    c = np.asarray(mesh.vertex_colors)
    colors = (np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8) if len(c) == len(v) \
        else np.zeros((len(v), 3), np.uint8)
    return v, colors


def scene_instances(scan_dir: str | Path, scene_id: str | None = None) -> SceneInstances:
    """Objects and their aligned boxes from a ScanNet ``scans/<scene>`` folder."""
    from video3d_ros.keyframes.scan_io import ScanFormatError, read_axis_alignment

    scan_dir = Path(scan_dir)
    sid = scene_id or scan_dir.name
    ply = scan_dir / f"{sid}_vh_clean_2.ply"
    segs_path = scan_dir / f"{sid}_vh_clean_2.0.010000.segs.json"
    agg_path = scan_dir / f"{sid}.aggregation.json"
    if not agg_path.is_file():
        agg_path = scan_dir / f"{sid}_vh_clean.aggregation.json"
    v, colors = read_mesh_vertices(ply)
    meta = scan_dir / f"{sid}.txt"
    if meta.is_file():
        try:
            A = read_axis_alignment(meta)
        except ScanFormatError as e:
            raise ScanNetFormatError(str(e)) from e
        v = v @ A[:3, :3].T + A[:3, 3]
    seg = np.asarray(_load_json(segs_path).get("segIndices", []))
    if seg.shape != (len(v),):
        raise ScanNetFormatError(f"{segs_path}: {seg.size} segIndices for {len(v)} mesh vertices")
    groups = _load_json(agg_path).get("segGroups")
    if not isinstance(groups, list):
        raise ScanNetFormatError(f"{agg_path}: no 'segGroups' list")
    vertex_object = np.full(len(v), -1, np.int64)
    ids, labels, boxes = [], [], []
    for g in groups:
        try:
            oid, label, segments = int(g["objectId"]), str(g["label"]), list(g["segments"])
        except (KeyError, TypeError, ValueError) as e:
            raise ScanNetFormatError(f"{agg_path}: bad segGroup {g!r:.80} ({e})") from e
        mask = np.isin(seg, segments)
        if not mask.any():
            raise ScanNetFormatError(f"{agg_path}: object {oid} ({label}) owns no mesh vertex")
        vertex_object[mask] = oid
        pts = v[mask]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        ids.append(oid)
        labels.append(label)
        boxes.append(np.concatenate([(lo + hi) / 2, hi - lo]))
    return SceneInstances(np.asarray(ids, np.int64), labels,
                          np.asarray(boxes).reshape(-1, 6), v, colors, vertex_object)


def write_scene_boxes(inst: SceneInstances, path: str | Path) -> None:
    """``pcd_with_object_aabbs`` npz (the layout our data reader and generated scenes use)."""
    lo = inst.boxes[:, :3] - inst.boxes[:, 3:] / 2
    hi = inst.boxes[:, :3] + inst.boxes[:, 3:] / 2
    pick = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # (8, 3)
    corners = np.where(pick[None] == 0, lo[:, None], hi[:, None])  # (N, 8, 3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, xyz=inst.vertices.astype(np.float32), rgb=inst.colors,
             instance_ids=inst.vertex_object.astype(np.int32),
             aabb_obj_ids=inst.object_ids.astype(np.int32),
             aabb_corner_xyz=corners, labels=np.asarray(inst.labels))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-scannet", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sens", help=".sens → color/depth/pose/intrinsic")
    s.add_argument("sens", type=Path)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--frame-skip", type=int, default=10)
    b = sub.add_parser("boxes", help="mesh + segmentation + aggregation → object boxes")
    b.add_argument("scans_dir", type=Path, help="folder of scans/<scene_id>/")
    b.add_argument("--scenes", nargs="+", required=True)
    b.add_argument("--split", default="train")
    b.add_argument("--out", type=Path, required=True, help="pcd_with_object_aabbs folder")
    a = p.parse_args(argv)
    try:
        if a.cmd == "sens":
            n = export_sens(a.sens, a.out, a.frame_skip)
            print(f"{a.sens}: wrote {len(n)} frames to {a.out}")
        else:
            for sid in a.scenes:
                inst = scene_instances(a.scans_dir / sid, sid)
                write_scene_boxes(inst, a.out / a.split / f"{sid}.npz")
                print(f"{sid}: {len(inst.object_ids)} objects")
    except ScanNetFormatError as e:
        print(f"video3d-scannet: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
