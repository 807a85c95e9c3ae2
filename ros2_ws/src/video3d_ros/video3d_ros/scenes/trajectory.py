"""Camera paths that scan a room the way a person with a handheld sensor does.

The camera walks once around the room on the walkway loop (an ellipse that
floor objects keep clear of, see ``layout.walkway_xy_m``), turning its head
towards the objects it passes (objects outside the loop when it is beside
them, objects inside the loop from across the room), with smoothed gaze and
small head motion (yaw/pitch/roll sway, step bob).

Poses are T_world_cam (camera-to-world, 4×4) in the aligned world frame with
the OpenCV camera convention: x right, y down, z forward.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .layout import Scene


@dataclasses.dataclass(frozen=True)
class TrajectoryConfig:
    """Parameters of the scanning path."""

    n_frames: int = 600               # frames of the 30 Hz stream (300-1500 is ScanNet-like)
    fps: float = 30.0                 # stream rate, for head-motion frequencies
    loops: float = 1.1                # turns around the room (a little overlap closes the loop)
    eye_height_m: float = 1.45        # mean camera height above the floor
    gaze_smoothing_s: float = 0.8     # Gaussian sigma of the gaze low-pass filter
    head_yaw_deg: float = 4.0         # amplitude of head sway
    head_pitch_deg: float = 2.0
    head_roll_deg: float = 1.5
    bob_m: float = 0.02               # step bob amplitude
    pitch_limits_deg: tuple[float, float] = (-55.0, 15.0)

    def __post_init__(self) -> None:
        if self.n_frames < 2:
            raise ValueError(f"n_frames must be >= 2, got {self.n_frames}")
        if self.fps <= 0 or self.loops <= 0:
            raise ValueError(f"fps and loops must be > 0, got {self.fps}, {self.loops}")
        if not 0.3 <= self.eye_height_m <= 2.2:
            raise ValueError(f"eye_height_m {self.eye_height_m} outside [0.3, 2.2]")
        lo, hi = self.pitch_limits_deg
        if not -89 < lo < hi < 89:
            raise ValueError(f"pitch_limits_deg {self.pitch_limits_deg} must satisfy -89 < lo < hi < 89")


def look_at_T_world_cam(eye_m: np.ndarray, forward: np.ndarray, roll_rad: np.ndarray | float = 0.0) -> np.ndarray:
    """Camera-to-world poses from eye positions and forward directions (z up world).

    Args:
        eye_m: (N, 3) camera centres in metres.
        forward: (N, 3) viewing directions (any length, not vertical).
        roll_rad: (N,) or scalar roll about the viewing direction.
    Returns:
        (N, 4, 4) T_world_cam, OpenCV convention (x right, y down, z forward).
    """
    f = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    up = np.array([0.0, 0.0, 1.0])
    r = np.cross(f, up)
    r /= np.linalg.norm(r, axis=-1, keepdims=True)
    d = np.cross(f, r)
    roll = np.broadcast_to(np.asarray(roll_rad, float), f.shape[:1])[:, None]
    r, d = np.cos(roll) * r + np.sin(roll) * d, -np.sin(roll) * r + np.cos(roll) * d
    T = np.tile(np.eye(4), (len(f), 1, 1))
    T[:, :3, 0], T[:, :3, 1], T[:, :3, 2], T[:, :3, 3] = r, d, f, eye_m
    return T


def scan_trajectory(scene: Scene, config: TrajectoryConfig | None = None) -> np.ndarray:
    """The camera path of a scene: (n_frames, 4, 4) T_world_cam in the aligned frame.

    Deterministic in (scene.seed, config): the start angle and direction of
    the walk and the head-motion phases come from the scene's seed.
    """
    cfg = config or TrajectoryConfig()
    rng = np.random.default_rng([scene.seed, 101])
    Lx, Ly, H = scene.room_size_m
    a, b = scene.walkway_fraction * Lx / 2, scene.walkway_fraction * Ly / 2
    n = cfg.n_frames
    t = np.arange(n) / cfg.fps
    direction = 1.0 if rng.uniform() < 0.5 else -1.0
    theta0 = rng.uniform(0, 2 * np.pi)
    theta = theta0 + direction * 2 * np.pi * cfg.loops * np.arange(n) / n
    eye_h = min(cfg.eye_height_m + rng.uniform(-0.1, 0.1), H - 0.3)
    step_hz = 1.8
    eye = np.stack([a * np.cos(theta), b * np.sin(theta),
                    eye_h + cfg.bob_m * np.sin(2 * np.pi * step_hz * t + rng.uniform(0, 2 * np.pi))], axis=1)

    # Gaze targets: each object is looked at when the camera passes its angle.
    centres = np.array([o.center_m for o in scene.objects])
    phi = np.arctan2(centres[:, 1] / b, centres[:, 0] / a)
    radius = np.hypot(centres[:, 0] / a, centres[:, 1] / b)
    view_angle = np.where(radius >= 1.0, phi, phi + np.pi) % (2 * np.pi)
    order = np.argsort(view_angle)
    va, targets = view_angle[order], centres[order]
    va_ext = np.concatenate([va[-1:] - 2 * np.pi, va, va[:1] + 2 * np.pi])
    tg_ext = np.concatenate([targets[-1:], targets, targets[:1]])
    th = theta % (2 * np.pi)
    idx = np.clip(np.searchsorted(va_ext, th, side="right") - 1, 0, len(va_ext) - 2)
    w = (th - va_ext[idx]) / np.maximum(va_ext[idx + 1] - va_ext[idx], 1e-9)
    w = w * w * (3 - 2 * w)  # smoothstep: dwell on each object
    look = tg_ext[idx] * (1 - w[:, None]) + tg_ext[idx + 1] * w[:, None]
    fwd = look - eye
    fwd /= np.linalg.norm(fwd, axis=1, keepdims=True)
    fwd = gaussian_filter1d(fwd, sigma=cfg.gaze_smoothing_s * cfg.fps, axis=0, mode="nearest")

    yaw = np.arctan2(fwd[:, 1], fwd[:, 0])
    pitch = np.arctan2(fwd[:, 2], np.hypot(fwd[:, 0], fwd[:, 1]))

    def sway(amplitude_deg: float) -> np.ndarray:
        f1, f2 = rng.uniform(0.1, 0.3), rng.uniform(0.4, 0.9)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        return np.deg2rad(amplitude_deg) * (0.7 * np.sin(2 * np.pi * f1 * t + p1) + 0.3 * np.sin(2 * np.pi * f2 * t + p2))

    yaw = yaw + sway(cfg.head_yaw_deg)
    lo, hi = np.deg2rad(cfg.pitch_limits_deg)
    pitch = np.clip(pitch + sway(cfg.head_pitch_deg), lo, hi)
    fwd = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], axis=1)
    return look_at_T_world_cam(eye, fwd, sway(cfg.head_roll_deg))
