"""Keyframes: offline max-coverage sampling and the online rolling buffer (no ROS)."""

from .buffer import (
    BufferConfig,
    BufferSnapshot,
    Frame,
    InsertReason,
    InsertResult,
    RollingKeyframeBuffer,
)
from .sampling import (
    CoverageIncidence,
    SamplingStrategy,
    SelectionResult,
    build_incidence,
    coverage_after_each,
    greedy_max_coverage,
    select_frames,
    uniform_indices,
)

__all__ = [
    "BufferConfig",
    "BufferSnapshot",
    "CoverageIncidence",
    "Frame",
    "InsertReason",
    "InsertResult",
    "RollingKeyframeBuffer",
    "SamplingStrategy",
    "SelectionResult",
    "build_incidence",
    "coverage_after_each",
    "greedy_max_coverage",
    "select_frames",
    "uniform_indices",
]
