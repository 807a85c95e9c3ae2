"""Online rolling keyframe buffer for a live RGB-D stream.

Keeps at most ``capacity`` keyframes that together cover many voxels:

* A frame enters when it adds enough not-yet-covered voxels
  (``min_new_voxels`` and ``min_new_ratio``).
* When the buffer is full, the keyframe whose removal loses the fewest voxels
  that only it covers (and that the new frame does not cover either) is the
  eviction candidate; the swap happens only if total coverage grows by at
  least ``min_swap_gain_voxels`` (≥ 0: coverage never drops by a swap).
* Optionally keyframes older than ``max_age_s`` (relative to the newest
  frame's stamp) or farther than ``max_distance_m`` from the newest camera
  position are forgotten first.

Bookkeeping is per voxel: a reference count and the XOR of the slot ids of
the keyframes holding the voxel, packed into one Python int. When a count is
1 the XOR *is* the sole holder, so "voxels only keyframe s covers" is kept
incrementally per slot, and insert/evict cost O(voxels of that frame), never
O(map). A Python dict is the hash map here because numpy has none; the loops
touch only the frame's own voxels (≈ 1–3 k at stride 4).

Thread safety: ``insert`` may be called from one thread while others call
``snapshot``; voxelisation runs outside the lock, state changes inside it.
A snapshot is an immutable object (tuples, read-only arrays) that later
inserts never modify.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field

import numpy as np

from ..geometry._checks import as_matrix, check_rigid_pose
from ..geometry.depth import depth_to_world_m
from ..geometry.voxels import voxel_keys

_COUNT_SHIFT = 16  # dict value = (refcount << 16) | xor of holder slot ids
_COUNT_ONE = 1 << _COUNT_SHIFT
_SLOT_MASK = _COUNT_ONE - 1


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class Frame:
    """One posed RGB-D frame, already unprojected.

    The buffer keeps read-only views of the arrays, not copies: do not modify
    the arrays after building a Frame.

    Attributes:
        frame_id: unique id of the frame in its stream.
        stamp_s: capture time, seconds.
        rgb: (H', W', 3) uint8 colour image (may differ in size from the depth).
        xyz_m: (H, W, 3) float32 world coordinates per depth pixel, metres.
        valid: (H, W) bool, True where xyz_m is a measured point.
        T_world_cam: (4, 4) camera-to-world pose, metres.
    """

    frame_id: int
    stamp_s: float
    rgb: np.ndarray
    xyz_m: np.ndarray
    valid: np.ndarray
    T_world_cam: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.frame_id, (int, np.integer)) or isinstance(self.frame_id, bool):
            raise TypeError(f"frame_id must be an int, got {type(self.frame_id).__name__}")
        stamp = float(self.stamp_s)
        if not np.isfinite(stamp):
            raise ValueError(f"stamp_s must be finite, got {self.stamp_s}")
        rgb = np.asarray(self.rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        xyz = np.asarray(self.xyz_m)
        if xyz.dtype != np.float32 or xyz.ndim != 3 or xyz.shape[2] != 3:
            raise ValueError(f"xyz_m must be (H, W, 3) float32, got {xyz.shape} {xyz.dtype}")
        valid = np.asarray(self.valid)
        if valid.dtype != np.bool_ or valid.shape != xyz.shape[:2]:
            raise ValueError(
                f"valid must be {xyz.shape[:2]} bool (as xyz_m), got {valid.shape} {valid.dtype}"
            )
        T = as_matrix(self.T_world_cam, "T_world_cam", (4, 4))
        check_rigid_pose(T, "T_world_cam")
        object.__setattr__(self, "frame_id", int(self.frame_id))
        object.__setattr__(self, "stamp_s", stamp)
        object.__setattr__(self, "rgb", _readonly(rgb))
        object.__setattr__(self, "xyz_m", _readonly(xyz))
        object.__setattr__(self, "valid", _readonly(valid))
        object.__setattr__(self, "T_world_cam", _readonly(T.copy()))

    @classmethod
    def from_depth(
        cls,
        frame_id: int,
        stamp_s: float,
        rgb: np.ndarray,
        depth: np.ndarray,
        K: np.ndarray,
        T_world_cam: np.ndarray,
        **depth_kwargs: object,
    ) -> "Frame":
        """Build a Frame by unprojecting ``depth`` (see ``depth_to_world_m``)."""
        pm = depth_to_world_m(depth, K, T_world_cam, **depth_kwargs)
        return cls(frame_id, stamp_s, rgb, pm.xyz_m, pm.valid, np.asarray(T_world_cam))

    @property
    def position_m(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, metres."""
        return self.T_world_cam[:3, 3]

    @property
    def nbytes(self) -> int:
        """Bytes held by the frame's arrays."""
        return self.rgb.nbytes + self.xyz_m.nbytes + self.valid.nbytes + self.T_world_cam.nbytes


@dataclass
class BufferConfig:
    """Configuration of :class:`RollingKeyframeBuffer` (validated on construction)."""

    capacity: int = 32  # K: maximum number of keyframes
    voxel_size_m: float = 0.1  # voxel edge for coverage bookkeeping
    pixel_stride: int = 4  # voxelise every n-th row/column of the point map
    min_new_voxels: int = 1  # a frame must add at least this many uncovered voxels ...
    min_new_ratio: float = 0.0  # ... and at least this fraction of its own voxels
    min_swap_gain_voxels: int = 1  # when full, swap only if coverage grows by >= this (>= 0)
    max_age_s: float | None = None  # forget keyframes older than this (vs newest stamp)
    max_distance_m: float | None = None  # forget keyframes farther than this from the camera

    def __post_init__(self) -> None:
        if int(self.capacity) != self.capacity or not 1 <= self.capacity <= _SLOT_MASK:
            raise ValueError(f"capacity must be an integer in [1, {_SLOT_MASK}], got {self.capacity}")
        if not np.isfinite(self.voxel_size_m) or self.voxel_size_m <= 0:
            raise ValueError(f"voxel_size_m must be > 0, got {self.voxel_size_m}")
        if int(self.pixel_stride) != self.pixel_stride or self.pixel_stride < 1:
            raise ValueError(f"pixel_stride must be an integer >= 1, got {self.pixel_stride}")
        if int(self.min_new_voxels) != self.min_new_voxels or self.min_new_voxels < 0:
            raise ValueError(f"min_new_voxels must be an integer >= 0, got {self.min_new_voxels}")
        if not 0.0 <= self.min_new_ratio <= 1.0:
            raise ValueError(f"min_new_ratio must be in [0, 1], got {self.min_new_ratio}")
        if int(self.min_swap_gain_voxels) != self.min_swap_gain_voxels or self.min_swap_gain_voxels < 0:
            raise ValueError(
                f"min_swap_gain_voxels must be an integer >= 0, got {self.min_swap_gain_voxels}"
            )
        for name in ("max_age_s", "max_distance_m"):
            v = getattr(self, name)
            if v is not None and (not np.isfinite(v) or v <= 0):
                raise ValueError(f"{name} must be None or > 0, got {v}")


class InsertReason(enum.Enum):
    """What :meth:`RollingKeyframeBuffer.insert` did with a frame."""

    ADDED = "added"  # entered a free slot
    SWAPPED = "swapped"  # entered by evicting the least useful keyframe
    REJECTED_TOO_FEW_NEW = "rejected_too_few_new"  # below min_new_voxels / min_new_ratio
    REJECTED_NO_GAIN = "rejected_no_gain"  # full, and no swap would gain enough


@dataclass(frozen=True)
class InsertResult:
    """Outcome of one insert."""

    frame_id: int
    reason: InsertReason
    added_ids: tuple[int, ...]  # (frame_id,) if the frame became a keyframe, else ()
    evicted_ids: tuple[int, ...]  # keyframe swapped out for this frame
    forgotten_ids: tuple[int, ...]  # keyframes dropped by max_age_s / max_distance_m
    new_voxels: int  # voxels of the frame not covered before the insert
    covered_voxels: int  # covered voxels after the insert
    version: int  # buffer version after the insert

    @property
    def added(self) -> bool:
        return bool(self.added_ids)


@dataclass(frozen=True)
class BufferSnapshot:
    """Immutable view of the buffer at one moment.

    Attributes:
        keyframes: keyframes sorted by stamp_s (then frame_id).
        covered_voxels: number of voxels covered by their union.
        version: changes whenever the set of keyframes changes.
    """

    keyframes: tuple[Frame, ...]
    covered_voxels: int
    version: int

    @property
    def frame_ids(self) -> tuple[int, ...]:
        return tuple(k.frame_id for k in self.keyframes)

    def __len__(self) -> int:
        return len(self.keyframes)


@dataclass
class _Slot:
    frame: Frame
    keys: list[int]  # the frame's voxel keys as Python ints (dict keys)
    unique: int = 0  # voxels only this keyframe covers


@dataclass
class _State:
    counts: dict[int, int] = field(default_factory=dict)  # key -> (refcount << 16) | xor
    slots: list[_Slot | None] = field(default_factory=list)


class RollingKeyframeBuffer:
    """Bounded, coverage-maximising keyframe set with thread-safe snapshots."""

    def __init__(self, config: BufferConfig | None = None) -> None:
        self.config = config if config is not None else BufferConfig()
        self._lock = threading.Lock()
        self._state = _State(slots=[None] * self.config.capacity)
        self._version = 0
        self._snapshot = BufferSnapshot(keyframes=(), covered_voxels=0, version=0)

    # ----------------------------------------------------------------- queries
    def snapshot(self) -> BufferSnapshot:
        """The current immutable snapshot (O(1))."""
        with self._lock:
            return self._snapshot

    @property
    def covered_voxels(self) -> int:
        """Number of voxels covered by the keyframes."""
        with self._lock:
            return len(self._state.counts)

    def __len__(self) -> int:
        with self._lock:
            return len(self._snapshot.keyframes)

    def covered_voxel_keys(self) -> np.ndarray:
        """(N,) int64 sorted keys of all covered voxels (O(map); for tests/tools)."""
        with self._lock:
            return np.sort(np.fromiter(self._state.counts, dtype=np.int64))

    def reference_counts(self) -> dict[int, int]:
        """Copy of voxel key → number of keyframes holding it (O(map))."""
        with self._lock:
            return {k: v >> _COUNT_SHIFT for k, v in self._state.counts.items()}

    def keyframe_voxel_keys(self) -> dict[int, np.ndarray]:
        """frame_id → (M,) int64 voxel keys of each keyframe (O(map))."""
        with self._lock:
            return {
                s.frame.frame_id: np.asarray(s.keys, dtype=np.int64)
                for s in self._state.slots
                if s is not None
            }

    def unique_voxel_counts(self) -> dict[int, int]:
        """frame_id → number of voxels only that keyframe covers (maintained incrementally)."""
        with self._lock:
            return {s.frame.frame_id: s.unique for s in self._state.slots if s is not None}

    def frame_voxel_keys(self, frame: Frame) -> np.ndarray:
        """The voxel keys the buffer uses for ``frame`` (stride and voxel size of the config)."""
        return voxel_keys(
            frame.xyz_m, frame.valid, self.config.voxel_size_m, self.config.pixel_stride
        )

    # ------------------------------------------------------------------ insert
    def insert(self, frame: Frame) -> InsertResult:
        """Offer a frame to the buffer; see the module docstring for the policy."""
        if not isinstance(frame, Frame):
            raise TypeError(f"frame must be a Frame, got {type(frame).__name__}")
        keys = self.frame_voxel_keys(frame).tolist()  # outside the lock
        cfg = self.config
        with self._lock:
            st = self._state
            for s in st.slots:
                if s is not None and s.frame.frame_id == frame.frame_id:
                    raise ValueError(f"frame.frame_id {frame.frame_id} is already a keyframe")
            forgotten = self._forget(frame)
            counts = st.counts
            overlap = [0] * cfg.capacity  # per slot: its unique voxels the frame also covers
            new = 0
            for k in keys:
                v = counts.get(k)
                if v is None:
                    new += 1
                elif v >> _COUNT_SHIFT == 1:
                    overlap[v & _SLOT_MASK] += 1
            evicted: tuple[int, ...] = ()
            if new < cfg.min_new_voxels or new < cfg.min_new_ratio * len(keys) or new == 0:
                reason = InsertReason.REJECTED_TOO_FEW_NEW
            else:
                free = next((i for i, s in enumerate(st.slots) if s is None), None)
                if free is not None:
                    self._add(free, frame, keys)
                    reason = InsertReason.ADDED
                else:
                    # loss if slot i leaves and the frame enters; ties -> oldest keyframe
                    slot = min(
                        range(cfg.capacity),
                        key=lambda i: (st.slots[i].unique - overlap[i], st.slots[i].frame.stamp_s),
                    )
                    loss = st.slots[slot].unique - overlap[slot]
                    if new - loss >= cfg.min_swap_gain_voxels:
                        evicted = (st.slots[slot].frame.frame_id,)
                        self._remove(slot)
                        self._add(slot, frame, keys)
                        reason = InsertReason.SWAPPED
                    else:
                        reason = InsertReason.REJECTED_NO_GAIN
            added = reason in (InsertReason.ADDED, InsertReason.SWAPPED)
            if added or forgotten:
                self._publish()
            return InsertResult(
                frame_id=frame.frame_id,
                reason=reason,
                added_ids=(frame.frame_id,) if added else (),
                evicted_ids=evicted,
                forgotten_ids=forgotten,
                new_voxels=new,
                covered_voxels=len(counts),
                version=self._version,
            )

    def clear(self) -> None:
        """Drop all keyframes."""
        with self._lock:
            had = any(s is not None for s in self._state.slots)
            self._state = _State(slots=[None] * self.config.capacity)
            if had:
                self._publish()

    # --------------------------------------------------------------- internals
    def _forget(self, frame: Frame) -> tuple[int, ...]:
        cfg = self.config
        if cfg.max_age_s is None and cfg.max_distance_m is None:
            return ()
        gone = []
        for i, s in enumerate(self._state.slots):
            if s is None:
                continue
            too_old = cfg.max_age_s is not None and frame.stamp_s - s.frame.stamp_s > cfg.max_age_s
            too_far = cfg.max_distance_m is not None and float(
                np.linalg.norm(s.frame.position_m - frame.position_m)
            ) > cfg.max_distance_m
            if too_old or too_far:
                gone.append(s.frame.frame_id)
                self._remove(i)
        return tuple(gone)

    def _add(self, slot_id: int, frame: Frame, keys: list[int]) -> None:
        st = self._state
        counts, slots = st.counts, st.slots
        slot = _Slot(frame=frame, keys=keys)
        unique = 0
        for k in keys:
            v = counts.get(k, 0)
            c = v >> _COUNT_SHIFT
            if c == 0:
                unique += 1
            elif c == 1:
                slots[v & _SLOT_MASK].unique -= 1  # its sole holder now shares it
            counts[k] = (v + _COUNT_ONE) ^ slot_id
        slot.unique = unique
        slots[slot_id] = slot

    def _remove(self, slot_id: int) -> None:
        st = self._state
        counts, slots = st.counts, st.slots
        slot = slots[slot_id]
        slots[slot_id] = None
        for k in slot.keys:
            v = counts[k]
            c = v >> _COUNT_SHIFT
            if c == 1:
                del counts[k]
            else:
                v = (v - _COUNT_ONE) ^ slot_id
                counts[k] = v
                if c == 2:
                    slots[v & _SLOT_MASK].unique += 1  # the remaining holder is now alone

    def _publish(self) -> None:
        self._version += 1
        frames = sorted(
            (s.frame for s in self._state.slots if s is not None),
            key=lambda f: (f.stamp_s, f.frame_id),
        )
        self._snapshot = BufferSnapshot(
            keyframes=tuple(frames),
            covered_voxels=len(self._state.counts),
            version=self._version,
        )
