"""The node's parameters as one typed, validated config (no ROS).

Every field is declared as a ROS parameter by the node, with the field's
description (``description(name)``) as its descriptor, so the list below is
the single source of truth for ``ros2 param describe`` and the params YAML.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

from .enums import parse_enum
from .keyframes import BufferConfig
from .proposals import ProposalConfig
from .scene_qa import TRAINED_FRAMES, SceneQAConfig


class PoseSource(enum.Enum):
    AUTO = "auto"  # TF when tf2_ros is installed, else the pose/odometry topics
    TF = "tf"  # world_frame → the colour image's optical frame, at the image stamp
    TOPIC = "topic"  # geometry_msgs/PoseStamped on `camera_pose` or nav_msgs/Odometry on `odom`

    @classmethod
    def parse(cls, value: str) -> "PoseSource":
        return parse_enum(cls, value, "pose_source")


def _p(default, doc: str):
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class NodeConfig:
    world_frame: str = _p("map", "fixed frame of keyframe poses, boxes and markers")
    model_path: str = _p("", "checkpoint directory (ours or released LLaVA-style); empty = embedded default model")
    device: str = _p("", "'cpu', 'cuda' or 'cuda:N'; empty = CUDA when available")
    max_new_tokens: int = _p(32, "longest generated answer, tokens")
    sensor_qos: bool = _p(True, "subscribe to images with the sensor-data QoS (best effort: matches any "
                                "publisher, but loses frames of large images, ~30 % of 640x480 pairs at "
                                "30 Hz); false = reliable, every frame of a reliable publisher")
    sync_slop_s: float = _p(0.05, "colour/depth stamps closer than this are paired, seconds")
    sync_queue_size: int = _p(10, "messages kept per input while pairing")
    pose_source: str = _p("auto", "camera pose from 'tf', 'topic' (camera_pose / odom) or 'auto'")
    pose_queue_size: int = _p(30, "frames kept while waiting for their pose, and before the first "
                                  "color/camera_info (oldest dropped)")
    pose_wait_s: float = _p(1.0, "drop a frame whose pose is missing: TF after this wait; topic once poses this much newer arrived")
    pose_silence_s: float = _p(5.0, "topic poses: drop frames waiting for a pose once the pose topic has been silent this long (a reliable topic can stall for seconds while a lost sample is resent)")
    ingest_queue_size: int = _p(8, "frames waiting for keyframe selection (oldest dropped)")
    depth_scale_m: float = _p(0.001, "metres per unit of 16UC1 depth (REP 118: millimetres)")
    min_depth_m: float = _p(0.1, "nearer depth is invalid")
    max_depth_m: float = _p(10.0, "farther depth is invalid")
    buffer_capacity: int = _p(32, "keyframes kept (K)")
    voxel_size_m: float = _p(0.1, "voxel edge for coverage bookkeeping")
    pixel_stride: int = _p(4, "voxelise every n-th pixel row/column")
    min_new_voxels: int = _p(20, "a frame becomes a keyframe only if it adds this many new voxels")
    max_age_s: float = _p(0.0, "forget keyframes older than this (0 = never)")
    max_distance_m: float = _p(0.0, "forget keyframes farther than this from the camera (0 = never)")
    max_pending_queries: int = _p(2, "queries waiting for the model; more get BUSY at once")
    query_timeout_s: float = _p(60.0, "a query not answered in this time gets TIMEOUT")
    prepare_after_s: float = _p(1.0, "once the keyframes have not changed for this long and no query waits, encode them, pre-fill the model's visual prefix and build the proposals on the query worker, so that the next query does not wait for it (0 = off: the first query after a change pays for it)")
    max_text_chars: int = _p(2000, "longer query texts are rejected as INVALID")
    max_results: int = _p(5, "objects returned for single-object grounding, best first")
    query_keyframes: int = _p(TRAINED_FRAMES, "keyframes a query uses when it does not set max_keyframes, spread over the buffer: -1 = as many as the model was trained with (its config.json says; the embedded model 8, released checkpoints 32), 0 = all")
    query_keyframe_groups: int = _p(4, "a query without max_keyframes reads up to query_keyframes × this many keyframes of the buffer, as that many interleaved groups each read as its own sequence, and averages their answers' token probabilities and grounding scores (better answers and grounding from the embedded model: BENCHMARKS.md); a request's max_keyframes is read in as many groups as it fills; 1 = one pass (the paper's)")
    multi_object_threshold: float = _p(0.0, "threshold of multi-object grounding in the units of the model's multi_object_selection (the paper's rule: cumulative probability, 0.4 in its code, 0.25 in its text; the embedded model's: minimum cosine score, 0.5); 0 = the model's own")
    multi_object_suppress_iou: float = _p(0.1, "multi-object grounding drops a selected box whose IoU with a better selected one is at least this (the built-in proposals nest boxes of one object); 0 = keep all")
    proposals_timeout_s: float = _p(5.0, "detector proposals older than this are ignored (built-in ones used)")
    marker_lifetime_s: float = _p(0.0, "lifetime of result markers (0 = until replaced)")
    coverage_period_s: float = _p(2.0, "period of the coverage cloud and keyframe frustums (0 = off)")
    coverage_max_points: int = _p(50000, "at most this many voxel centres in the coverage cloud")
    diagnostics_period_s: float = _p(1.0, "period of /diagnostics (0 = off)")
    autostart: bool = _p(True, "configure and activate on start (no lifecycle manager needed)")

    def __post_init__(self) -> None:
        PoseSource.parse(self.pose_source)
        positive = ("max_new_tokens", "sync_slop_s", "sync_queue_size", "pose_queue_size", "pose_wait_s",
                    "pose_silence_s",
                    "ingest_queue_size", "depth_scale_m", "max_depth_m", "buffer_capacity",
                    "voxel_size_m", "pixel_stride", "max_pending_queries", "query_timeout_s",
                    "max_text_chars", "max_results", "proposals_timeout_s", "coverage_max_points",
                    "query_keyframe_groups")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"parameter {name} must be > 0, got {getattr(self, name)!r}")
        if self.query_keyframes < TRAINED_FRAMES:
            raise ValueError(f"parameter query_keyframes must be >= -1 (-1 = the model's training "
                             f"frame count, 0 = all), got {self.query_keyframes}")
        non_negative = ("min_depth_m", "min_new_voxels", "max_age_s", "max_distance_m", "prepare_after_s",
                        "marker_lifetime_s", "coverage_period_s", "diagnostics_period_s")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"parameter {name} must be >= 0, got {getattr(self, name)!r}")
        if self.min_depth_m >= self.max_depth_m:
            raise ValueError(f"min_depth_m ({self.min_depth_m}) must be < max_depth_m ({self.max_depth_m})")
        if not 0 <= self.multi_object_threshold <= 1:
            raise ValueError(f"multi_object_threshold must be in [0, 1] (0 = the model's own), got "
                             f"{self.multi_object_threshold}")
        if not 0 <= self.multi_object_suppress_iou <= 1:
            raise ValueError(f"multi_object_suppress_iou must be in [0, 1] (0 = keep all), got "
                             f"{self.multi_object_suppress_iou}")
        if not self.world_frame:
            raise ValueError("world_frame must not be empty")
        self.buffer_config()  # validates the buffer's own ranges too

    @property
    def pose(self) -> PoseSource:
        return PoseSource.parse(self.pose_source)

    def buffer_config(self) -> BufferConfig:
        return BufferConfig(capacity=self.buffer_capacity, voxel_size_m=self.voxel_size_m,
                            pixel_stride=self.pixel_stride, min_new_voxels=self.min_new_voxels,
                            max_age_s=self.max_age_s or None, max_distance_m=self.max_distance_m or None)

    def scene_qa_config(self) -> SceneQAConfig:
        return SceneQAConfig(max_results=self.max_results,
                             multi_object_threshold=self.multi_object_threshold or None,
                             multi_object_suppress_iou=self.multi_object_suppress_iou,
                             proposals=ProposalConfig(), default_max_keyframes=self.query_keyframes,
                             keyframe_groups=self.query_keyframe_groups)

    @staticmethod
    def description(name: str) -> str:
        return next(f.metadata["doc"] for f in fields(NodeConfig) if f.name == name)
