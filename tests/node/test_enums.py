"""The one rule for parsing string-valued enums."""

from __future__ import annotations

import enum

import pytest

from video3d_ros.enums import parse_enum
from video3d_ros.node_config import PoseSource
from video3d_ros.recordings import DepthUnit, RecordingLayout


class Colour(enum.Enum):
    RED = "red"
    DARK_BLUE = "dark-blue"


def test_values_parse_trimmed_and_case_insensitive() -> None:
    assert parse_enum(Colour, "  Dark-Blue ", "colour") is Colour.DARK_BLUE
    assert parse_enum(Colour, Colour.RED, "colour") is Colour.RED
    assert RecordingLayout.parse("ROSBAG2") is RecordingLayout.ROSBAG2
    assert DepthUnit.parse("mm") is DepthUnit.MILLIMETRE
    assert PoseSource.parse("TF") is PoseSource.TF


def test_unknown_value_names_what_and_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown colour 'dark_blue'; expected one of: red, dark-blue"):
        parse_enum(Colour, "dark_blue", "colour")
    with pytest.raises(ValueError, match="unknown layout 'zip'; expected one of: scannet, rosbag2, tum"):
        RecordingLayout.parse("zip")
