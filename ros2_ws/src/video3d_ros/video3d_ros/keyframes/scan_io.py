"""Read a recorded scan in ScanNet posed-images layout.

    SCAN/color/NNNNN.jpg      colour (any size)
    SCAN/depth/NNNNN.png      uint16 depth, millimetres, 0 = invalid
    SCAN/pose/NNNNN.txt       4×4 camera-to-world (ScanNet marks lost tracking with -inf)
    SCAN/intrinsic/intrinsic_depth.txt   4×4 (or 3×3) depth intrinsics

Optional axis alignment: a text file with either a 4×4 matrix or ScanNet's
``axisAlignment = m00 m01 ... m33`` line (scene meta file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ScanFormatError(ValueError):
    """A scan file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class ScanFrameFiles:
    """Paths of one frame."""

    index: int  # the NNNNN number
    color: Path
    depth: Path
    pose: Path


def list_frames(scan_dir: Path) -> list[ScanFrameFiles]:
    """All frames with a depth image, sorted by number; missing colour/pose is an error."""
    scan_dir = Path(scan_dir)
    depth_dir = scan_dir / "depth"
    if not depth_dir.is_dir():
        raise ScanFormatError(f"{depth_dir}: depth directory not found")
    frames = []
    for p in depth_dir.glob("*.png"):
        if not p.stem.isdigit():
            continue
        color, pose = scan_dir / "color" / f"{p.stem}.jpg", scan_dir / "pose" / f"{p.stem}.txt"
        for f in (color, pose):
            if not f.is_file():
                raise ScanFormatError(f"{f}: missing file for depth frame {p.name}")
        frames.append(ScanFrameFiles(int(p.stem), color, p, pose))
    if not frames:
        raise ScanFormatError(f"{depth_dir}: no NNNNN.png depth images")
    return sorted(frames, key=lambda f: f.index)


def read_matrix(path: Path, shapes: tuple[tuple[int, int], ...] = ((4, 4),)) -> np.ndarray:
    """Read a whitespace-separated matrix; accept one of ``shapes``. May contain -inf."""
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as e:
        raise ScanFormatError(f"{path}: cannot read a matrix ({e})") from e
    if m.shape not in shapes:
        raise ScanFormatError(f"{path}: expected a matrix of shape {shapes}, got {m.shape}")
    return m


def read_intrinsics(scan_dir: Path) -> np.ndarray:
    """The depth intrinsics (3×3 or 4×4) of a scan."""
    path = Path(scan_dir) / "intrinsic" / "intrinsic_depth.txt"
    if not path.is_file():
        raise ScanFormatError(f"{path}: depth intrinsics not found")
    K = read_matrix(path, ((3, 3), (4, 4)))
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ScanFormatError(f"{path}: intrinsics must be finite with fx, fy > 0")
    return K


def read_axis_alignment(path: Path) -> np.ndarray:
    """4×4 axis alignment from a plain matrix file or a ScanNet meta file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScanFormatError(f"{path}: cannot read axis alignment ({e})") from e
    m = re.search(r"axisAlignment\s*=\s*([-+0-9.eE\s]+)", text)
    if m:
        vals = np.array(m.group(1).split(), dtype=np.float64)
        if vals.size != 16:
            raise ScanFormatError(f"{path}: axisAlignment needs 16 numbers, got {vals.size}")
        A = vals.reshape(4, 4)
    else:
        A = read_matrix(path)
    if not np.all(np.isfinite(A)):
        raise ScanFormatError(f"{path}: axis alignment must be finite")
    return A


def read_depth_mm(path: Path) -> np.ndarray:
    """(H, W) uint16 depth image."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.array(im)
    except OSError as e:
        raise ScanFormatError(f"{path}: cannot read depth image ({e})") from e
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32, np.uint8):
        raise ScanFormatError(f"{path}: expected a single-channel 16-bit depth PNG, got {arr.shape} {arr.dtype}")
    return arr.astype(np.uint16)


def read_scene_voxel_points(path: Path) -> np.ndarray:
    """(N, 3) float points of the scene cloud from .npy or .ply (the latter via open3d)."""
    path = Path(path)
    if path.suffix == ".npy":
        pts = np.load(path)
    elif path.suffix == ".ply":
        import open3d as o3d  # only needed for .ply

        pts = np.asarray(o3d.io.read_point_cloud(str(path)).points)
    else:
        raise ScanFormatError(f"{path}: scene points must be .npy (N, 3) or .ply")
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ScanFormatError(f"{path}: expected a non-empty (N, 3) point array, got {pts.shape}")
    return pts.astype(np.float64)
