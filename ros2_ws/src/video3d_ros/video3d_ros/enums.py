"""Parsing closed choices from text: one rule for every string-valued enum (no ROS)."""

from __future__ import annotations

import enum
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)


def parse_enum(cls: type[E], value: "str | E", what: str) -> E:
    """``value`` as a member of ``cls``, matched on the member's value (trimmed, lower case).

    A name that matches no member is an error listing the valid ones — never a
    silent fallback.

    Args:
        cls: an enum whose values are lower-case strings.
        value: a member, or its value as text (e.g. from a CLI flag or a YAML file).
        what: what the value is, for the error message (e.g. "layout", "pose_source").
    """
    if isinstance(value, cls):
        return value
    key = str(value).strip().lower()
    for member in cls:
        if member.value == key:
            return member
    valid = ", ".join(str(m.value) for m in cls)
    raise ValueError(f"unknown {what} {value!r}; expected one of: {valid}")
