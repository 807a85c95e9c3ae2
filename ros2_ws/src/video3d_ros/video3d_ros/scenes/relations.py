"""Spatial relations between objects of a generated scene, in the aligned frame (z up).

All relations use axis-aligned boxes; "left"/"right" are always relative to a
stated facing direction in the xy plane: for a unit facing vector f, left is
f turned +90° about z, i.e. (−f_y, f_x).
"""

from __future__ import annotations

import math

import numpy as np

from .layout import Scene, SceneObject

NEXT_TO_M = 0.6          # boxes closer than this in xy are "next to" each other
NEAR_ANCHOR_M = 1.5      # left/right/between candidates must be this close to the anchor
LEFT_RIGHT_MARGIN_M = 0.25
SIZE_RATIO = 1.25        # "largest" needs this volume ratio over the runner-up


def xy_box_distance_m(a: SceneObject, b: SceneObject) -> float:
    """Gap between the xy footprints of two boxes (0 when they overlap), metres."""
    gap = np.maximum(np.maximum(a.box_min_m[:2] - b.box_max_m[:2], b.box_min_m[:2] - a.box_max_m[:2]), 0.0)
    return float(np.linalg.norm(gap))


def is_on(a: SceneObject, b: SceneObject) -> bool:
    """a stands on b."""
    return a.support_id == b.object_id


def is_next_to(a: SceneObject, b: SceneObject) -> bool:
    """Different objects at the same level (neither on the other) with footprints within NEXT_TO_M."""
    if a.object_id == b.object_id or is_on(a, b) or is_on(b, a):
        return False
    return xy_box_distance_m(a, b) < NEXT_TO_M


def left_xy(facing_xy: np.ndarray) -> np.ndarray:
    """Unit left vector (2,) for a facing direction (2,) in the xy plane."""
    f = np.asarray(facing_xy, float)
    f = f / np.linalg.norm(f)
    return np.array([-f[1], f[0]])


def lateral_offset_m(a: SceneObject, anchor: SceneObject, facing_xy: np.ndarray) -> float:
    """Signed offset of a's centre from the anchor's centre along "left" (positive = left), metres."""
    return float((a.center_m[:2] - anchor.center_m[:2]) @ left_xy(facing_xy))


def is_left_of(a: SceneObject, anchor: SceneObject, facing_xy: np.ndarray) -> bool:
    return (a.object_id != anchor.object_id and xy_box_distance_m(a, anchor) < NEAR_ANCHOR_M
            and lateral_offset_m(a, anchor, facing_xy) > LEFT_RIGHT_MARGIN_M)


def is_right_of(a: SceneObject, anchor: SceneObject, facing_xy: np.ndarray) -> bool:
    return (a.object_id != anchor.object_id and xy_box_distance_m(a, anchor) < NEAR_ANCHOR_M
            and lateral_offset_m(a, anchor, facing_xy) < -LEFT_RIGHT_MARGIN_M)


def is_between(a: SceneObject, b: SceneObject, c: SceneObject) -> bool:
    """a's centre projects into the middle 60 % of segment b–c and lies within 0.5 m of it (xy)."""
    if len({a.object_id, b.object_id, c.object_id}) < 3:
        return False
    p, q, r = a.center_m[:2], b.center_m[:2], c.center_m[:2]
    seg = r - q
    L2 = float(seg @ seg)
    if L2 < 1e-6:
        return False
    t = float((p - q) @ seg) / L2
    perp = np.linalg.norm(p - (q + t * seg))
    return 0.2 < t < 0.8 and perp < 0.5


def wall_facing_xy(obj: SceneObject) -> np.ndarray:
    """Direction (2,) from the room towards the wall an object is on: the way you face to look at it."""
    if obj.wall_index is None:
        raise ValueError(f"object {obj.object_id} ({obj.category.value}) is not on a wall")
    return -obj.front_xy


def volume_m3(o: SceneObject) -> float:
    return float(np.prod(o.extent_m))


def farthest_from(candidates: list[SceneObject], anchor: SceneObject) -> SceneObject | None:
    """The candidate whose centre is farthest from the anchor, if it leads by ≥ 0.5 m."""
    cands = [c for c in candidates if c.object_id != anchor.object_id]
    if len(cands) < 2:
        return None
    d = sorted(((float(np.linalg.norm(c.center_m - anchor.center_m)), c.object_id) for c in cands), reverse=True)
    if d[0][0] - d[1][0] < 0.5:
        return None
    return next(c for c in cands if c.object_id == d[0][1])


def extreme_by_size(candidates: list[SceneObject], largest: bool) -> SceneObject | None:
    """The largest (smallest) candidate by box volume if it beats the runner-up by SIZE_RATIO."""
    if len(candidates) < 2:
        return None
    v = sorted(candidates, key=volume_m3, reverse=largest)
    a, b = volume_m3(v[0]), volume_m3(v[1])
    ok = a >= SIZE_RATIO * b if largest else b >= SIZE_RATIO * a
    return v[0] if ok else None


def nearest_object(scene: Scene, obj: SceneObject, margin_m: float = 0.3) -> SceneObject | None:
    """The object with the smallest xy box gap to ``obj`` (not on it, not under it), if unambiguous:
    the runner-up of another category must be ``margin_m`` farther."""
    others = [o for o in scene.objects if o.object_id != obj.object_id and not is_on(o, obj) and not is_on(obj, o)]
    if not others:
        return None
    d = sorted(((xy_box_distance_m(obj, o), o.object_id) for o in others))
    best = scene.objects[d[0][1]]
    for dist, oid in d[1:]:
        if scene.objects[oid].category is not best.category:
            return best if dist - d[0][0] >= margin_m else None
    return best


def bearing_rad(position_xy: np.ndarray, heading_xy: np.ndarray, target_xy: np.ndarray) -> float:
    """Angle of a target seen by an agent at ``position_xy`` facing ``heading_xy``: 0 ahead, +π/2 left."""
    h = np.asarray(heading_xy, float) / np.linalg.norm(heading_xy)
    d = np.asarray(target_xy, float) - np.asarray(position_xy, float)
    return math.atan2(float(d @ left_xy(h)), float(d @ h))
