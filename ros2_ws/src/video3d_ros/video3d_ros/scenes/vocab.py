"""Closed vocabularies of the generated scenes: object categories, colours, sizes.

Every closed choice is an enum mapped once to its data (display name, RGB,
plural) here; nothing elsewhere compares category or colour strings.
"""

from __future__ import annotations

import enum


class Category(enum.Enum):
    """Object categories of a generated room. Values are ScanNet-style raw names."""

    CHAIR = "chair"
    TABLE = "table"
    DESK = "desk"
    BED = "bed"
    SOFA = "sofa"
    CABINET = "cabinet"
    BOOKSHELF = "bookshelf"
    LAMP = "lamp"
    PLANT = "plant"
    TV = "tv"
    MONITOR = "monitor"
    TRASH_CAN = "trash can"
    BOX = "box"
    PILLOW = "pillow"
    TOILET = "toilet"
    SINK = "sink"
    DOOR = "door"
    WINDOW = "window"
    NIGHTSTAND = "nightstand"
    # Room structure (not referable objects; ScanNet labels them too).
    FLOOR = "floor"
    WALL = "wall"
    CEILING = "ceiling"

    @property
    def is_structure(self) -> bool:
        """True for floor, walls and ceiling."""
        return self in _STRUCTURE

    @property
    def plural(self) -> str:
        """English plural used in questions ("how many chairs")."""
        return _PLURALS.get(self, self.value + "s")

    @property
    def class_id(self) -> int:
        """Stable integer label (index in declaration order)."""
        return _CLASS_IDS[self]


_STRUCTURE = frozenset({Category.FLOOR, Category.WALL, Category.CEILING})
_PLURALS = {Category.BOX: "boxes", Category.BOOKSHELF: "bookshelves", Category.TV: "tvs"}
_CLASS_IDS = {c: i for i, c in enumerate(Category)}
OBJECT_CATEGORIES: tuple[Category, ...] = tuple(c for c in Category if not c.is_structure)


class Colour(enum.Enum):
    """Named palette; value is the English name used in text."""

    RED = "red"
    GREEN = "green"
    BLUE = "blue"
    YELLOW = "yellow"
    WHITE = "white"
    BLACK = "black"
    BROWN = "brown"
    GRAY = "gray"
    ORANGE = "orange"
    PURPLE = "purple"
    PINK = "pink"
    BEIGE = "beige"

    @property
    def rgb(self) -> tuple[float, float, float]:
        """Linear RGB in [0, 1]."""
        return _RGB[self]


_RGB: dict[Colour, tuple[float, float, float]] = {
    Colour.RED: (0.78, 0.12, 0.12),
    Colour.GREEN: (0.16, 0.60, 0.20),
    Colour.BLUE: (0.15, 0.30, 0.80),
    Colour.YELLOW: (0.92, 0.82, 0.18),
    Colour.WHITE: (0.93, 0.93, 0.91),
    Colour.BLACK: (0.08, 0.08, 0.09),
    Colour.BROWN: (0.45, 0.28, 0.14),
    Colour.GRAY: (0.50, 0.50, 0.52),
    Colour.ORANGE: (0.95, 0.52, 0.12),
    Colour.PURPLE: (0.50, 0.22, 0.62),
    Colour.PINK: (0.95, 0.58, 0.70),
    Colour.BEIGE: (0.86, 0.78, 0.62),
}


class SizeWord(enum.Enum):
    """Relative size of an object among the objects of its category."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
