"""Video-3D LLM: configs, model, checkpoint IO and the inference engine (no ROS imports).

Entry points::

    from video3d_ros.model import load_pretrained, load_released, Video3DEngine
    loaded = load_released("path/to/Video3D-LLM-LLaVA-Qwen-Uniform-32")
    engine = Video3DEngine(loaded.model, loaded.processor)
"""

from .checkpoint import LoadedModel, load_pretrained, save_pretrained
from .config import (
    CoordMode,
    GroundingConfig,
    GroundLossKind,
    NewlinePosition,
    ObjectFeatureKind,
    PoolMode,
    PositionEncodingConfig,
    PositionEncodingKind,
    ProjectorKind,
    TextConfig,
    TokenIds,
    Video3DConfig,
    VideoConfig,
    VisionTowerConfig,
)
from .engine import Answer, GroundingResult, SyncResult, Video3DEngine
from .errors import CheckpointError, ModelError
from .modeling import FrameEncoding, Video3DModel, Video3DOutput
from .processor import Video3DProcessor
from .released import load_released
from .runtime import Runtime, detect_runtime, select_runtime
from .shapes import SHAPES, paper_7b, tiny
from .tokenizer import build_tokenizer

__all__ = [
    "Answer", "CheckpointError", "CoordMode", "FrameEncoding", "GroundLossKind",
    "GroundingConfig", "GroundingResult", "LoadedModel", "ModelError", "NewlinePosition",
    "ObjectFeatureKind", "PoolMode", "PositionEncodingConfig", "PositionEncodingKind",
    "ProjectorKind", "Runtime", "SHAPES", "SyncResult", "TextConfig", "TokenIds",
    "Video3DConfig", "Video3DEngine", "Video3DModel", "Video3DOutput", "Video3DProcessor",
    "VideoConfig", "VisionTowerConfig", "build_tokenizer", "detect_runtime", "load_pretrained",
    "load_released", "paper_7b", "save_pretrained", "select_runtime", "tiny",
]
