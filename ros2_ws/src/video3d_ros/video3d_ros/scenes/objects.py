"""Object categories as open3d primitives: sizes, placement rules and part meshes.

Every object is built in its local frame: x to its right, y to its front
(the side that faces into the room), z up; the origin is the centre of the
bottom face of its axis-aligned box, whose extent is exactly ``size_m``
(width along x, depth along y, height along z). Objects are rotated about z
by multiples of 90 degrees only, so the world axis-aligned box is tight.

Each part carries a role: MAIN parts take the object's named colour, TRIM parts
a darker neutral (legs, poles, frames), ACCENT parts a fixed category colour
(a plant's leaves, a screen, glass).
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np
import open3d as o3d

from .vocab import Category, Colour


class Placement(enum.Enum):
    """Where an object may stand."""

    FLOOR = "floor"            # anywhere on the floor outside the walkway
    WALL = "wall"              # on the floor, back against a wall
    WALL_MOUNTED = "mounted"   # in a wall (window), above the floor
    ON_TOP = "on_top"          # on the top surface of a supporting object


class PartRole(enum.Enum):
    MAIN = "main"
    TRIM = "trim"
    ACCENT = "accent"


@dataclasses.dataclass(frozen=True)
class CategorySpec:
    """How a category is sized, coloured and placed."""

    size_min_m: tuple[float, float, float]   # (width, depth, height) lower bounds
    size_max_m: tuple[float, float, float]   # upper bounds
    placements: tuple[Placement, ...]
    colours: tuple[Colour, ...] = tuple(Colour)
    supporters: tuple[Category, ...] = ()    # for ON_TOP
    accent_rgb: tuple[float, float, float] = (0.1, 0.1, 0.1)
    max_count: int = 4


_WOOD = (Colour.BROWN, Colour.BEIGE, Colour.WHITE, Colour.BLACK, Colour.GRAY)
_FABRIC = (Colour.RED, Colour.GREEN, Colour.BLUE, Colour.GRAY, Colour.BEIGE,
           Colour.BROWN, Colour.PURPLE, Colour.PINK, Colour.ORANGE, Colour.BLACK, Colour.YELLOW)
_DARK = (Colour.BLACK, Colour.GRAY, Colour.WHITE)

SPECS: dict[Category, CategorySpec] = {
    Category.CHAIR: CategorySpec((0.42, 0.42, 0.80), (0.55, 0.55, 1.00), (Placement.FLOOR,), max_count=6),
    Category.TABLE: CategorySpec((0.80, 0.60, 0.70), (1.60, 1.00, 0.78), (Placement.FLOOR,), _WOOD, max_count=2),
    Category.DESK: CategorySpec((1.00, 0.55, 0.72), (1.50, 0.75, 0.78), (Placement.WALL,), _WOOD, max_count=2),
    Category.BED: CategorySpec((1.00, 1.90, 0.55), (1.70, 2.10, 0.70), (Placement.WALL,), _FABRIC, max_count=1),
    Category.SOFA: CategorySpec((1.60, 0.80, 0.75), (2.20, 0.95, 0.90), (Placement.WALL, Placement.FLOOR), _FABRIC,
                                max_count=2),
    Category.CABINET: CategorySpec((0.60, 0.40, 0.80), (1.20, 0.55, 1.10), (Placement.WALL,), _WOOD, max_count=3),
    Category.BOOKSHELF: CategorySpec((0.70, 0.30, 1.50), (1.20, 0.40, 2.00), (Placement.WALL,), _WOOD, max_count=2),
    Category.LAMP: CategorySpec((0.25, 0.25, 0.40), (0.35, 0.35, 0.60), (Placement.ON_TOP,), _FABRIC,
                                supporters=(Category.TABLE, Category.DESK, Category.NIGHTSTAND, Category.CABINET),
                                accent_rgb=(0.95, 0.92, 0.75), max_count=3),
    Category.PLANT: CategorySpec((0.30, 0.30, 0.50), (0.50, 0.50, 1.10), (Placement.FLOOR, Placement.WALL),
                                 (Colour.BROWN, Colour.WHITE, Colour.RED, Colour.BLUE, Colour.GRAY, Colour.ORANGE),
                                 accent_rgb=(0.15, 0.55, 0.18), max_count=3),
    Category.TV: CategorySpec((0.90, 0.08, 0.55), (1.30, 0.10, 0.80), (Placement.ON_TOP,), _DARK,
                              supporters=(Category.CABINET,), accent_rgb=(0.04, 0.05, 0.08), max_count=1),
    Category.MONITOR: CategorySpec((0.50, 0.18, 0.38), (0.65, 0.22, 0.50), (Placement.ON_TOP,), _DARK,
                                   supporters=(Category.DESK, Category.TABLE), accent_rgb=(0.05, 0.07, 0.12),
                                   max_count=3),
    Category.TRASH_CAN: CategorySpec((0.25, 0.25, 0.35), (0.40, 0.40, 0.60), (Placement.FLOOR, Placement.WALL),
                                     max_count=3),
    Category.BOX: CategorySpec((0.25, 0.20, 0.15), (0.50, 0.40, 0.40), (Placement.FLOOR, Placement.ON_TOP),
                               supporters=(Category.TABLE, Category.DESK, Category.CABINET, Category.BOOKSHELF),
                               max_count=5),
    Category.PILLOW: CategorySpec((0.40, 0.30, 0.12), (0.60, 0.40, 0.18), (Placement.ON_TOP,), _FABRIC,
                                  supporters=(Category.BED, Category.SOFA), max_count=4),
    Category.TOILET: CategorySpec((0.38, 0.65, 0.75), (0.45, 0.75, 0.85), (Placement.WALL,),
                                  (Colour.WHITE, Colour.BEIGE, Colour.GRAY), max_count=1),
    Category.SINK: CategorySpec((0.50, 0.42, 0.80), (0.70, 0.55, 0.90), (Placement.WALL,),
                                (Colour.WHITE, Colour.BEIGE, Colour.GRAY), accent_rgb=(0.75, 0.75, 0.78), max_count=1),
    Category.DOOR: CategorySpec((0.80, 0.05, 2.00), (0.95, 0.06, 2.10), (Placement.WALL,), _WOOD, max_count=1),
    Category.WINDOW: CategorySpec((0.80, 0.06, 0.90), (1.50, 0.08, 1.30), (Placement.WALL_MOUNTED,),
                                  (Colour.WHITE, Colour.BLACK, Colour.BROWN, Colour.GRAY),
                                  accent_rgb=(0.62, 0.78, 0.90), max_count=2),
    Category.NIGHTSTAND: CategorySpec((0.40, 0.35, 0.45), (0.55, 0.45, 0.60), (Placement.WALL,), _WOOD,
                                      max_count=2),
}


def _box(x0: float, y0: float, z0: float, x1: float, y1: float, z1: float) -> o3d.geometry.TriangleMesh:
    """Axis-aligned box mesh spanning [x0, x1] × [y0, y1] × [z0, z1] (metres)."""
    return o3d.geometry.TriangleMesh.create_box(x1 - x0, y1 - y0, z1 - z0).translate((x0, y0, z0))


def _cyl(x: float, y: float, z0: float, z1: float, r: float, res: int = 16) -> o3d.geometry.TriangleMesh:
    """Vertical cylinder of radius r (m) from z0 to z1 centred on (x, y)."""
    m = o3d.geometry.TriangleMesh.create_cylinder(radius=r, height=z1 - z0, resolution=res, split=1)
    return m.translate((x, y, (z0 + z1) / 2))


def _ellipsoid(cx: float, cy: float, cz: float, rx: float, ry: float, rz: float) -> o3d.geometry.TriangleMesh:
    """Ellipsoid with semi-axes (rx, ry, rz) m centred at (cx, cy, cz)."""
    m = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=8)
    v = np.asarray(m.vertices) * np.array([rx, ry, rz])
    m.vertices = o3d.utility.Vector3dVector(v + np.array([cx, cy, cz]))
    return m


def _cone(x: float, y: float, z0: float, z1: float, r0: float, r1: float) -> o3d.geometry.TriangleMesh:
    """Truncated cone (lamp shade), radius r0 at z0 and r1 at z1."""
    m = o3d.geometry.TriangleMesh.create_cylinder(radius=1.0, height=1.0, resolution=16, split=1)
    v = np.asarray(m.vertices).copy()
    t = v[:, 2] + 0.5                     # 0 at bottom, 1 at top
    r = r0 + (r1 - r0) * t
    v[:, 0] *= r
    v[:, 1] *= r
    v[:, 2] = z0 + t * (z1 - z0)
    m.vertices = o3d.utility.Vector3dVector(v + np.array([x, y, 0.0]))
    return m


Part = tuple[o3d.geometry.TriangleMesh, PartRole]


def build_parts(category: Category, size_m: tuple[float, float, float]) -> list[Part]:
    """Parts of one object in its local frame (see module docstring).

    Args:
        category: what to build.
        size_m: (width x, depth y, height z) of the object's box in metres.
    Returns:
        list of (mesh, role); the union of the parts spans exactly the box
        [-w/2, w/2] × [-d/2, d/2] × [0, h].
    """
    w, d, h = size_m
    hw, hd = w / 2, d / 2
    M, T, A = PartRole.MAIN, PartRole.TRIM, PartRole.ACCENT
    leg = min(0.05, 0.12 * min(w, d))
    parts: list[Part] = []

    def legs(z1: float, inset: float = 0.0) -> None:
        for sx in (-1, 1):
            for sy in (-1, 1):
                x = sx * (hw - inset - leg / 2)
                y = sy * (hd - inset - leg / 2)
                parts.append((_box(x - leg / 2, y - leg / 2, 0, x + leg / 2, y + leg / 2, z1), T))

    if category is Category.CHAIR:
        seat_z = 0.45 * h
        legs(seat_z - 0.04)
        parts.append((_box(-hw, -hd, seat_z - 0.04, hw, hd, seat_z), M))
        parts.append((_box(-hw, -hd, seat_z, hw, -hd + 0.06, h), M))
    elif category in (Category.TABLE, Category.DESK):
        top = 0.04
        legs(h - top)
        parts.append((_box(-hw, -hd, h - top, hw, hd, h), M))
        if category is Category.DESK:
            parts.append((_box(hw - 0.4, -hd + 0.02, h - top - 0.45, hw - 0.02, hd - 0.02, h - top), M))
    elif category is Category.BED:
        parts.append((_box(-hw, -hd, 0, hw, hd, 0.3 * h), T))
        parts.append((_box(-hw + 0.02, -hd + 0.02, 0.3 * h, hw - 0.02, hd - 0.05, 0.55 * h), M))
        parts.append((_box(-hw, -hd, 0, hw, -hd + 0.06, h), T))
    elif category is Category.SOFA:
        arm = 0.18
        parts.append((_box(-hw, -hd, 0, hw, hd, 0.45 * h), M))
        parts.append((_box(-hw, -hd, 0.45 * h, hw, -hd + 0.22, h), M))
        parts.append((_box(-hw, -hd, 0.45 * h, -hw + arm, hd, 0.7 * h), M))
        parts.append((_box(hw - arm, -hd, 0.45 * h, hw, hd, 0.7 * h), M))
    elif category in (Category.CABINET, Category.NIGHTSTAND):
        parts.append((_box(-hw, -hd, 0.05, hw, hd - 0.015, h), M))
        parts.append((_box(-hw + 0.03, -hd + 0.03, 0, hw - 0.03, hd - 0.03, 0.05), T))
        parts.append((_box(-0.08, hd - 0.015, 0.75 * h, 0.08, hd, 0.75 * h + 0.02), T))
        parts.append((_box(-hw + 0.02, hd - 0.02, h / 2 - 0.005, hw - 0.02, hd - 0.01, h / 2 + 0.005), T))
    elif category is Category.BOOKSHELF:
        side = 0.03
        parts.append((_box(-hw, -hd, 0, -hw + side, hd, h), M))
        parts.append((_box(hw - side, -hd, 0, hw, hd, h), M))
        parts.append((_box(-hw + side, -hd, 0, hw - side, -hd + 0.02, h), M))
        n_shelves = 5
        for k in range(n_shelves):
            z = k * (h - side) / (n_shelves - 1)
            parts.append((_box(-hw + side, -hd + 0.02, z, hw - side, hd, z + side), M))
        for k in range(n_shelves - 1):  # books as accent blocks
            z = k * (h - side) / (n_shelves - 1) + side
            parts.append((_box(-hw + side + 0.02, -hd + 0.03, z, hw * 0.3, hd - 0.04, z + 0.22 * h / n_shelves), A))
    elif category is Category.LAMP:
        r = min(hw, hd)
        parts.append((_cyl(0, 0, 0, 0.03, 0.6 * r), T))
        parts.append((_cyl(0, 0, 0.03, 0.65 * h, 0.015, 8), T))
        parts.append((_cone(0, 0, 0.6 * h, h, r, 0.6 * r), M))
    elif category is Category.PLANT:
        r = min(hw, hd)
        pot_h = 0.35 * h
        parts.append((_cone(0, 0, 0, pot_h, 0.6 * r, 0.8 * r), M))
        parts.append((_ellipsoid(0, 0, pot_h + (h - pot_h) / 2, r, r, (h - pot_h) / 2), A))
    elif category is Category.TV:
        parts.append((_box(-0.15 * w, -hd, 0, 0.15 * w, hd, 0.04), T))
        parts.append((_box(-hw, -hd / 2, 0.1 * h, hw, hd / 2, h), M))
        parts.append((_box(-hw + 0.02, hd / 2, 0.1 * h + 0.02, hw - 0.02, hd / 2 + 0.003, h - 0.02), A))
    elif category is Category.MONITOR:
        parts.append((_box(-0.12, -hd, 0, 0.12, hd, 0.02), T))
        parts.append((_box(-0.025, -0.02, 0.02, 0.025, 0.02, 0.35 * h), T))
        parts.append((_box(-hw, -0.03, 0.3 * h, hw, 0.02, h), M))
        parts.append((_box(-hw + 0.015, 0.02, 0.3 * h + 0.015, hw - 0.015, 0.023, h - 0.015), A))
    elif category is Category.TRASH_CAN:
        parts.append((_cyl(0, 0, 0, h * 0.95, min(hw, hd)), M))
        parts.append((_cyl(0, 0, h * 0.95, h, min(hw, hd) * 0.9), T))
    elif category is Category.BOX:
        parts.append((_box(-hw, -hd, 0, hw, hd, h), M))
        parts.append((_box(-hw, -0.02, h - 0.002, hw, 0.02, h), T))
    elif category is Category.PILLOW:
        parts.append((_ellipsoid(0, 0, h / 2, hw, hd, h / 2), M))
    elif category is Category.TOILET:
        parts.append((_box(-hw, -hd, 0.45 * h, hw, -hd + 0.2, h), M))            # tank
        parts.append((_cyl(0, 0.08, 0, 0.3 * h, 0.12), M))                     # base
        parts.append((_ellipsoid(0, 0.1, 0.42 * h, hw, hd - 0.12, 0.12 * h), M))  # bowl
    elif category is Category.SINK:
        parts.append((_box(-hw, -hd, 0, hw, hd, 0.85 * h), M))
        parts.append((_box(-hw, -hd, 0.85 * h, hw, hd, h - 0.02), A))
        parts.append((_box(-0.02, -hd, h - 0.02, 0.02, -hd + 0.12, h), T))
    elif category is Category.DOOR:
        parts.append((_box(-hw, -hd, 0, hw, hd * 0.6, h), M))
        parts.append((_box(hw - 0.14, hd * 0.6, 0.45 * h, hw - 0.06, hd, 0.45 * h + 0.03), T))
    elif category is Category.WINDOW:
        f = 0.06
        parts.append((_box(-hw, -hd, 0, hw, hd, f), M))
        parts.append((_box(-hw, -hd, h - f, hw, hd, h), M))
        parts.append((_box(-hw, -hd, f, -hw + f, hd, h - f), M))
        parts.append((_box(hw - f, -hd, f, hw, hd, h - f), M))
        parts.append((_box(-f / 3, -hd, f, f / 3, hd, h - f), M))
        parts.append((_box(-hw + f, -hd, f, hw - f, 0.0, h - f), A))
    else:
        raise ValueError(f"no mesh builder for category {category!r}")
    return parts


def support_region_m(category: Category, size_m: tuple[float, float, float]) -> tuple[float, float, float, float, float]:
    """Local rectangle other objects may stand on: (x0, x1, y0, y1, z) in metres.

    Raises:
        ValueError: if the category supports nothing.
    """
    w, d, h = size_m
    hw, hd = w / 2, d / 2
    if category is Category.BED:
        return (-hw + 0.02, hw - 0.02, -hd + 0.06, hd - 0.05, 0.55 * h)
    if category is Category.SOFA:
        return (-hw + 0.18, hw - 0.18, -hd + 0.22, hd, 0.45 * h)
    if category in (Category.TABLE, Category.DESK, Category.CABINET, Category.NIGHTSTAND, Category.BOOKSHELF):
        return (-hw, hw, -hd, hd, h)
    raise ValueError(f"{category.value} is not a supporting category")
