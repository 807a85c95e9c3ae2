"""Box-size encoding (our option) and the fan-in random init of narrow models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from video3d_ros.geometry import Box3D
from video3d_ros.model.build import build_empty, materialize
from video3d_ros.model.config import (
    BoxSizeEncoding,
    PositionEncodingConfig,
    PositionEncodingKind,
    RandomInit,
    Video3DConfig,
)
from video3d_ros.model.engine import Video3DEngine
from video3d_ros.model.modeling import Video3DModel
from video3d_ros.model.position_encoding import center_points, sincos_3d, size_points
from video3d_ros.model.processor import Video3DProcessor, caption_prompt
from video3d_ros.model.runtime import Runtime

CPU = Runtime(torch.device("cpu"), torch.float32, "sdpa")


@pytest.fixture()
def sized_config(tiny_config):
    pos = dataclasses.replace(tiny_config.position, box_size=BoxSizeEncoding.SINUSOIDAL)
    return dataclasses.replace(tiny_config, position=pos)


@pytest.fixture()
def sized_model(sized_config):
    torch.manual_seed(0)
    return Video3DModel(sized_config).eval()


def test_size_points_round_in_units():
    cfg = PositionEncodingConfig(size_unit_m=0.05)
    pts = size_points(np.array([[0.94, 0.058, 2.088], [0.0, 0.024, 0.026]]), cfg)
    assert pts.shape == (2, 1, 3) and pts.dtype == np.float32
    np.testing.assert_array_equal(pts[:, 0], [[19, 1, 42], [0, 0, 1]])
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        size_points(np.zeros((2, 4)), cfg)


def test_box_size_config_is_validated_and_round_trips(sized_config):
    with pytest.raises(ValueError, match="box_size 'sinusoidal' needs a position encoding"):
        PositionEncodingConfig(kind=PositionEncodingKind.NONE, box_size="sinusoidal")
    with pytest.raises(ValueError, match="size_unit_m"):
        PositionEncodingConfig(size_unit_m=0.0)
    with pytest.raises(ValueError):
        PositionEncodingConfig(box_size="cubic")
    back = Video3DConfig.from_dict(sized_config.to_dict())
    assert back.position.box_size is BoxSizeEncoding.SINUSOIDAL
    assert back == sized_config
    # configs written before the option existed load as the paper's (centre only)
    d = sized_config.to_dict()
    for k in ("box_size", "size_unit_m", "size_temperature"):
        del d["position"][k]
    assert Video3DConfig.from_dict(d).position.box_size is BoxSizeEncoding.NONE


def test_encode_boxes_adds_the_size_encoding(sized_model, tiny_model):
    centres = torch.tensor([[[150.0, 160.0, 60.0]], [[150.0, 160.0, 60.0]]])
    sizes = torch.tensor([[[19.0, 1.0, 42.0]], [[8.0, 8.0, 9.0]]])
    # the paper's model: the centre only, sizes ignored
    assert torch.equal(tiny_model.encode_boxes(centres, sizes), tiny_model.encode_points(centres))
    enc = sized_model.encode_boxes(centres, sizes)
    d = sized_model.config.text.hidden_size
    want = sized_model.encode_points(centres) + sincos_3d(sizes, d, 100.0)
    torch.testing.assert_close(enc, want)
    assert not torch.allclose(enc[0], enc[1])  # same centre, different size
    with pytest.raises(ValueError, match="encodes box sizes.*size_points is required"):
        sized_model.encode_boxes(centres)
    with pytest.raises(ValueError, match="1 box sizes for 2 box centres"):
        sized_model.encode_boxes(centres, sizes[:1])


def test_engine_uses_box_sizes_for_objects_and_coord(sized_model, tokenizer, sized_config,
                                                     frames):
    engine = Video3DEngine(sized_model, Video3DProcessor(tokenizer, sized_config),
                           max_new_tokens=4)
    for i, f in enumerate(frames[:2]):
        engine.add_keyframe(i, *f, stamp_s=float(i))
    small = Box3D(np.array([0.5, 0.5, 1.3]), np.array([0.6, 0.6, 1.0]))
    large = Box3D(np.array([0.5, 0.5, 1.3]), np.array([1.2, 0.9, 1.6]))
    res = engine.ground("the lamp", [small, large])
    assert abs(res.scores[0] - res.scores[1]) > 1e-4  # only the sizes differ
    # object features = mean image features + centre encoding + size encoding
    pos = sized_config.position
    feats = engine._object_features([small, large])
    masks = [engine._cells[1].inside(b, sized_config.grounding.inside_fraction)
             for b in (small, large)]
    stacked = torch.stack([f.object_features for _, f in engine._ordered()])
    cen = torch.from_numpy(center_points(np.stack([small.center_m, large.center_m]), pos))
    siz = torch.from_numpy(size_points(np.stack([small.size_m, large.size_m]), pos))
    torch.testing.assert_close(feats, sized_model.object_features(stacked, masks, cen, siz))
    a = engine.next_token_logits(caption_prompt(), coord_box=small)
    b = engine.next_token_logits(caption_prompt(), coord_box=large)
    assert not torch.allclose(a, b, atol=1e-5)  # <coord> carries the size too


def test_fan_in_init_scales(tiny_config):
    m = materialize(build_empty(tiny_config), CPU, seed=0, init=RandomInit.FAN_IN)
    w = m.language_model.model.layers[0].mlp.down_proj.weight  # (96, 192): fan-in 192
    assert float(w.detach().std()) == pytest.approx(192 ** -0.5, rel=0.05)
    conv = m.vision_tower.embeddings.patch_embedding.weight  # (64, 3, 14, 14)
    assert float(conv.std()) == pytest.approx((3 * 14 * 14) ** -0.5, rel=0.05)
    emb = m.language_model.model.embed_tokens.weight  # rows of width 96
    assert float(emb.std()) == pytest.approx(96 ** -0.5, rel=0.05)
    out = m.projector[2].weight
    assert float(out.std()) == pytest.approx(0.1 * 96 ** -0.5, rel=0.05)
    norm = m.language_model.model.norm.weight
    assert torch.all(norm == 1.0)
    default = materialize(build_empty(tiny_config), CPU, seed=0)
    assert float(default.language_model.model.layers[0].mlp.down_proj.weight.std()) == \
        pytest.approx(0.02, rel=0.05)
    assert RandomInit("fan_in") is RandomInit.FAN_IN


@pytest.mark.parametrize("init", list(RandomInit))
def test_random_init_norm_layers_are_identity_and_frames_stay_distinct(tiny_config, init):
    """Every norm layer starts at weight 1, bias 0 (a name test once set the vision tower's
    LayerNorm biases to 1 and its projector went dead in training), and distinct frames
    give distinct projected patch features."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    m = materialize(build_empty(tiny_config), CPU, seed=0, init=init)
    norms = [(n, mod) for n, mod in m.named_modules()
             if isinstance(mod, (torch.nn.LayerNorm, Qwen2RMSNorm))]
    assert len(norms) >= 2 * tiny_config.vision.num_layers + 2 * tiny_config.text.num_layers
    for name, mod in norms:
        assert torch.all(mod.weight == 1.0), name
        if getattr(mod, "bias", None) is not None:
            assert torch.all(mod.bias == 0.0), name
    for name, p in m.named_parameters():
        if name.endswith("bias"):
            assert torch.all(p == 0.0), name
    s = tiny_config.vision.image_size_px
    frames = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        h = m.vision_tower.encoder(inputs_embeds=m.vision_tower.embeddings(frames)).last_hidden_state
        pre = m.projector[0](h)
        patches = m.projector(h)  # (2, P², D)
    assert 0.2 < float((pre > 0).float().mean()) < 0.8  # GELU neither dead nor linear
    assert float(patches.std(dim=1).mean()) > 1e-3  # features vary across patches
