"""From posed RGB-D observations to the rolling keyframe buffer, off the callback thread.

Sensor callbacks only build an :class:`RgbdObservation` and call
:meth:`FrameIngestor.put`, which never blocks: a bounded queue takes it, and
when full the oldest observation is dropped (and counted) — for a live camera
the newest frame is worth more. A worker thread checks and unprojects each
observation and inserts it into the buffer. A bad observation (wrong dtype,
NaN pose, size mismatch without depth intrinsics …) is rejected with its
reason kept in :attr:`IngestStats.last_error`; the worker carries on.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .geometry import depth_to_world_m
from .geometry._checks import as_intrinsics_3x3
from .keyframes import Frame, InsertResult, RollingKeyframeBuffer


@dataclass(frozen=True)
class RgbdObservation:
    """One synchronised colour + depth pair with its camera pose.

    Attributes:
        stamp_s: capture time of the colour image, seconds.
        rgb: (H, W, 3) uint8 colour image.
        depth: (h, w) uint16 (units of ``depth_scale_m``, 0 invalid) or float32
            metres (NaN / inf / 0 invalid), per REP 118.
        K_color: 3x3 (or 4x4) colour intrinsics, pixels.
        K_depth: depth intrinsics when the depth image is not registered to the
            colour image's resolution; None when depth and colour share K_color.
        T_world_cam: (4, 4) pose of the colour optical frame in the world frame.
    """

    stamp_s: float
    rgb: np.ndarray
    depth: np.ndarray
    K_color: np.ndarray
    T_world_cam: np.ndarray
    K_depth: np.ndarray | None = None


def register_depth_to_color(depth: np.ndarray, K_depth: np.ndarray, K_color: np.ndarray,
                            color_hw: tuple[int, int]) -> np.ndarray:
    """Resample a depth image into the colour camera's pixel grid (nearest).

    Assumes the two images share one optical frame (a registered or
    co-located RGB-D pair, e.g. ``depth_registered`` at another resolution):
    colour pixel (u, v) looks along the ray K_color⁻¹ (u, v, 1), which meets
    depth pixel K_depth K_color⁻¹ (u, v, 1). Pixels mapping outside the depth
    image get 0 (uint16) or NaN (float), i.e. invalid.

    Args:
        depth: (h, w) depth image.
        K_depth, K_color: 3x3 (or 4x4) intrinsics in pixels.
        color_hw: (H, W) of the colour image.
    Returns:
        (H, W) depth of the same dtype.
    """
    Kd, Kc = as_intrinsics_3x3(K_depth, "K_depth"), as_intrinsics_3x3(K_color, "K_color")
    H, W = color_hw
    M = Kd @ np.linalg.inv(Kc)
    u = np.arange(W, dtype=np.float64)
    v = np.arange(H, dtype=np.float64)
    ud = np.rint(M[0, 0] * u + M[0, 2]).astype(np.int64)  # (W,) M is affine for pinholes
    vd = np.rint(M[1, 1] * v + M[1, 2]).astype(np.int64)  # (H,)
    h, w = depth.shape
    ok_u = (ud >= 0) & (ud < w)
    ok_v = (vd >= 0) & (vd < h)
    out = depth[np.clip(vd, 0, h - 1)][:, np.clip(ud, 0, w - 1)]
    invalid = ~(ok_v[:, None] & ok_u[None, :])
    if invalid.any():
        out = out.copy()
        out[invalid] = 0 if depth.dtype.kind in "ui" else np.nan
    return out


def observation_to_frame(obs: RgbdObservation, frame_id: int, *, depth_scale_m: float,
                         min_depth_m: float, max_depth_m: float) -> Frame:
    """Check an observation and unproject it into a keyframe candidate.

    Raises:
        ValueError / TypeError naming the field that is wrong.
    """
    rgb = np.asarray(obs.rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    depth = np.asarray(obs.depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if depth.dtype not in (np.uint16, np.float32, np.float64):
        raise TypeError(f"depth must be uint16 (scaled) or float32 metres, got {depth.dtype}")
    if depth.shape != rgb.shape[:2]:
        if obs.K_depth is None:
            raise ValueError(
                f"depth {depth.shape} and colour {rgb.shape[:2]} differ in size and no depth "
                "intrinsics were given (depth/camera_info) to register them")
        depth = register_depth_to_color(depth, obs.K_depth, obs.K_color, rgb.shape[:2])
    pm = depth_to_world_m(depth, obs.K_color, obs.T_world_cam, depth_scale_m=depth_scale_m,
                          min_depth_m=min_depth_m, max_depth_m=max_depth_m)
    return Frame(frame_id, obs.stamp_s, rgb, pm.xyz_m, pm.valid, np.asarray(obs.T_world_cam))


@dataclass
class IngestStats:
    """Counters of the ingestion path (read by diagnostics)."""

    received: int = 0
    ingested: int = 0  # unprojected and offered to the buffer
    keyframes_added: int = 0
    dropped_queue_full: int = 0
    rejected: int = 0  # bad observations (see last_error)
    last_error: str = ""
    recent_ingest_times_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=60))
    last_update_ms: float = 0.0

    def ingest_rate_hz(self) -> float:
        t = self.recent_ingest_times_s
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])


class FrameIngestor:
    """Bounded queue + worker thread that feeds a :class:`RollingKeyframeBuffer`."""

    def __init__(self, buffer: RollingKeyframeBuffer, *, queue_size: int = 8,
                 depth_scale_m: float = 0.001, min_depth_m: float = 0.1, max_depth_m: float = 10.0,
                 on_insert: Callable[[InsertResult, Frame], None] | None = None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.buffer = buffer
        self.stats = IngestStats()
        self._depth_kw = dict(depth_scale_m=depth_scale_m, min_depth_m=min_depth_m,
                              max_depth_m=max_depth_m)
        self._queue: collections.deque[RgbdObservation] = collections.deque(maxlen=queue_size)
        self._cv = threading.Condition()
        self._stop = False
        self._busy = False
        self._next_id = 0
        self._on_insert = on_insert
        self._thread = threading.Thread(target=self._run, name="video3d-ingest", daemon=True)
        self._thread.start()

    def put(self, obs: RgbdObservation) -> None:
        """Enqueue without blocking; the oldest waiting observation is dropped when full."""
        with self._cv:
            self.stats.received += 1
            if len(self._queue) == self._queue.maxlen:
                self.stats.dropped_queue_full += 1
            self._queue.append(obs)
            self._cv.notify()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until the queue is empty and the worker idle (tests, replay)."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(remaining)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._busy = False
                    self._cv.notify_all()
                    self._cv.wait()
                if self._stop:
                    return
                obs = self._queue.popleft()
                self._busy = True
                frame_id = self._next_id
                self._next_id += 1
            self._ingest(obs, frame_id)

    def _ingest(self, obs: RgbdObservation, frame_id: int) -> None:
        start = time.perf_counter()
        try:
            frame = observation_to_frame(obs, frame_id, **self._depth_kw)
            result = self.buffer.insert(frame)
        except (ValueError, TypeError) as exc:
            self.stats.rejected += 1
            self.stats.last_error = f"frame at t={obs.stamp_s:.3f}s rejected: {exc}"
            return
        except Exception as exc:  # a bug must not stop ingestion: count it, say what it was
            self.stats.rejected += 1
            self.stats.last_error = (f"frame at t={obs.stamp_s:.3f}s failed: {type(exc).__name__}: {exc}")
            return
        self.stats.ingested += 1
        self.stats.keyframes_added += int(result.added)
        self.stats.recent_ingest_times_s.append(time.monotonic())
        self.stats.last_update_ms = 1e3 * (time.perf_counter() - start)
        if self._on_insert is not None:
            self._on_insert(result, frame)
