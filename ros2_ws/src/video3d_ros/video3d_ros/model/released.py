"""Load the released LLaVA-style checkpoints (see CHECKPOINTS.md for the key map).

Accepted: LLaVA-Video-7B-Qwen2, Video3D-LLM-LLaVA-Qwen-Uniform-32, and the 3DRS
and Ross3D checkpoints (their training-only modules are ignored with a logged
notice). The directory holds a LLaVA-style ``config.json`` (``model_type``
``llava_qwen`` with the ``mm_*``, 3D and grounding fields), safetensors weights
(single file or sharded with ``model.safetensors.index.json``) and the
tokenizer. Nothing is downloaded; no remote code runs; pickle weights are
refused unless ``allow_pickle=True``.

The reference encodes variants as strings ("avg-discrete-sin3d"); they are
mapped to our enums here, by whole-string table lookup, and nowhere else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from video3d_ros.geometry import Aggregation

from .build import build_empty, materialize
from .checkpoint import LoadedModel, load_tokenizer, read_json_object, read_safetensors
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
    Video3DConfig,
    VideoConfig,
    VisionTowerConfig,
)
from .errors import CheckpointError
from .processor import Video3DProcessor
from .runtime import Runtime, detect_runtime
from .tokenizer import ensure_video_token, token_ids_of

log = logging.getLogger(__name__)

MODEL_TYPE = "llava_qwen"

# Vision towers by the last component of ``mm_vision_tower``; stored truncated.
KNOWN_VISION_TOWERS: dict[str, VisionTowerConfig] = {
    "siglip-so400m-patch14-384": VisionTowerConfig(
        image_size_px=384, patch_size_px=14, hidden_size=1152, intermediate_size=4304,
        num_layers=26, num_heads=16),
}

# Released weight-name prefix → our prefix (first match wins). Other names stay as they are
# and are reported as unexpected.
KEY_MAP: tuple[tuple[str, str], ...] = (
    ("model.vision_tower.vision_tower.vision_model.", "vision_tower."),
    ("model.mm_projector.", "projector."),
    ("model.image_newline", "image_newline"),
    ("model.world_position_embedding.", "position_encoding."),
    ("ground_head_obj.", "ground_head.obj."),
    ("ground_head_query.", "ground_head.query."),
    ("ground_head_zero_target", "ground_head.zero_target"),
    ("lm_head.", "language_model.lm_head."),
    ("model.embed_tokens.", "language_model.model.embed_tokens."),
    ("model.layers.", "language_model.model.layers."),
    ("model.norm.", "language_model.model.norm."),
)

# Modules that exist only for training in derived works; ignored with a notice.
TRAINING_ONLY_PREFIXES: dict[str, str] = {
    "model.mask_token": "Ross3D",
    "model.mm_pixel_decoder.": "Ross3D",
    "model.mm_inv_projector.": "Ross3D",
    "model.proj_3d.": "3DRS",
}

POSITION_ENCODINGS: dict[str, tuple[PositionEncodingKind, Aggregation, CoordMode]] = {
    "avg-discrete-sin3d": (PositionEncodingKind.SINUSOIDAL, Aggregation.MEAN, CoordMode.DISCRETE),
    "avg-sin3d": (PositionEncodingKind.SINUSOIDAL, Aggregation.MEAN, CoordMode.CONTINUOUS),
    "avg-discrete-mlp": (PositionEncodingKind.MLP, Aggregation.MEAN, CoordMode.DISCRETE),
    "avg-mlp": (PositionEncodingKind.MLP, Aggregation.MEAN, CoordMode.CONTINUOUS),
    "sample1-discrete-sin3d": (PositionEncodingKind.SINUSOIDAL, Aggregation.CENTER,
                               CoordMode.DISCRETE),
    "sample1-sin3d": (PositionEncodingKind.SINUSOIDAL, Aggregation.CENTER, CoordMode.CONTINUOUS),
    "minmax-discrete-sin3d": (PositionEncodingKind.SINUSOIDAL, Aggregation.MIN_MAX,
                              CoordMode.DISCRETE),
    "minmax-sin3d": (PositionEncodingKind.SINUSOIDAL, Aggregation.MIN_MAX, CoordMode.CONTINUOUS),
}

OBJECT_FEATURES: dict[str, tuple[ObjectFeatureKind, bool]] = {
    "patch14-pe": (ObjectFeatureKind.PATCH14, True),
    "patch14": (ObjectFeatureKind.PATCH14, False),
    "patch27-pe": (ObjectFeatureKind.PATCH27, True),
    "patch27": (ObjectFeatureKind.PATCH27, False),
}

GROUND_HEADS: dict[str, GroundLossKind] = {"infonce": GroundLossKind.INFONCE}
POOL_MODES = {"average": PoolMode.AVERAGE, "max": PoolMode.MAX, "bilinear": PoolMode.BILINEAR}
NEWLINES = {"grid": NewlinePosition.GRID, "no_token": NewlinePosition.NONE}
PROJECTORS = {"mlp2x_gelu": ProjectorKind.MLP2X_GELU}


def _lookup(table: dict[str, Any], value: Any, field: str) -> Any:
    if value not in table:
        raise CheckpointError(f"config field {field}={value!r} is not supported "
                              f"(supported: {sorted(table)})")
    return table[value]


def config_from_llava(cfg: dict[str, Any], vision: VisionTowerConfig | None = None
                      ) -> Video3DConfig:
    """Translate a LLaVA-style ``config.json`` dict into our config (token ids unset)."""
    if cfg.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"model_type must be {MODEL_TYPE!r}, got {cfg.get('model_type')!r}")
    tower = str(cfg.get("mm_vision_tower", ""))
    if vision is None:
        vision = KNOWN_VISION_TOWERS.get(Path(tower).name)
        if vision is None:
            raise CheckpointError(f"unknown vision tower {tower!r}: pass vision=... (known: "
                                  f"{sorted(KNOWN_VISION_TOWERS)})")
    if cfg.get("mm_hidden_size", vision.hidden_size) != vision.hidden_size:
        raise CheckpointError(f"mm_hidden_size {cfg['mm_hidden_size']} != vision tower width "
                              f"{vision.hidden_size}")
    if cfg.get("mm_vision_select_layer", -2) != -2:
        raise CheckpointError("only mm_vision_select_layer=-2 (tower stored without its last "
                              f"layer) is supported, got {cfg['mm_vision_select_layer']}")
    newline = _lookup(NEWLINES, cfg.get("mm_newline_position", "grid"), "mm_newline_position")
    text = TextConfig(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"], num_layers=cfg["num_hidden_layers"],
        num_heads=cfg["num_attention_heads"],
        num_kv_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
        rope_theta=float(cfg.get("rope_theta", 10000.0)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=cfg.get("max_position_embeddings", 32768),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )
    video = VideoConfig(
        projector=_lookup(PROJECTORS, cfg.get("mm_projector_type"), "mm_projector_type"),
        pool_stride=int(cfg.get("mm_spatial_pool_stride") or 2),
        pool_mode=_lookup(POOL_MODES, cfg.get("mm_spatial_pool_mode", "bilinear"),
                          "mm_spatial_pool_mode"),
        newline=newline,
    )
    pe_type = cfg.get("world_position_embedding_type")
    if pe_type is None:
        position = PositionEncodingConfig(kind=PositionEncodingKind.NONE)
    else:
        kind, agg, coords = _lookup(POSITION_ENCODINGS, pe_type, "world_position_embedding_type")
        position = PositionEncodingConfig(
            kind=kind, aggregation=agg, coords=coords,
            lo_m=tuple(cfg.get("min_xyz_range", (-15, -15, -5))),
            hi_m=tuple(cfg.get("max_xyz_range", (15, 15, 5))),
            voxel_size_m=float(cfg.get("voxel_size", 0.1)))
    grounding = None
    if cfg.get("ground_head_type") is not None:
        loss = _lookup(GROUND_HEADS, cfg["ground_head_type"], "ground_head_type")
        feat, with_pe = _lookup(OBJECT_FEATURES, cfg.get("object_feature_type", "patch14-pe"),
                                "object_feature_type")
        grounding = GroundingConfig(object_feature=feat, loss=loss,
                                    temperature=float(cfg.get("ground_head_temperature", 0.07)),
                                    head_hidden_size=None,  # released heads are H → H
                                    add_center_encoding=with_pe
                                    and position.kind is not PositionEncodingKind.NONE)
    return Video3DConfig(vision=vision, text=text, video=video, position=position,
                         grounding=grounding)


def map_key(name: str) -> str | None:
    """Released weight name → ours; None for a training-only module."""
    for prefix in TRAINING_ONLY_PREFIXES:
        if name.startswith(prefix):
            return None
    for src, dst in KEY_MAP:
        if name.startswith(src):
            return dst + name[len(src):]
    return name  # left as is: reported as unexpected


def read_weights(directory: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory (sharded or single file)."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(read_json_object(index)["weight_map"].values()))
        missing = [f for f in files if not (directory / f).is_file()]
        if missing:
            raise CheckpointError(f"shards listed in {index.name} are missing: {missing}")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(read_safetensors(directory / f))
        return state
    if (directory / "model.safetensors").is_file():
        return read_safetensors(directory / "model.safetensors")
    pickles = sorted(p.name for p in directory.glob("pytorch_model*.bin"))
    if pickles:
        if not allow_pickle:
            raise CheckpointError(f"{directory} holds only pickle weights {pickles}; refusing to "
                                  "load them (pass allow_pickle=True if you trust the source)")
        state = {}
        for name in pickles:
            state.update(torch.load(directory / name, map_location="cpu", weights_only=True))
        return state
    raise CheckpointError(f"{directory} holds no model.safetensors[.index.json]")


def load_released(directory: str | os.PathLike, runtime: Runtime | None = None,
                  vision: VisionTowerConfig | None = None,
                  allow_pickle: bool = False) -> LoadedModel:
    """Load a released LLaVA-style checkpoint directory.

    Args:
        directory: local directory (config.json, weights, tokenizer).
        runtime: device/dtype/attention; None detects this machine's.
        vision: tower shape when ``mm_vision_tower`` is not in KNOWN_VISION_TOWERS.
        allow_pickle: accept ``pytorch_model*.bin`` weights.
    """
    d = Path(directory)
    if not (d / "config.json").is_file():
        raise CheckpointError(f"{d} has no config.json")
    raw = read_json_object(d / "config.json")
    config = config_from_llava(raw, vision)
    tokenizer = load_tokenizer(d)
    ensure_video_token(tokenizer)
    ids = token_ids_of(tokenizer)
    for field, tid in (("ground_token_ids", ids.ground), ("coord_token_ids", ids.coord)):
        if field in raw and list(raw[field]) != [tid]:
            raise CheckpointError(f"config {field}={raw[field]} but the tokenizer gives [{tid}]")
    config.token_ids = ids
    config.__post_init__()
    released = read_weights(d, allow_pickle)
    state, ignored = {}, {}
    for name, t in released.items():
        ours = map_key(name)
        if ours is None:
            ignored.setdefault(next(v for k, v in TRAINING_ONLY_PREFIXES.items()
                                    if name.startswith(k)), []).append(name)
        else:
            state[ours] = t
    for work, names in ignored.items():
        log.warning("ignoring %d training-only %s weights (e.g. %s)", len(names), work, names[0])
    if config.text.tie_word_embeddings and "language_model.lm_head.weight" not in state:
        state["language_model.lm_head.weight"] = state["language_model.model.embed_tokens.weight"]
    runtime = runtime or detect_runtime()
    state = {k: v.to(runtime.dtype) if v.is_floating_point() else v for k, v in state.items()}
    try:
        model = materialize(build_empty(config, runtime.attn_implementation), runtime, state,
                            where=str(d))
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    return LoadedModel(model, tokenizer, Video3DProcessor(tokenizer, config), runtime)
