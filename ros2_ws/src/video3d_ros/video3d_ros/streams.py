"""Stream plumbing without ROS: approximate-time pairing and a pose history.

``ApproximateTimeSync`` is used by the node only when ``message_filters`` is
not installed (it is not on PyPI); on a robot ``message_filters``'
ApproximateTimeSynchronizer does the same job. ``PoseHistory`` gives the
camera pose at an image stamp from a pose/odometry topic when ``tf2_ros`` is
missing.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


class ApproximateTimeSync:
    """Pair each item of input 0 (the pivot, e.g. colour) with the nearest item of every other input.

    A pivot item at stamp t is matched once every other input holds an item
    stamped at or after t — only then is its nearest item known for sure (any
    later item is farther). If all nearest items lie within ``slop_s`` of t,
    ``callback(*payloads)`` is called and everything up to the matched items is
    dropped; otherwise the pivot has no partner and is dropped. So each item is
    used at most once, a pivot waits at most one item of the slowest input, and
    at high rates (frames closer than the slop) frames are never paired with a
    neighbour's depth. Each input keeps its newest ``queue_size`` items. A stamp
    older than one already emitted on the same input (a bag that loops, a clock
    jump) resets all inputs instead of stalling.
    """

    def __init__(self, n_inputs: int, slop_s: float, queue_size: int,
                 callback: Callable[..., None]) -> None:
        if n_inputs < 2:
            raise ValueError(f"n_inputs must be >= 2, got {n_inputs}")
        if not slop_s > 0:
            raise ValueError(f"slop_s must be > 0, got {slop_s}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.slop_s = float(slop_s)
        self._queues: list[deque[tuple[float, Any]]] = [deque(maxlen=queue_size) for _ in range(n_inputs)]
        self._last_emitted = [-np.inf] * n_inputs
        self._callback = callback
        self._lock = threading.Lock()
        self.time_resets = 0
        self.unmatched = 0  # pivot items dropped without a partner within the slop
        self.overflowed = 0  # items pushed out of a full queue before they were paired

    def add(self, index: int, stamp_s: float, payload: Any) -> int:
        """Add an item to input ``index``; return how many sets were emitted."""
        with self._lock:
            if stamp_s <= self._last_emitted[index]:
                for q in self._queues:  # time went backwards on this input: start over
                    q.clear()
                self._last_emitted = [-np.inf] * len(self._queues)
                self.time_resets += 1
            queue = self._queues[index]
            if len(queue) == queue.maxlen:
                self.overflowed += 1  # the oldest item falls out unpaired
            queue.append((stamp_s, payload))
            ready = self._match_all()
        for payloads in ready:
            self._callback(*payloads)
        return len(ready)

    def _match_all(self) -> list[list[Any]]:
        ready = []
        pivot, others = self._queues[0], self._queues[1:]
        while pivot:
            t = pivot[0][0]
            if any(not q or q[-1][0] < t for q in others):
                break  # some input's nearest item to t may still arrive
            chosen = [min(range(len(q)), key=lambda i, q=q: abs(q[i][0] - t)) for q in others]
            if all(abs(q[i][0] - t) <= self.slop_s for q, i in zip(others, chosen)):
                items = [pivot.popleft()]
                for k, (q, i) in enumerate(zip(others, chosen), start=1):
                    for _ in range(i):
                        q.popleft()
                    items.append(q.popleft())
                    self._last_emitted[k] = items[-1][0]
                self._last_emitted[0] = t
                ready.append([payload for _, payload in items])
            else:
                pivot.popleft()
                self.unmatched += 1
        return ready


class PoseHistory:
    """Camera poses by time; interpolated lookup like TF's ``lookup_transform``.

    Rotations are interpolated by slerp, translations linearly. A stamp later
    than the newest pose is "not yet available" (None, the caller waits); a
    stamp older than the oldest kept pose, or in a gap wider than
    ``max_gap_s``, is unavailable for good (None as well; callers count it).
    """

    def __init__(self, max_age_s: float = 10.0, max_gap_s: float = 0.5) -> None:
        self.max_age_s = max_age_s
        self.max_gap_s = max_gap_s
        self._stamps: list[float] = []
        self._poses: list[np.ndarray] = []
        self._lock = threading.Lock()

    def add(self, stamp_s: float, T_world_cam: np.ndarray) -> None:
        T = np.asarray(T_world_cam, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"T_world_cam must be a finite 4x4 matrix, got shape {T.shape}")
        with self._lock:
            if self._stamps and stamp_s < self._stamps[-1] - self.max_age_s:
                self._stamps.clear()  # time jumped back (bag loop): start over
                self._poses.clear()
            i = bisect.bisect_right(self._stamps, stamp_s)
            self._stamps.insert(i, stamp_s)
            self._poses.insert(i, T)
            cut = bisect.bisect_left(self._stamps, self._stamps[-1] - self.max_age_s)
            del self._stamps[:cut], self._poses[:cut]

    @property
    def newest_stamp_s(self) -> float | None:
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def lookup(self, stamp_s: float) -> np.ndarray | None:
        """Pose at ``stamp_s`` (4x4 float64), or None when not available."""
        with self._lock:
            stamps, poses = list(self._stamps), list(self._poses)
        if not stamps or stamp_s > stamps[-1] or stamp_s < stamps[0]:
            if stamps and abs(stamp_s - stamps[-1]) < 1e-9:
                return poses[-1].copy()
            return None
        i = bisect.bisect_left(stamps, stamp_s)
        if stamps[i] == stamp_s:
            return poses[i].copy()
        t0, t1 = stamps[i - 1], stamps[i]
        if t1 - t0 > self.max_gap_s:
            return None
        return interpolate_pose(poses[i - 1], poses[i], (stamp_s - t0) / (t1 - t0))


def interpolate_pose(T0: np.ndarray, T1: np.ndarray, alpha: float) -> np.ndarray:
    """Pose ``alpha`` of the way from T0 to T1 (slerp rotation, lerp translation)."""
    rotations = Rotation.from_matrix(np.stack([T0[:3, :3], T1[:3, :3]]))
    T = np.eye(4)
    T[:3, :3] = Slerp([0.0, 1.0], rotations)([alpha]).as_matrix()[0]
    T[:3, 3] = (1 - alpha) * T0[:3, 3] + alpha * T1[:3, 3]
    return T


def pose_from_translation_quaternion(translation_xyz: Sequence[float],
                                     quaternion_xyzw: Sequence[float]) -> np.ndarray:
    """4x4 homogeneous matrix from a translation and a unit quaternion (x, y, z, w)."""
    q = np.asarray(quaternion_xyzw, dtype=np.float64)
    t = np.asarray(translation_xyz, dtype=np.float64)
    if q.shape != (4,) or t.shape != (3,) or not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        raise ValueError(f"pose needs a finite translation (3,) and quaternion (4,), got {t} and {q}")
    norm = np.linalg.norm(q)
    if not 0.5 < norm < 1.5:
        raise ValueError(f"quaternion {q.tolist()} is not a rotation (norm {norm:.3f})")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q / norm).as_matrix()
    T[:3, 3] = t
    return T
