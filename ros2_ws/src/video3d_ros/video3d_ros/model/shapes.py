"""Named model shapes, every size written out.

- ``tiny``: CPU tests and quick checks (8 frames forward well under a second).
- ``small``: the embedded default model trained on generated scenes: ``tiny``'s vision
  tower with a decoder 128 wide (still a few-MB checkpoint, CPU-trainable).
- ``paper_7b``: Qwen2-7B + SigLIP so400m/14 at 384 px, as LLaVA-Video-7B-Qwen2 /
  Video3D-LLM-LLaVA-Qwen-Uniform-32 (the tower stored truncated: 26 of 27 layers).
"""

from __future__ import annotations

from collections.abc import Callable

from .config import (
    GroundingConfig,
    PositionEncodingConfig,
    TextConfig,
    TokenIds,
    Video3DConfig,
    VideoConfig,
    VisionTowerConfig,
)


def tiny(vocab_size: int, token_ids: TokenIds | None = None) -> Video3DConfig:
    return Video3DConfig(
        vision=VisionTowerConfig(image_size_px=112, patch_size_px=14, hidden_size=64,
                                 intermediate_size=128, num_layers=2, num_heads=4),
        text=TextConfig(vocab_size=vocab_size, hidden_size=96, intermediate_size=192,
                        num_layers=2, num_heads=4, num_kv_heads=2, rope_theta=10000.0,
                        max_position_embeddings=8192),
        video=VideoConfig(),
        position=PositionEncodingConfig(),
        grounding=GroundingConfig(),
        token_ids=token_ids,
    )


def small(vocab_size: int, token_ids: TokenIds | None = None) -> Video3DConfig:
    return Video3DConfig(
        vision=VisionTowerConfig(image_size_px=112, patch_size_px=14, hidden_size=64,
                                 intermediate_size=128, num_layers=2, num_heads=4),
        text=TextConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=256,
                        num_layers=2, num_heads=4, num_kv_heads=2, rope_theta=10000.0,
                        max_position_embeddings=8192),
        video=VideoConfig(),
        position=PositionEncodingConfig(),
        grounding=GroundingConfig(),
        token_ids=token_ids,
    )


def paper_7b(vocab_size: int = 152064, token_ids: TokenIds | None = None) -> Video3DConfig:
    return Video3DConfig(
        vision=VisionTowerConfig(image_size_px=384, patch_size_px=14, hidden_size=1152,
                                 intermediate_size=4304, num_layers=26, num_heads=16),
        text=TextConfig(vocab_size=vocab_size, hidden_size=3584, intermediate_size=18944,
                        num_layers=28, num_heads=28, num_kv_heads=4, rope_theta=1_000_000.0,
                        max_position_embeddings=32768),
        video=VideoConfig(),
        position=PositionEncodingConfig(),
        grounding=GroundingConfig(),
        token_ids=token_ids,
    )


SHAPES: dict[str, Callable[..., Video3DConfig]] = {"tiny": tiny, "small": small,
                                                    "paper_7b": paper_7b}
