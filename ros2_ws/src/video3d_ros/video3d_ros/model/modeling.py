"""Video-3D LLM: position-aware video tokens for a Qwen2 language model.

What is special: every pooled video token gets the 3D position encoding of the
world coordinate it sees (mean of its pixel cell, discretised to 0.1 m voxels)
*added* to it, so the language model reads "what" and "where" in one vector.

    frames (F, 3, S, S) ─ SigLIP (truncated, no head) ─ (F, P², Dv)
        ─ projector (mlp2x_gelu) ─ (F, P, P, D) ─ pool 2×2 ─ (F, G, G, D)
        ─ + PE(coords (F, G, G, K, 3)) ─ newline after each row ─ (F·G·(G+1), D)
    text ids with F·G·(G+1) video placeholders ─ embed ─ masked_scatter ─ Qwen2

Grounding: the final hidden state at ``<ground>`` is scored against object
features (see grounding.py, object_features.py). Captioning of a given box: the
encoding of its centre is added to the ``<coord>`` token's embedding. With
``position.box_size = sinusoidal`` (our option, not the paper's) a box's size
is encoded too and added wherever its centre's encoding is (see encode_boxes).

The vision tower and the language model are transformers' SiglipVisionModel
and Qwen2ForCausalLM; this file only composes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from .config import BoxSizeEncoding, Video3DConfig
from .grounding import GroundingHead
from .layers import add_newlines, build_projector, pool_2d
from .object_features import mean_features
from .position_encoding import build_position_encoding, sincos_3d

IGNORE_INDEX = -100  # label value excluded from the language-model loss


@dataclass
class FrameEncoding:
    """Everything computed from frames that later queries need."""

    tokens: torch.Tensor  # (F, T_f, D) visual tokens per frame, PE added, newlines included
    patch_features: torch.Tensor  # (F, P, P, D) projected, un-pooled, no PE (PATCH14 objects)
    pooled_features: torch.Tensor  # (F, G, G, D) pooled, no PE (PATCH27 objects)


@dataclass
class Video3DOutput:
    """Typed result of :meth:`Video3DModel.forward`."""

    # next-token logits: (B, T', V) (T' = logits_to_keep or T); with labels (K, V) at the K
    # positions whose next token is labelled, in batch then position order
    logits: torch.Tensor
    last_hidden_state: torch.Tensor  # (B, T, D) final-norm hidden states
    past_key_values: object | None  # transformers Cache when use_cache, else None
    loss: torch.Tensor | None = None  # language-model cross-entropy when labels are given
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, H, T, T) when asked


def hf_vision_config(config: Video3DConfig, attn_implementation: str) -> SiglipVisionConfig:
    v = config.vision
    cfg = SiglipVisionConfig(
        hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
        num_hidden_layers=v.num_layers, num_attention_heads=v.num_heads,
        image_size=v.image_size_px, patch_size=v.patch_size_px,
        layer_norm_eps=v.layer_norm_eps, vision_use_head=False,
    )
    cfg._attn_implementation = attn_implementation
    return cfg


def hf_text_config(config: Video3DConfig, attn_implementation: str) -> Qwen2Config:
    t = config.text
    cfg = Qwen2Config(
        vocab_size=t.vocab_size, hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size, num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
        rope_theta=t.rope_theta, rms_norm_eps=t.rms_norm_eps,
        max_position_embeddings=t.max_position_embeddings,
        tie_word_embeddings=t.tie_word_embeddings, use_cache=True,
    )
    cfg._attn_implementation = attn_implementation
    return cfg


class Video3DModel(nn.Module):
    def __init__(self, config: Video3DConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        self.config = config
        d = config.text.hidden_size
        self.vision_tower = SiglipVisionModel(hf_vision_config(config, attn_implementation))
        self.projector = build_projector(config.video.projector, config.vision.hidden_size, d)
        self.image_newline = nn.Parameter(torch.randn(d) * d**-0.5)
        self.position_encoding = build_position_encoding(config.position, d)
        self.language_model = Qwen2ForCausalLM(hf_text_config(config, attn_implementation))
        self.ground_head = None if config.grounding is None else GroundingHead(config.grounding, d)

    @property
    def dtype(self) -> torch.dtype:
        return self.image_newline.dtype

    @property
    def device(self) -> torch.device:
        return self.image_newline.device

    # ---- vision -------------------------------------------------------------------------

    def tower_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(F, 3, S, S) normalised frames → (F, P², Dv) patch features (what the projector reads)."""
        h = self.vision_tower.embeddings(pixel_values.to(self.dtype))
        # the stored tower is already truncated: its last layer's output (no post-LN) is
        # the reference's "second-to-last layer" feature
        return self.vision_tower.encoder(inputs_embeds=h).last_hidden_state

    def encode_frames(self, pixel_values: torch.Tensor,
                      token_points: torch.Tensor | None) -> FrameEncoding:
        """Frames → visual tokens.

        Args:
            pixel_values: (F, 3, S, S) normalised (SigLIP: mean 0.5, std 0.5).
            token_points: (F, G, G, K, 3) encoding input per pooled token (see
                position_encoding.prepare_coords); None when there is no 3D encoding.
        """
        n = pixel_values.shape[0]
        p = self.config.grid.patches_per_side
        patches = self.projector(self.tower_features(pixel_values)).view(n, p, p, -1)  # (F, P, P, D)
        pooled = pool_2d(patches, self.config.video.pool_mode, self.config.video.pool_stride)
        tokens = pooled
        if self.position_encoding is not None:
            if token_points is None:
                raise ValueError("this model has a 3D position encoding: token_points is required")
            if token_points.shape[:3] != pooled.shape[:3]:
                raise ValueError(f"token_points grid {tuple(token_points.shape[:3])} != pooled "
                                 f"feature grid {tuple(pooled.shape[:3])}")
            tokens = pooled + self.encode_points(token_points)  # (F, G, G, D)
        seq = add_newlines(tokens, self.image_newline, self.config.video.newline)
        return FrameEncoding(tokens=seq.view(n, -1, seq.shape[-1]), patch_features=patches,
                             pooled_features=pooled)

    def encode_points(self, points: torch.Tensor) -> torch.Tensor:
        """3D encoding: (..., K, 3) → (..., D) in the model dtype."""
        if self.position_encoding is None:
            raise ValueError("this model has no 3D position encoding")
        return self.position_encoding(points.to(self.device)).to(self.dtype)

    def encode_boxes(self, center_points: torch.Tensor,
                     size_points: torch.Tensor | None = None) -> torch.Tensor:
        """Encoding of N boxes: (N, K, 3) centres [+ (N, 1, 3) sizes] → (N, D).

        The centre's 3D encoding, plus — when ``position.box_size`` is sinusoidal —
        sin/cos of the size (``position_encoding.size_points``) at base
        ``size_temperature``. Why we added it: a from-scratch ``tiny`` model
        cannot tell a door from a cabinet by a few 14-px patches, but the boxes'
        sizes separate the generated categories (99 % by nearest neighbour), and
        without them grounding stayed at chance (BENCHMARKS.md, training section).
        """
        enc = self.encode_points(center_points)
        pos = self.config.position
        if pos.box_size is BoxSizeEncoding.NONE:
            return enc
        if size_points is None:
            raise ValueError(f"this model encodes box sizes (position.box_size="
                             f"{pos.box_size.value!r}): size_points is required")
        if size_points.shape[0] != center_points.shape[0]:
            raise ValueError(f"{size_points.shape[0]} box sizes for {center_points.shape[0]} "
                             "box centres")
        size = sincos_3d(size_points.to(self.device), enc.shape[-1], pos.size_temperature)
        return enc + size.to(self.dtype)

    def object_features(self, features: torch.Tensor, masks: Sequence[np.ndarray],
                        center_points: torch.Tensor | None,
                        size_points: torch.Tensor | None = None) -> torch.Tensor:
        """(F, C, C, D) features + N masks (F, C, C) [+ (N, K, 3) centres, (N, 1, 3) sizes]
        → (N, D)."""
        feats = mean_features(features, masks)
        if center_points is not None and len(masks):
            feats = feats + self.encode_boxes(center_points, size_points)
        return feats

    # ---- language -----------------------------------------------------------------------

    def embed(self, input_ids: torch.Tensor, video_tokens: torch.Tensor | None = None,
              coord_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the visual tokens spliced in: (B, T) → (B, T, D).

        ``video_tokens`` (N, D) replace the N video placeholders in order;
        ``coord_embeds`` (M, D) are added to the M ``<coord>`` tokens.
        """
        ids = self.config.token_ids
        if ids is None:
            raise ValueError("config.token_ids is not set (build the model from a tokenizer)")
        vmask = input_ids == ids.video  # (B, T)
        n_tok, n_feat = int(vmask.sum()), 0 if video_tokens is None else video_tokens.shape[0]
        if n_tok != n_feat:
            raise ValueError(f"video placeholder tokens in input_ids ({n_tok}) != video "
                             f"features given ({n_feat})")
        emb = self.language_model.get_input_embeddings()(input_ids.masked_fill(vmask, 0))
        if n_feat:
            emb = emb.masked_scatter(vmask[..., None], video_tokens.to(emb.dtype))
        cmask = input_ids == ids.coord
        n_coord, n_cfeat = int(cmask.sum()), 0 if coord_embeds is None else coord_embeds.shape[0]
        if n_cfeat and n_coord != n_cfeat:
            raise ValueError(f"<coord> tokens in input_ids ({n_coord}) != coordinate "
                             f"encodings given ({n_cfeat})")
        if n_cfeat:
            emb = emb.clone()
            emb[cmask] = emb[cmask] + coord_embeds.to(emb.dtype)
        return emb

    def forward(self, input_ids: torch.Tensor, video_tokens: torch.Tensor | None = None,
                coord_embeds: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, past_key_values: object = None,
                labels: torch.Tensor | None = None, use_cache: bool = False,
                logits_to_keep: int = 0, output_attentions: bool = False) -> Video3DOutput:
        """One decoder pass. ``logits_to_keep`` > 0 computes logits for the last positions only.

        ``output_attentions`` returns every layer's attention weights; they exist only
        with the eager attention implementation (``language_model.set_attn_implementation``).
        """
        if output_attentions and self.language_model.config._attn_implementation != "eager":
            raise ValueError("attention weights need the eager attention implementation, this "
                             f"model uses {self.language_model.config._attn_implementation!r}")
        emb = self.embed(input_ids, video_tokens, coord_embeds)  # (B, T, D)
        out = self.language_model.model(inputs_embeds=emb, attention_mask=attention_mask,
                                        past_key_values=past_key_values, use_cache=use_cache,
                                        output_attentions=output_attentions)
        hidden = out.last_hidden_state  # (B, T, D)
        loss = None
        if labels is not None:
            if logits_to_keep:
                raise ValueError("labels need logits for every position (logits_to_keep=0)")
            # the LM head only where a next token is labelled (the answer's): the same loss as
            # over every position with the rest ignored, without (B, T, V) logits, which for 32
            # frames of the 7B shape are 2 GB in bf16 and twice that again in fp32 for the loss
            keep = labels[:, 1:] != IGNORE_INDEX  # (B, T - 1)
            logits = self.language_model.lm_head(hidden[:, :-1][keep])  # (K, V)
            loss = F.cross_entropy(logits.float(), labels[:, 1:][keep])
        else:
            logits = self.language_model.lm_head(hidden[:, -logits_to_keep:])  # (B, T', V)
        return Video3DOutput(logits=logits, last_hidden_state=hidden,
                             past_key_values=out.past_key_values if use_cache else None,
                             loss=loss, attentions=out.attentions if output_attentions else None)

    def ground_scores(self, query: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        """(D,) ``<ground>`` hidden state, (N, D) objects → (N + 1,) scores (last: zero target)."""
        if self.ground_head is None:
            raise ValueError("this model has no grounding head (config.grounding is None)")
        return self.ground_head(query, objects)
