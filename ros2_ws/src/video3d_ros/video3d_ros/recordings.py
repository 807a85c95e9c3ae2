"""Read recorded RGB-D scans as posed observations, without ROS.

Three layouts, one interface (:class:`RecordingReader`), one factory
(:func:`open_recording`) that detects the layout from what the path is:

* :attr:`RecordingLayout.SCANNET` — ScanNet posed images::

      SCAN/color/NNNNN.jpg|png   SCAN/depth/NNNNN.png (uint16 mm)   SCAN/pose/NNNNN.txt (4×4)
      SCAN/intrinsic/intrinsic_depth.txt [intrinsic_color.txt]

  Axis alignment (``axisAlignment = ...`` meta file) is applied to every pose:
  given explicitly, or found at ``SCAN/<id>.txt`` or ``SCAN/../../scans/<id>/<id>.txt``
  (ScanNet's and the reference's layouts). Stamps are ``NNNNN / fps``.
* :attr:`RecordingLayout.ROSBAG2` — a rosbag2 recording (MCAP or sqlite3: a
  ``.mcap`` / ``.db3`` file or a bag folder with ``metadata.yaml``) with colour
  and depth ``sensor_msgs/Image`` (colour may be ``CompressedImage``),
  ``CameraInfo`` and the camera pose from TF (``/tf`` + ``/tf_static``, world
  frame → the colour image's frame) or from a pose topic
  (``geometry_msgs/PoseStamped``, ``TransformStamped`` or ``nav_msgs/Odometry``
  giving the colour optical frame's pose). Topics are chosen by options or
  detected by message type (colour vs depth by image encoding). Messages are
  deserialised with the rosbags typestore.
* :attr:`RecordingLayout.TUM` — a generic folder of RGB and depth images plus
  a poses file in TUM RGB-D style (``groundtruth.txt``: ``timestamp tx ty tz qx
  qy qz qw``). Image stamps come from ``rgb.txt`` / ``depth.txt`` (``timestamp
  path`` lines) or from the file names (``<timestamp>.png``). Intrinsics are
  options (fx, fy, cx, cy) or a YAML file (``intrinsics.yaml`` in the folder is
  found by itself).

Colour, depth and pose are associated by stamp: every colour frame gets the
nearest unused depth image within ``max_dt_s``, and the pose at its stamp
(interpolated between poses at most ``max_pose_gap_s`` apart, or the nearest
one within ``max_dt_s``). Frames without a partner are skipped and counted in
:attr:`RecordingReader.skipped`; when none is left the error says why.

Depth is handed on as in REP 118: integer images as uint16 in units of
:attr:`RecordingReader.depth_scale_m` (0 invalid), float images as float32
metres (NaN invalid). An extra invalid value (``depth_invalid_value``) is
mapped to those. The first observation read is checked for a plausible depth
unit (median valid depth within [0.05, 20] m).

Readers index the recording when opened (cheap: names, stamps, poses) and
read images only in :meth:`RecordingReader.observations`, so a 1,000-frame
scan is never held in memory at once.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from . import image_msgs
from .enums import parse_enum
from .ingest import RgbdObservation
from .keyframes.scan_io import ScanFormatError, read_axis_alignment, read_depth_mm, read_matrix
from .streams import interpolate_pose, pose_from_translation_quaternion


class RecordingError(ValueError):
    """A recording cannot be read as asked; the message names the file and what to fix."""


class RecordingLayout(enum.Enum):
    """On-disk layouts of a recorded scan."""

    SCANNET = "scannet"
    ROSBAG2 = "rosbag2"
    TUM = "tum"

    @classmethod
    def parse(cls, name: "str | RecordingLayout") -> "RecordingLayout":
        return parse_enum(cls, name, "layout")


class DepthUnit(enum.Enum):
    """Unit of float depth images (integer images use ``depth_scale_m``)."""

    METRE = "m"
    MILLIMETRE = "mm"

    @classmethod
    def parse(cls, name: "str | DepthUnit") -> "DepthUnit":
        return parse_enum(cls, name, "depth unit")

    @property
    def metres_per_unit(self) -> float:
        return _METRES_PER_UNIT[self]


_METRES_PER_UNIT = {DepthUnit.METRE: 1.0, DepthUnit.MILLIMETRE: 1e-3}

# Plausible median depth of an indoor RGB-D frame, metres.
PLAUSIBLE_MEDIAN_DEPTH_M = (0.05, 20.0)

# File-name conventions of the formats.
ROSBAG2_STORAGE_SUFFIXES = (".mcap", ".db3")
ROSBAG2_METADATA = "metadata.yaml"
TUM_POSES_FILE = "groundtruth.txt"
TUM_INTRINSICS_FILE = "intrinsics.yaml"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class RecordingOptions:
    """How to read a recording (every field has a safe default)."""

    # depth
    depth_scale_m: float = 0.001  # metres per unit of integer (16-bit) depth; REP 118 / ScanNet: mm
    float_depth_unit: DepthUnit = DepthUnit.METRE  # unit of float depth images
    depth_invalid_value: float | None = None  # a further "no depth" value besides 0 / NaN (e.g. 65535)
    resize_depth: bool = False  # resample depth of another size to the colour size (same field of view)
    check_depth_unit: bool = True  # reject a first frame whose median depth is implausible
    # association
    max_dt_s: float = 0.02  # colour↔depth and nearest-pose tolerance, seconds (TUM associate.py)
    max_pose_gap_s: float = 0.2  # interpolate between poses at most this far apart, seconds
    # ScanNet
    fps: float = 30.0  # stamp of frame NNNNN is NNNNN / fps
    axis_alignment: Path | None = None  # 4×4 matrix or ScanNet meta file; None: look next to the scan
    # TUM-style folder
    poses_file: Path | None = None  # default: DIR/groundtruth.txt
    intrinsics: tuple[float, float, float, float] | Path | None = None  # (fx, fy, cx, cy) px, or YAML
    # rosbag2
    color_topic: str | None = None
    depth_topic: str | None = None
    color_info_topic: str | None = None
    depth_info_topic: str | None = None
    pose_topic: str | None = None  # pose of the colour optical frame; None: TF if no pose topic found
    world_frame: str | None = None  # TF: fixed frame (None: the root of the camera's TF tree)
    camera_frame: str | None = None  # TF: camera frame (None: the colour image's header.frame_id)
    progress: bool = False  # tqdm bars while indexing / reading

    def __post_init__(self) -> None:
        object.__setattr__(self, "float_depth_unit", DepthUnit.parse(self.float_depth_unit))
        if not (np.isfinite(self.depth_scale_m) and self.depth_scale_m > 0):
            raise ValueError(f"depth_scale_m must be > 0, got {self.depth_scale_m}")
        for name in ("max_dt_s", "max_pose_gap_s", "fps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("axis_alignment", "poses_file"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.intrinsics is not None and not isinstance(self.intrinsics, Path):
            if isinstance(self.intrinsics, str):
                object.__setattr__(self, "intrinsics", Path(self.intrinsics))
            else:
                vals = tuple(float(v) for v in self.intrinsics)
                if len(vals) != 4 or not all(np.isfinite(vals)) or vals[0] <= 0 or vals[1] <= 0:
                    raise ValueError(f"intrinsics must be fx, fy, cx, cy with fx, fy > 0, got {self.intrinsics}")
                object.__setattr__(self, "intrinsics", vals)


# ---- pure helpers -------------------------------------------------------------------------


def associate_stamps(a_s: np.ndarray, b_s: np.ndarray, max_dt_s: float) -> list[tuple[int, int]]:
    """Pair stamps of two streams one-to-one, closest pairs first (TUM's associate.py).

    Args:
        a_s: (N,) stamps, seconds; b_s: (M,) stamps, seconds.
        max_dt_s: pairs farther apart are not made.
    Returns:
        (i, j) index pairs sorted by i; every i and every j at most once.
    """
    a = np.asarray(a_s, dtype=np.float64)
    b = np.asarray(b_s, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return []
    order = np.argsort(b, kind="stable")
    bs = b[order]
    # Candidates: every (i, j) with |a_i - b_j| <= max_dt_s (a window of sorted b per a).
    lo = np.searchsorted(bs, a - max_dt_s, side="left")
    hi = np.searchsorted(bs, a + max_dt_s, side="right")
    counts = hi - lo
    ci = np.repeat(np.arange(a.size), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
    cj = order[k]
    cd = np.abs(bs[k] - a[ci])
    used_a, used_b, pairs = set(), set(), []
    for n in np.lexsort((cj, ci, cd)):  # smallest |dt| first, ties by index
        i, j = int(ci[n]), int(cj[n])
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((i, j))
    return sorted(pairs)


def pose_at(stamps_s: np.ndarray, T_world_cam: np.ndarray, t_s: float, *, max_gap_s: float,
            max_dt_s: float) -> np.ndarray | None:
    """Camera pose at time ``t_s`` from a sorted pose track.

    Args:
        stamps_s: (N,) increasing stamps, seconds.
        T_world_cam: (N, 4, 4) poses at those stamps.
        t_s: query time, seconds.
        max_gap_s: interpolate (slerp + lerp) between the two poses around
            ``t_s`` when they are at most this far apart.
        max_dt_s: otherwise use the nearest pose if it is within this of ``t_s``.
    Returns:
        (4, 4) float64 pose, or None when no pose is close enough.
    """
    n = len(stamps_s)
    if n == 0:
        return None
    i = int(np.searchsorted(stamps_s, t_s))
    for j in (i - 1, i):
        if 0 <= j < n and abs(stamps_s[j] - t_s) <= 1e-9:
            return np.array(T_world_cam[j], dtype=np.float64)
    if 0 < i < n and stamps_s[i] - stamps_s[i - 1] <= max_gap_s:
        alpha = (t_s - stamps_s[i - 1]) / (stamps_s[i] - stamps_s[i - 1])
        return interpolate_pose(T_world_cam[i - 1], T_world_cam[i], float(alpha))
    near = [j for j in (i - 1, i) if 0 <= j < n]
    j = min(near, key=lambda k: abs(stamps_s[k] - t_s))
    if abs(stamps_s[j] - t_s) <= max_dt_s:
        return np.array(T_world_cam[j], dtype=np.float64)
    return None


def normalise_depth(depth: np.ndarray, options: RecordingOptions, source: str) -> np.ndarray:
    """A raw depth image → uint16 (units of ``options.depth_scale_m``, 0 invalid) or float32 metres (NaN invalid).

    Args:
        depth: (H, W) integer or float depth as stored.
        source: where it came from, for error messages.
    """
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2 or depth.size == 0:
        raise RecordingError(f"{source}: depth must be a single-channel image, got shape {depth.shape}")
    bad = options.depth_invalid_value
    if depth.dtype.kind in "ui":
        if depth.size and (depth.max() > np.iinfo(np.uint16).max or depth.min() < 0):
            raise RecordingError(f"{source}: integer depth outside 0..65535; store 16-bit depth")
        out = depth.astype(np.uint16, copy=True)
        if bad is not None:
            out[depth == bad] = 0
        return out
    if depth.dtype.kind == "f":
        out = depth.astype(np.float32, copy=True)
        if bad is not None:
            out[depth == bad] = np.nan
        if options.float_depth_unit is not DepthUnit.METRE:
            out *= np.float32(options.float_depth_unit.metres_per_unit)
        return out
    raise RecordingError(f"{source}: depth dtype {depth.dtype} is neither integer nor float")


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """3×3 intrinsics of the same camera resampled by (sx, sy) (pixel centres at +0.5 kept aligned)."""
    K = np.asarray(K, dtype=np.float64)[:3, :3]
    return np.array([[K[0, 0] * sx, 0.0, (K[0, 2] + 0.5) * sx - 0.5],
                     [0.0, K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5], [0.0, 0.0, 1.0]])


def median_depth_m(depth: np.ndarray, depth_scale_m: float) -> float | None:
    """Median of the valid depth of a normalised image, metres (None: no valid pixel)."""
    if depth.dtype == np.uint16:
        vals = depth[depth > 0].astype(np.float64) * depth_scale_m
    else:
        vals = depth[np.isfinite(depth) & (depth > 0)].astype(np.float64)
    return float(np.median(vals)) if vals.size else None


def check_depth_unit(depth: np.ndarray, depth_scale_m: float, source: str) -> None:
    """Raise when the median valid depth (metres) is outside :data:`PLAUSIBLE_MEDIAN_DEPTH_M`."""
    med = median_depth_m(depth, depth_scale_m)
    if med is None:
        return
    lo, hi = PLAUSIBLE_MEDIAN_DEPTH_M
    if lo <= med <= hi:
        return
    if depth.dtype == np.uint16:
        raw = med / depth_scale_m
        fix = (f"16-bit depth unit (--depth-scale-m, metres per unit): a median raw value of {raw:.0f} "
               f"gives {_suggest_scales(raw)}")
    else:
        fix = ("float depth unit: pass --float-depth-unit mm if the images hold millimetres"
               if med > hi else "float depth should be metres")
    raise RecordingError(f"{source}: median depth is {med:g} m, which is not a room-scale distance; "
                         f"check the {fix}")


# Common 16-bit depth units, metres per unit: mm (REP 118, ScanNet), TUM's 1/5000 m, 0.1 mm, m.
_COMMON_DEPTH_SCALES_M = (0.001, 0.0002, 0.0001, 1.0)


def _suggest_scales(raw_median: float) -> str:
    lo, hi = PLAUSIBLE_MEDIAN_DEPTH_M
    options = [f"--depth-scale-m {s:g} → {raw_median * s:.2f} m" for s in _COMMON_DEPTH_SCALES_M
               if lo <= raw_median * s <= hi / 2]
    return " or ".join(options) if options else "no plausible distance with a common unit"


def read_image_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 colour image from a file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        size = path.stat().st_size if path.is_file() else None
        what = "is empty (0 bytes)" if size == 0 else f"cannot be read as an image ({e})"
        raise RecordingError(f"{path}: colour image {what}; re-export or remove this frame") from e


def read_image_depth(path: Path) -> np.ndarray:
    """(H, W) depth as stored (16-bit PNG; float .npy/.tiff also accepted)."""
    try:
        if path.suffix == ".npy":
            return np.load(path)
        if path.stat().st_size == 0:
            raise RecordingError(f"{path}: depth image is empty (0 bytes); re-export or remove this frame")
        return read_depth_mm(path) if path.suffix == ".png" else _read_any_image(path)
    except ScanFormatError as e:
        raise RecordingError(f"{e}; re-export or remove this frame") from e
    except (OSError, ValueError) as e:
        if isinstance(e, RecordingError):
            raise
        raise RecordingError(f"{path}: cannot read depth ({e})") from e


def _read_any_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im)


def load_intrinsics_yaml(path: Path) -> np.ndarray:
    """3×3 K from YAML: ``fx, fy, cx, cy`` keys, ``K: [9]`` or ROS ``camera_matrix: {data: [9]}``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RecordingError(f"{path}: cannot read intrinsics YAML ({e})") from e
    if not isinstance(data, dict):
        raise RecordingError(f"{path}: intrinsics YAML must be a mapping with fx, fy, cx, cy")
    try:
        if all(k in data for k in ("fx", "fy", "cx", "cy")):
            K = np.array([[data["fx"], 0, data["cx"]], [0, data["fy"], data["cy"]], [0, 0, 1]], float)
        elif "K" in data:
            K = np.asarray(data["K"], float).reshape(3, 3)
        elif isinstance(data.get("camera_matrix"), dict):
            K = np.asarray(data["camera_matrix"]["data"], float).reshape(3, 3)
        else:
            raise RecordingError(f"{path}: intrinsics YAML needs fx, fy, cx, cy (or K: [9 numbers])")
    except (TypeError, ValueError) as e:
        if isinstance(e, RecordingError):
            raise
        raise RecordingError(f"{path}: intrinsics are not numbers ({e})") from e
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise RecordingError(f"{path}: intrinsics must be finite with fx, fy > 0")
    return K


# ---- the interface ------------------------------------------------------------------------


@dataclass
class _Index:
    """What a reader knows after opening: one entry per associated frame."""

    stamps_s: np.ndarray  # (N,) colour stamps, seconds
    T_world_cam: np.ndarray  # (N, 4, 4)
    skipped: dict[str, int] = field(default_factory=dict)


class RecordingReader(abc.ABC):
    """A recording as N posed RGB-D observations, in time order.

    ``len(reader)`` frames; ``reader.stamps_s`` and ``reader.T_world_cam`` are
    known without reading images; :meth:`observations` reads them.
    """

    layout: ClassVar[RecordingLayout]

    def __init__(self, path: Path, options: RecordingOptions) -> None:
        self.path = Path(path)
        self.options = options
        self._index = self._build_index()
        if len(self._index.stamps_s) == 0:
            raise RecordingError(f"{self.path}: no frame with colour, depth and a pose"
                                 + self._skipped_text())
        self._checked_unit = False

    # subclasses ------------------------------------------------------------------------
    @abc.abstractmethod
    def _build_index(self) -> _Index:
        """Find frames, stamps and poses (no image decoding where avoidable)."""

    @abc.abstractmethod
    def _read(self, indices: Sequence[int]) -> Iterator[tuple[int, RgbdObservation]]:
        """Yield (index, observation) for sorted unique ``indices``, in that order."""

    @abc.abstractmethod
    def source(self, index: int) -> str:
        """Where frame ``index`` comes from (file names, or topic and stamp) for messages."""

    # public ----------------------------------------------------------------------------
    @property
    def depth_scale_m(self) -> float:
        """Metres per unit of the uint16 depth of this reader's observations."""
        return self.options.depth_scale_m

    @property
    def stamps_s(self) -> np.ndarray:
        """(N,) colour stamps, seconds (read-only)."""
        v = self._index.stamps_s.view()
        v.flags.writeable = False
        return v

    @property
    def T_world_cam(self) -> np.ndarray:
        """(N, 4, 4) camera-to-world poses in the recording's world frame (read-only)."""
        v = self._index.T_world_cam.view()
        v.flags.writeable = False
        return v

    @property
    def skipped(self) -> dict[str, int]:
        """Frames left out while indexing, by reason."""
        return dict(self._index.skipped)

    def __len__(self) -> int:
        return len(self._index.stamps_s)

    def observations(self, indices: Sequence[int] | None = None, *, desc: str = "reading frames"
                     ) -> Iterator[tuple[int, RgbdObservation]]:
        """Read frames ``indices`` (default: all) as ``(index, observation)``, in index order.

        Raises:
            RecordingError naming the file (or topic) of a frame that is
            unreadable, whose depth and colour sizes differ without a way to
            register them, or (first frame) whose depth unit looks wrong.
        """
        idx = list(range(len(self))) if indices is None else sorted({int(i) for i in indices})
        if idx and not (0 <= idx[0] and idx[-1] < len(self)):
            raise IndexError(f"frame indices must be in [0, {len(self)}), got {idx[0]}..{idx[-1]}")
        bar = tqdm(total=len(idx), desc=desc, unit="frame", disable=not self.options.progress)
        try:
            for i, obs in self._read(idx):
                yield i, self._finish(i, obs)
                bar.update(1)
        finally:
            bar.close()

    def __iter__(self) -> Iterator[RgbdObservation]:
        for _, obs in self.observations():
            yield obs

    # shared checks -----------------------------------------------------------------------
    def _finish(self, index: int, obs: RgbdObservation) -> RgbdObservation:
        depth = obs.depth
        rgb_hw = obs.rgb.shape[:2]
        if depth.shape != rgb_hw and obs.K_depth is None:
            if not self.options.resize_depth:
                raise RecordingError(
                    f"{self.source(index)}: depth is {depth.shape[1]}x{depth.shape[0]} but colour is "
                    f"{rgb_hw[1]}x{rgb_hw[0]} and no depth intrinsics are known; rerun with "
                    "--resize-depth to resample the depth to the colour size (assumes both images "
                    "cover the same field of view), or provide depth intrinsics")
            K_depth = scale_intrinsics(obs.K_color, depth.shape[1] / rgb_hw[1], depth.shape[0] / rgb_hw[0])
            obs = RgbdObservation(obs.stamp_s, obs.rgb, depth, obs.K_color, obs.T_world_cam, K_depth)
        if self.options.check_depth_unit and not self._checked_unit:
            check_depth_unit(depth, self.depth_scale_m, self.source(index))
            self._checked_unit = True
        return obs

    def _skipped_text(self) -> str:
        if not self._index.skipped:
            return ""
        return " (skipped: " + ", ".join(f"{n} {why}" for why, n in self._index.skipped.items()) + ")"


# ---- ScanNet posed images -----------------------------------------------------------------


class ScanNetReader(RecordingReader):
    """ScanNet posed-images folder; poses are axis-aligned when an alignment is found."""

    layout = RecordingLayout.SCANNET

    def _build_index(self) -> _Index:
        scan = self.path
        depth_dir = scan / "depth"
        if not depth_dir.is_dir():
            raise RecordingError(f"{depth_dir}: depth folder not found (ScanNet layout needs "
                                 "color/, depth/, pose/, intrinsic/)")
        self._files: list[tuple[int, Path, Path, Path]] = []
        for p in sorted(depth_dir.glob("*.png")):
            if not p.stem.isdigit():
                continue
            color = next((scan / "color" / f"{p.stem}{s}" for s in (".jpg", ".png")
                          if (scan / "color" / f"{p.stem}{s}").is_file()), None)
            if color is None:
                raise RecordingError(f"{scan / 'color' / (p.stem + '.jpg')}: colour image for depth "
                                     f"{p} not found (.jpg or .png)")
            pose = scan / "pose" / f"{p.stem}.txt"
            if not pose.is_file():
                raise RecordingError(f"{pose}: no pose for depth frame {p}; the ScanNet layout needs "
                                     "one 4x4 camera-to-world matrix per frame in pose/")
            self._files.append((int(p.stem), color, p, pose))
        if not self._files:
            raise RecordingError(f"{depth_dir}: no NNNNN.png depth images")
        self._files.sort()
        self.T_align, self.axis_alignment_file = self._axis_alignment()
        self.K_depth, self.K_color = self._intrinsics()
        stamps, poses, kept, skipped = [], [], [], {}
        for number, color, depth, pose in self._files:
            try:
                T = read_matrix(pose)
            except ScanFormatError as e:
                raise RecordingError(str(e)) from e
            if not np.all(np.isfinite(T)):
                skipped["lost-tracking poses (-inf)"] = skipped.get("lost-tracking poses (-inf)", 0) + 1
                continue
            stamps.append(number / self.options.fps)
            poses.append(self.T_align @ T)
            kept.append((number, color, depth, pose))
        self._files = kept
        return _Index(np.asarray(stamps, float), np.asarray(poses, float).reshape(-1, 4, 4), skipped)

    def _axis_alignment(self) -> tuple[np.ndarray, Path | None]:
        path = self.options.axis_alignment
        if path is None:
            sid = self.path.resolve().name
            for cand in (self.path / f"{sid}.txt", self.path.resolve().parents[1] / "scans" / sid / f"{sid}.txt"):
                if cand.is_file():
                    path = cand
                    break
        if path is None:
            return np.eye(4), None
        try:
            return read_axis_alignment(path), path
        except ScanFormatError as e:
            raise RecordingError(str(e)) from e

    def _intrinsics(self) -> tuple[np.ndarray, np.ndarray | None]:
        d = self.path / "intrinsic" / "intrinsic_depth.txt"
        if not d.is_file():
            raise RecordingError(f"{d}: depth intrinsics not found (4x4 or 3x3 matrix, pixels)")
        try:
            K_depth = read_matrix(d, ((3, 3), (4, 4)))[:3, :3]
            c = self.path / "intrinsic" / "intrinsic_color.txt"
            K_color = read_matrix(c, ((3, 3), (4, 4)))[:3, :3] if c.is_file() else None
        except ScanFormatError as e:
            raise RecordingError(str(e)) from e
        for K, f in ((K_depth, d), (K_color, self.path / "intrinsic" / "intrinsic_color.txt")):
            if K is not None and (not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0):
                raise RecordingError(f"{f}: intrinsics must be finite with fx, fy > 0")
        return K_depth, K_color

    def source(self, index: int) -> str:
        number, color, depth, _ = self._files[index]
        return f"{depth} / {color.name}"

    def _read(self, indices: Sequence[int]) -> Iterator[tuple[int, RgbdObservation]]:
        for i in indices:
            _, color, depth_path, _ = self._files[i]
            rgb = read_image_rgb(color)
            depth = normalise_depth(read_image_depth(depth_path), self.options, str(depth_path))
            same = depth.shape == rgb.shape[:2]
            if same or self.K_color is None:
                K_color, K_depth = self.K_depth, None
            else:
                K_color, K_depth = self.K_color, self.K_depth
            yield i, RgbdObservation(float(self._index.stamps_s[i]), rgb, depth, K_color,
                                     self._index.T_world_cam[i].copy(), K_depth)


# ---- TUM-style folder ---------------------------------------------------------------------


def read_stamp_list(path: Path) -> list[tuple[float, str]]:
    """``timestamp path`` lines (``#`` comments) of TUM's rgb.txt / depth.txt."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            out.append((float(parts[0]), parts[1]))
        except (ValueError, IndexError):
            raise RecordingError(f"{path}:{n}: expected 'timestamp path', got {line!r}") from None
    return out


def read_tum_poses(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """TUM ``timestamp tx ty tz qx qy qz qw`` lines → (N,) stamps and (N, 4, 4) poses, sorted."""
    stamps, poses = [], []
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise RecordingError(f"{path}: cannot read poses ({e})") from e
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        vals = line.replace(",", " ").split()
        try:
            if len(vals) != 8:
                raise ValueError(f"{len(vals)} numbers")
            v = [float(x) for x in vals]
            T = pose_from_translation_quaternion(v[1:4], v[4:8])
        except ValueError as e:
            raise RecordingError(f"{path}:{n}: expected 'timestamp tx ty tz qx qy qz qw' ({e})") from None
        stamps.append(v[0])
        poses.append(T)
    if not stamps:
        raise RecordingError(f"{path}: no poses in the file; expected lines "
                             "'timestamp tx ty tz qx qy qz qw'")
    order = np.argsort(stamps, kind="stable")
    return np.asarray(stamps)[order], np.asarray(poses)[order]


class TumFolderReader(RecordingReader):
    """Folder of rgb/ and depth/ images with a TUM-style poses file and given intrinsics."""

    layout = RecordingLayout.TUM

    def _images(self, kind: str) -> tuple[list[tuple[float, Path]], Path]:
        listing = self.path / f"{kind}.txt"
        if listing.is_file():
            return [(t, self.path / p) for t, p in read_stamp_list(listing)], listing
        folder = self.path / kind
        if not folder.is_dir():
            raise RecordingError(f"{self.path}: neither {kind}.txt nor a {kind}/ folder")
        out = []
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES + (".npy", ".tiff", ".tif"):
                try:
                    out.append((float(p.stem), p))
                except ValueError:
                    raise RecordingError(f"{p}: file name is not a timestamp; name images "
                                         f"<seconds>.png or list them in {kind}.txt") from None
        return sorted(out), folder

    def _build_index(self) -> _Index:
        poses_file = self.options.poses_file or self.path / TUM_POSES_FILE
        if not poses_file.is_file():
            raise RecordingError(f"{poses_file}: no poses; this layout needs a poses file with lines "
                                 "'timestamp tx ty tz qx qy qz qw' (pass --poses FILE)")
        self.K = self._intrinsics()
        rgb, rgb_src = self._images("rgb")
        depth, depth_src = self._images("depth")
        for items, src in ((rgb, rgb_src), (depth, depth_src)):
            if not items:
                raise RecordingError(f"{src}: no images")
        pose_t, pose_T = read_tum_poses(poses_file)
        o = self.options
        pairs = associate_stamps(np.array([t for t, _ in rgb]), np.array([t for t, _ in depth]), o.max_dt_s)
        if not pairs:
            gap = _nearest_gap(np.array([t for t, _ in rgb]), np.array([t for t, _ in depth]))
            raise RecordingError(
                f"{depth_src}: no depth image within {o.max_dt_s:g} s of any colour image in {rgb_src} "
                f"(closest pair is {gap:.3f} s apart); check the timestamps or raise --max-dt-s")
        stamps, poses, files, skipped = [], [], [], {}
        if len(pairs) < len(rgb):
            skipped["colour images without depth"] = len(rgb) - len(pairs)
        for i, j in pairs:
            t = rgb[i][0]
            T = pose_at(pose_t, pose_T, t, max_gap_s=o.max_pose_gap_s, max_dt_s=o.max_dt_s)
            if T is None:
                skipped["frames without a pose"] = skipped.get("frames without a pose", 0) + 1
                continue
            stamps.append(t)
            poses.append(T)
            files.append((rgb[i][1], depth[j][1]))
        if not stamps:
            raise RecordingError(
                f"{poses_file}: no pose within {o.max_dt_s:g} s of any image (poses cover "
                f"{pose_t[0]:.3f}..{pose_t[-1]:.3f} s, images {rgb[0][0]:.3f}..{rgb[-1][0]:.3f} s); "
                "check that poses and images share a clock, or raise --max-dt-s / --max-pose-gap-s")
        self._files = files
        return _Index(np.asarray(stamps), np.asarray(poses).reshape(-1, 4, 4), skipped)

    def _intrinsics(self) -> np.ndarray:
        k = self.options.intrinsics
        if k is None and (self.path / TUM_INTRINSICS_FILE).is_file():
            k = self.path / TUM_INTRINSICS_FILE
        if k is None:
            raise RecordingError(f"{self.path}: no intrinsics; pass --intrinsics fx,fy,cx,cy or "
                                 f"--intrinsics FILE.yaml, or put {TUM_INTRINSICS_FILE} in the folder")
        if isinstance(k, Path):
            return load_intrinsics_yaml(k)
        fx, fy, cx, cy = k
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], float)

    def source(self, index: int) -> str:
        rgb, depth = self._files[index]
        return f"{depth} / {rgb.name}"

    def _read(self, indices: Sequence[int]) -> Iterator[tuple[int, RgbdObservation]]:
        for i in indices:
            rgb_path, depth_path = self._files[i]
            for p in (rgb_path, depth_path):
                if not p.is_file():
                    raise RecordingError(f"{p}: listed image not found")
            rgb = read_image_rgb(rgb_path)
            depth = normalise_depth(read_image_depth(depth_path), self.options, str(depth_path))
            yield i, RgbdObservation(float(self._index.stamps_s[i]), rgb, depth, self.K,
                                     self._index.T_world_cam[i].copy(), None)


def _nearest_gap(a: np.ndarray, b: np.ndarray) -> float:
    b = np.sort(b)
    k = np.clip(np.searchsorted(b, a), 1, len(b) - 1) if len(b) > 1 else np.zeros(len(a), int)
    d = np.abs(b[k] - a)
    if len(b) > 1:
        d = np.minimum(d, np.abs(b[k - 1] - a))
    return float(d.min())


# ---- rosbag2 ------------------------------------------------------------------------------

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
TF_STATIC_TOPIC = "/tf_static"


class PoseMsgKind(enum.Enum):
    """Message types accepted on a pose topic, mapped to how the pose is read."""

    POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
    TRANSFORM_STAMPED = "geometry_msgs/msg/TransformStamped"
    ODOMETRY = "nav_msgs/msg/Odometry"
    POSE_WITH_COVARIANCE_STAMPED = "geometry_msgs/msg/PoseWithCovarianceStamped"


def _pose_of_msg(kind: PoseMsgKind, msg) -> np.ndarray:
    if kind is PoseMsgKind.TRANSFORM_STAMPED:
        return _transform_matrix(msg.transform)
    pose = {PoseMsgKind.POSE_STAMPED: lambda m: m.pose,
            PoseMsgKind.ODOMETRY: lambda m: m.pose.pose,
            PoseMsgKind.POSE_WITH_COVARIANCE_STAMPED: lambda m: m.pose.pose}[kind](msg)
    return pose_from_translation_quaternion((pose.position.x, pose.position.y, pose.position.z),
                                            (pose.orientation.x, pose.orientation.y,
                                             pose.orientation.z, pose.orientation.w))


def _transform_matrix(t) -> np.ndarray:
    return pose_from_translation_quaternion((t.translation.x, t.translation.y, t.translation.z),
                                            (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w))


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


# encoding → (dtype, channels, channel order to RGB); REP 118 depth encodings → dtype
def color_msg_to_rgb(msg, msgtype: str, source: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an Image (rgb8/bgr8/rgba8/bgra8/mono8) or CompressedImage."""
    if msgtype == COMPRESSED_IMAGE_TYPE:
        import io

        from PIL import Image

        try:
            with Image.open(io.BytesIO(np.asarray(msg.data, np.uint8).tobytes())) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except OSError as e:
            raise RecordingError(f"{source}: cannot decode compressed colour ({msg.format}): {e}") from e
    return image_msgs.image_to_rgb(msg, source, RecordingError)


def depth_msg_to_array(msg, source: str) -> np.ndarray:
    """(H, W) uint16 (16UC1/mono16) or float32 (32FC1) depth of an Image message."""
    return image_msgs.image_to_depth(msg, source, RecordingError)


class TransformTree:
    """TF edges over time: parent ← child transforms, dynamic (interpolated) or static."""

    def __init__(self) -> None:
        self._edges: dict[str, tuple[str, list[float], list[np.ndarray], bool]] = {}

    def add(self, parent: str, child: str, stamp_s: float, T_parent_child: np.ndarray, static: bool) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        edge = self._edges.get(child)
        if edge is None or edge[0] != parent:
            edge = (parent, [], [], static)
            self._edges[child] = edge
        if static:
            edge[1][:], edge[2][:] = [stamp_s], [T_parent_child]
        else:
            edge[1].append(stamp_s)
            edge[2].append(T_parent_child)

    def finalize(self) -> None:
        """Sort every dynamic edge by stamp (call once after adding)."""
        for child, (parent, stamps, poses, static) in list(self._edges.items()):
            order = np.argsort(stamps, kind="stable")
            self._edges[child] = (parent, np.asarray(stamps)[order], np.asarray(poses)[order], static)

    @property
    def frames(self) -> set[str]:
        return set(self._edges) | {e[0] for e in self._edges.values()}

    def chain(self, frame: str, world_frame: str | None) -> list[str]:
        """Frames from ``frame`` up to ``world_frame`` (default: the root)."""
        out, f = [frame.lstrip("/")], frame.lstrip("/")
        while f in self._edges and f != world_frame:
            f = self._edges[f][0]
            if f in out:
                raise RecordingError(f"TF has a cycle through {f!r}")
            out.append(f)
        return out

    def lookup(self, world_frame: str, frame: str, t_s: float, *, max_gap_s: float,
               max_dt_s: float) -> np.ndarray | None:
        """T_world_frame at ``t_s`` (None when a dynamic edge has no pose near ``t_s``)."""
        T = np.eye(4)
        f = frame.lstrip("/")
        while f != world_frame:
            parent, stamps, poses, static = self._edges[f]
            T_edge = poses[0] if static else pose_at(stamps, poses, t_s, max_gap_s=max_gap_s, max_dt_s=max_dt_s)
            if T_edge is None:
                return None
            T = T_edge @ T
            f = parent
        return T


@dataclass
class _ImageRecord:
    stamp_s: float
    bag_time_ns: int


class RosbagReader(RecordingReader):
    """rosbag2 recording (MCAP or sqlite3), read with ``rosbags`` and its typestore."""

    layout = RecordingLayout.ROSBAG2

    def _open(self):
        from rosbags.rosbag2 import Reader, ReaderError
        from rosbags.typesys import Stores, get_typestore

        self._typestore = get_typestore(Stores.LATEST)
        try:
            reader = Reader(self.path)
            reader.open()
        except (ReaderError, OSError, ValueError) as e:
            size = self.path.stat().st_size if self.path.is_file() else None
            what = "is empty (0 bytes)" if size == 0 else f"cannot be opened as a rosbag2 recording ({e})"
            raise RecordingError(f"{self.path}: {what}") from e
        self._register_bag_types(reader)
        return reader

    def _register_bag_types(self, reader) -> None:
        """Add .msg definitions the bag carries for types the typestore lacks."""
        from rosbags.interfaces import MessageDefinitionFormat
        from rosbags.typesys import get_types_from_msg

        for c in reader.connections:
            if c.msgtype in self._typestore.fielddefs or c.msgdef.format is not MessageDefinitionFormat.MSG:
                continue
            self._typestore.register(get_types_from_msg(c.msgdef.data, c.msgtype))

    def _deserialize(self, raw, msgtype: str, source: str):
        try:
            return self._typestore.deserialize_cdr(raw, msgtype)
        except Exception as e:  # corrupt or truncated CDR
            raise RecordingError(f"{self.path}: message on {source} cannot be deserialised ({e})") from e

    def _first(self, reader, conn):
        for c, _, raw in reader.messages(connections=[conn]):
            return self._deserialize(raw, c.msgtype, c.topic)
        return None

    def _choose_topics(self, reader) -> None:
        o = self.options
        by_topic = {c.topic: c for c in reader.connections}
        for name in ("color_topic", "depth_topic", "color_info_topic", "depth_info_topic", "pose_topic"):
            t = getattr(o, name)
            if t is not None and t not in by_topic:
                raise RecordingError(f"{self.path}: topic {t!r} (--{name.replace('_', '-')}) is not in "
                                     f"the bag; topics: {', '.join(sorted(by_topic)) or 'none'}")
        colour, depth = [], []
        for c in reader.connections:
            if c.msgtype == COMPRESSED_IMAGE_TYPE:
                colour.append(c.topic)
            elif c.msgtype == IMAGE_TYPE and c.topic not in (o.color_topic, o.depth_topic):
                msg = self._first(reader, c)
                if msg is None:
                    continue
                if msg.encoding in image_msgs.DEPTH_ENCODINGS:
                    depth.append(c.topic)
                elif msg.encoding in image_msgs.COLOR_ENCODINGS:
                    colour.append(c.topic)
        self.color_topic = o.color_topic or self._one(colour, "colour image", "--color-topic", by_topic)
        self.depth_topic = o.depth_topic or self._one(depth, "depth image (16UC1 / 32FC1)", "--depth-topic",
                                                      by_topic)
        infos = [c.topic for c in reader.connections if c.msgtype == CAMERA_INFO_TYPE]
        self.color_info_topic = o.color_info_topic or self._info_for(self.color_topic, infos)
        self.depth_info_topic = o.depth_info_topic or self._info_for(self.depth_topic, infos)
        if self.depth_info_topic == self.color_info_topic:
            self.depth_info_topic = None
        if o.pose_topic is not None:
            self.pose_topic = o.pose_topic
        else:
            poses = [c.topic for c in reader.connections if c.msgtype in _POSE_KINDS]
            self.pose_topic = self._one(poses, "pose", "--pose-topic", by_topic) if len(poses) > 1 else (
                poses[0] if poses else None)
        self.tf_topics = [c.topic for c in reader.connections if c.msgtype == TF_TYPE]
        if self.pose_topic is None and not self.tf_topics:
            raise RecordingError(
                f"{self.path}: no poses: the bag has neither TF (/tf, /tf_static) nor a pose topic "
                f"({', '.join(k.value for k in PoseMsgKind)}); record the camera pose or pass "
                f"--pose-topic. Topics: {', '.join(sorted(by_topic))}")
        if self.pose_topic is not None and by_topic[self.pose_topic].msgtype not in _POSE_KINDS:
            raise RecordingError(f"{self.path}: --pose-topic {self.pose_topic} has type "
                                 f"{by_topic[self.pose_topic].msgtype}; expected one of "
                                 f"{', '.join(k.value for k in PoseMsgKind)}")

    def _one(self, topics: list[str], what: str, flag: str, by_topic) -> str:
        if len(topics) == 1:
            return topics[0]
        listing = ", ".join(f"{t} ({by_topic[t].msgtype})" for t in sorted(by_topic)) or "none"
        if not topics:
            raise RecordingError(f"{self.path}: no {what} topic found; pass {flag}. Topics: {listing}")
        raise RecordingError(f"{self.path}: several {what} topics ({', '.join(sorted(topics))}); "
                             f"choose one with {flag}")

    @staticmethod
    def _info_for(image_topic: str, infos: list[str]) -> str | None:
        """The camera_info next to an image topic (same namespace), or the only one."""
        ns = image_topic.rsplit("/", 1)[0]
        same_ns = [t for t in infos if t.rsplit("/", 1)[0] == ns]  # ROS image_transport convention
        if len(same_ns) == 1:
            return same_ns[0]
        if len(infos) == 1:
            return infos[0]
        return None

    def _build_index(self) -> _Index:
        o = self.options
        reader = self._open()
        try:
            if reader.message_count == 0:
                raise RecordingError(f"{self.path}: the bag holds no messages")
            self._choose_topics(reader)
            wanted = {self.color_topic, self.depth_topic, self.color_info_topic, self.depth_info_topic,
                      self.pose_topic, *self.tf_topics} - {None}
            conns = [c for c in reader.connections if c.topic in wanted]
            colour: list[_ImageRecord] = []
            depth: list[_ImageRecord] = []
            infos: dict[str, object] = {}
            pose_t: list[float] = []
            pose_T: list[np.ndarray] = []
            tree = TransformTree()
            self.camera_frame = o.camera_frame
            bar = tqdm(total=sum(c.msgcount for c in conns), desc="indexing bag", unit="msg",
                       disable=not o.progress)
            for c, t_ns, raw in reader.messages(connections=conns):
                bar.update(1)
                msg = self._deserialize(raw, c.msgtype, c.topic)
                if c.topic == self.color_topic:
                    colour.append(_ImageRecord(_stamp_s(msg.header), t_ns))
                    if self.camera_frame is None:
                        self.camera_frame = msg.header.frame_id
                elif c.topic == self.depth_topic:
                    depth.append(_ImageRecord(_stamp_s(msg.header), t_ns))
                elif c.msgtype == CAMERA_INFO_TYPE:
                    infos.setdefault(c.topic, msg)
                elif c.topic == self.pose_topic:
                    pose_t.append(_stamp_s(msg.header))
                    pose_T.append(_pose_of_msg(PoseMsgKind(c.msgtype), msg))
                elif c.msgtype == TF_TYPE:
                    for tr in msg.transforms:
                        tree.add(tr.header.frame_id, tr.child_frame_id, _stamp_s(tr.header),
                                 _transform_matrix(tr.transform), static=c.topic == TF_STATIC_TOPIC)
            bar.close()
        finally:
            reader.close()
        for topic, items in ((self.color_topic, colour), (self.depth_topic, depth)):
            if not items:
                raise RecordingError(f"{self.path}: topic {topic} has no messages")
        self.K_color = self._K(infos, self.color_info_topic, "colour")
        self.K_depth = self._K(infos, self.depth_info_topic, "depth") if self.depth_info_topic else None
        self._colour, self._depth = colour, depth
        c_t = np.array([r.stamp_s for r in colour])
        d_t = np.array([r.stamp_s for r in depth])
        pairs = associate_stamps(c_t, d_t, o.max_dt_s)
        if not pairs:
            raise RecordingError(
                f"{self.path}: no {self.depth_topic} message within {o.max_dt_s:g} s of a "
                f"{self.color_topic} message (closest pair {_nearest_gap(c_t, d_t):.3f} s apart); "
                "check the header stamps or raise --max-dt-s")
        skipped = {}
        if len(pairs) < len(colour):
            skipped["colour images without depth"] = len(colour) - len(pairs)
        pose_lookup = self._pose_lookup(pose_t, pose_T, tree)
        stamps, poses, kept = [], [], []
        for i, j in pairs:
            T = pose_lookup(c_t[i])
            if T is None:
                skipped["frames without a pose"] = skipped.get("frames without a pose", 0) + 1
                continue
            stamps.append(c_t[i])
            poses.append(T)
            kept.append((i, j))
        if not stamps:
            src = self.pose_topic or f"TF {self.world_frame} -> {self.camera_frame}"
            raise RecordingError(f"{self.path}: no pose from {src} within {o.max_dt_s:g} s of any image "
                                 "stamp; check the stamps or raise --max-dt-s / --max-pose-gap-s")
        self._pairs = kept
        return _Index(np.asarray(stamps), np.asarray(poses).reshape(-1, 4, 4), skipped)

    def _pose_lookup(self, pose_t, pose_T, tree: TransformTree):
        o = self.options
        if self.pose_topic is not None:
            self.world_frame = o.world_frame or ""
            order = np.argsort(pose_t, kind="stable")
            ts, Ts = np.asarray(pose_t)[order], np.asarray(pose_T).reshape(-1, 4, 4)[order]
            return lambda t: pose_at(ts, Ts, t, max_gap_s=o.max_pose_gap_s, max_dt_s=o.max_dt_s)
        tree.finalize()
        cam = (self.camera_frame or "").lstrip("/")
        if cam not in tree.frames:
            raise RecordingError(f"{self.path}: camera frame {cam!r} is not in TF (frames: "
                                 f"{', '.join(sorted(tree.frames))}); pass --camera-frame")
        chain = tree.chain(cam, o.world_frame)
        if o.world_frame is not None and chain[-1] != o.world_frame:
            raise RecordingError(f"{self.path}: TF does not connect {o.world_frame!r} to {cam!r} "
                                 f"(chain: {' <- '.join(reversed(chain))}); check --world-frame")
        self.world_frame = chain[-1]
        return lambda t: tree.lookup(self.world_frame, cam, t, max_gap_s=o.max_pose_gap_s,
                                     max_dt_s=o.max_dt_s)

    def _K(self, infos: dict, topic: str | None, what: str) -> np.ndarray:
        if topic is None or topic not in infos:
            raise RecordingError(f"{self.path}: no camera_info for the {what} images "
                                 f"({'topic ' + topic + ' has no messages' if topic else 'none found'}); "
                                 f"pass --{what.replace('colour', 'color')}-info-topic")
        K = np.asarray(infos[topic].k, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise RecordingError(f"{self.path}: {topic} k has no usable focal length "
                                 f"(fx={K[0, 0]}, fy={K[1, 1]}); is the camera calibrated?")
        return K

    def source(self, index: int) -> str:
        i, j = self._pairs[index]
        return (f"{self.path} [{self.depth_topic} @ {self._depth[j].stamp_s:.6f} s / "
                f"{self.color_topic} @ {self._colour[i].stamp_s:.6f} s]")

    def _read(self, indices: Sequence[int]) -> Iterator[tuple[int, RgbdObservation]]:
        if not indices:
            return
        want_c = {self._pairs[k][0]: k for k in indices}
        want_d = {self._pairs[k][1]: k for k in indices}
        times = [self._colour[self._pairs[k][0]].bag_time_ns for k in indices] + \
                [self._depth[self._pairs[k][1]].bag_time_ns for k in indices]
        reader = self._open()
        try:
            conns = [c for c in reader.connections if c.topic in (self.color_topic, self.depth_topic)]
            # Message ordinals per topic, counted from the bag start (as when indexing).
            n_c = sum(1 for r in self._colour if r.bag_time_ns < min(times))
            n_d = sum(1 for r in self._depth if r.bag_time_ns < min(times))
            parts: dict[int, dict[str, np.ndarray]] = {}
            done: dict[int, RgbdObservation] = {}
            pending = list(indices)
            for c, _, raw in reader.messages(connections=conns, start=min(times), stop=max(times) + 1):
                if c.topic == self.color_topic:
                    k, n_c = want_c.get(n_c), n_c + 1
                    if k is not None:
                        msg = self._deserialize(raw, c.msgtype, c.topic)
                        parts.setdefault(k, {})["rgb"] = color_msg_to_rgb(msg, c.msgtype, self.source(k))
                else:
                    k, n_d = want_d.get(n_d), n_d + 1
                    if k is not None:
                        msg = self._deserialize(raw, c.msgtype, c.topic)
                        parts.setdefault(k, {})["depth"] = normalise_depth(
                            depth_msg_to_array(msg, self.source(k)), self.options, self.source(k))
                if k is not None and len(parts[k]) == 2:
                    p = parts.pop(k)
                    K_depth = self.K_depth if p["depth"].shape != p["rgb"].shape[:2] else None
                    done[k] = RgbdObservation(float(self._index.stamps_s[k]), p["rgb"], p["depth"],
                                              self.K_color, self._index.T_world_cam[k].copy(), K_depth)
                    while pending and pending[0] in done:
                        first = pending.pop(0)
                        yield first, done.pop(first)
        finally:
            reader.close()
        if pending:
            raise RecordingError(f"{self.source(pending[0])}: message not found on re-reading the bag")


_POSE_KINDS = {k.value for k in PoseMsgKind}


# ---- factory ------------------------------------------------------------------------------

_READERS: dict[RecordingLayout, type[RecordingReader]] = {
    RecordingLayout.SCANNET: ScanNetReader,
    RecordingLayout.ROSBAG2: RosbagReader,
    RecordingLayout.TUM: TumFolderReader,
}


def detect_layout(path: Path, poses_file: Path | None = None) -> RecordingLayout:
    """The layout of ``path`` from the formats' file-name conventions.

    * a ``.mcap`` / ``.db3`` file, or a folder with ``metadata.yaml`` → ROSBAG2
    * a folder with ``pose/`` and ``depth/`` → SCANNET
    * a folder with ``groundtruth.txt`` (or when ``poses_file`` is given), or
      with ``rgb/``/``rgb.txt`` and ``depth/``/``depth.txt`` → TUM
    """
    p = Path(path)
    if not p.exists():
        raise RecordingError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() in ROSBAG2_STORAGE_SUFFIXES:
            return RecordingLayout.ROSBAG2
        raise RecordingError(f"{p}: a file, but not a rosbag2 storage file ({', '.join(ROSBAG2_STORAGE_SUFFIXES)}); "
                             "give a bag, a ScanNet scan folder or an RGB-D image folder")
    if (p / ROSBAG2_METADATA).is_file():
        return RecordingLayout.ROSBAG2
    if (p / "pose").is_dir() and (p / "depth").is_dir():
        return RecordingLayout.SCANNET
    has_rgb = (p / "rgb").is_dir() or (p / "rgb.txt").is_file()
    has_depth = (p / "depth").is_dir() or (p / "depth.txt").is_file()
    if poses_file is not None or (p / TUM_POSES_FILE).is_file() or (has_rgb and has_depth):
        return RecordingLayout.TUM
    if any(p.glob("*" + s) for s in ROSBAG2_STORAGE_SUFFIXES):
        raise RecordingError(f"{p}: bag storage files without {ROSBAG2_METADATA}; pass the .mcap/.db3 "
                             "file itself or run 'ros2 bag reindex'")
    raise RecordingError(
        f"{p}: not a recognised recording. Expected a ScanNet scan (color/, depth/, pose/, intrinsic/), "
        f"a rosbag2 (.mcap/.db3 or a folder with {ROSBAG2_METADATA}), or an RGB-D folder (rgb/, depth/, "
        f"{TUM_POSES_FILE})")


def open_recording(path: str | Path, layout: RecordingLayout | str | None = None,
                   **options) -> RecordingReader:
    """Open a recording; the layout is detected unless given.

    Args:
        path: scan folder, bag file or bag folder.
        layout: a :class:`RecordingLayout` (or its name) to skip detection.
        **options: fields of :class:`RecordingOptions` (or ``options=RecordingOptions(...)``).
    Raises:
        RecordingError naming the file and what to fix.
    """
    opts = options.pop("options", None)
    if opts is None:
        opts = RecordingOptions(**options)
    elif options:
        raise TypeError("pass either options=RecordingOptions(...) or keyword options, not both")
    kind = RecordingLayout.parse(layout) if layout is not None else detect_layout(Path(path), opts.poses_file)
    return _READERS[kind](Path(path), opts)
