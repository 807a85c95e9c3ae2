"""Released LLaVA-style layout: a tiny checkpoint written here in that layout loads
to the same model as our own format."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from video3d_ros.model.checkpoint import load_pretrained, save_pretrained
from video3d_ros.model.errors import CheckpointError
from video3d_ros.model.modeling import Video3DModel
from video3d_ros.model.released import load_released
from video3d_ros.model.runtime import select_runtime
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import build_tokenizer, ensure_video_token, token_ids_of

CPU = select_runtime(cuda_available=False, flash_attn_available=False)

# Written out independently of the loader's own table: our name prefix → released prefix.
RELEASED_NAMES = [
    ("vision_tower.", "model.vision_tower.vision_tower.vision_model."),
    ("projector.", "model.mm_projector."),
    ("image_newline", "model.image_newline"),
    ("ground_head.obj.", "ground_head_obj."),
    ("ground_head.query.", "ground_head_query."),
    ("ground_head.zero_target", "ground_head_zero_target"),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
]


def _released_name(ours: str) -> str:
    for src, dst in RELEASED_NAMES:
        if ours.startswith(src):
            return dst + ours[len(src):]
    raise AssertionError(f"no released name for {ours}")


def _write_released(directory, model, tokenizer, extra=None, shards=2):
    cfg = model.config
    t, v = cfg.text, cfg.vision
    vocab = tokenizer.get_vocab()
    config = {
        "architectures": ["LlavaQwenForCausalLM"], "model_type": "llava_qwen",
        "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_layers, "num_attention_heads": t.num_heads,
        "num_key_value_heads": t.num_kv_heads, "vocab_size": t.vocab_size,
        "rope_theta": t.rope_theta, "rms_norm_eps": t.rms_norm_eps,
        "max_position_embeddings": t.max_position_embeddings, "tie_word_embeddings": False,
        "mm_vision_tower": "tiny-siglip-test", "mm_hidden_size": v.hidden_size,
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
        "mm_patch_merge_type": "spatial_unpad", "mm_newline_position": "grid",
        "mm_spatial_pool_stride": 2, "mm_spatial_pool_mode": "bilinear",
        "image_aspect_ratio": "anyres_max_9", "mm_use_im_start_end": False,
        "world_position_embedding_type": "avg-discrete-sin3d", "object_feature_type": "patch14-pe",
        "ground_head_type": "infonce", "ground_head_hidden_size": 512,
        "ground_head_temperature": 0.07, "voxel_size": 0.1,
        "min_xyz_range": [-15, -15, -5], "max_xyz_range": [15, 15, 5],
        "ground_token_ids": [vocab["<ground>"]], "coord_token_ids": [vocab["<coord>"]],
        "torch_dtype": "float32",
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    state = {_released_name(k): v.clone() for k, v in model.state_dict().items()}
    state.update(extra or {})
    names = sorted(state)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k] for k in part}, str(directory / fname))
        weight_map.update({k: fname for k in part})
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    tokenizer.save_pretrained(str(directory))
    return state


@pytest.fixture(scope="module")
def released_tokenizer(corpus):
    """Qwen2-style base tokenizer + ``<ground>``/``<coord>`` added as the reference does."""
    tok = build_tokenizer(corpus, vocab_size=600, add_model_tokens=False)
    tok.add_tokens(["<ground>"])
    tok.add_tokens(["<coord>"])
    return tok


def _build(released_tokenizer, tmp_path):
    import copy

    with_video = copy.deepcopy(released_tokenizer)
    ensure_video_token(with_video)
    cfg = tiny(len(released_tokenizer), token_ids_of(with_video))
    torch.manual_seed(1)
    return Video3DModel(cfg).eval(), with_video


def _logits(model, processor, frames, coord=False):
    prepared = [processor.prepare_frame(*f) for f in frames]
    pv = torch.stack([p.pixel_values for p in prepared])
    pts = torch.from_numpy(np.stack([p.token_points for p in prepared]))
    text = "Given an object located at <coord>, describe the object in detail." if coord \
        else " How many chairs are there? Answer the question simply."
    enc = processor.encode(len(frames), text)
    with torch.no_grad():
        fe = model.encode_frames(pv, pts)
        ce = model.encode_points(torch.tensor([[[150.0, 160.0, 60.0]]])) if coord else None
        return model(enc.input_ids[None], video_tokens=fe.tokens.flatten(0, 1),
                     coord_embeds=ce).logits


def test_released_layout_loads_to_the_same_model(tmp_path, released_tokenizer, frames, caplog):
    model, tok = _build(released_tokenizer, tmp_path)
    # the released tokenizer has no video placeholder: the loader adds it past the vocabulary
    assert tok.get_vocab()["<image>"] >= model.config.text.vocab_size
    extra = {"model.mm_inv_projector.net.pos_embed": torch.zeros(1, 4, 8),
             "model.mask_token": torch.zeros(model.config.text.hidden_size),
             "model.proj_3d.0.weight": torch.zeros(4, 4)}
    _write_released(tmp_path / "released", model, released_tokenizer, extra)
    save_pretrained(model, tok, tmp_path / "ours")
    with caplog.at_level(logging.WARNING, logger="video3d_ros.model.released"):
        rel = load_released(tmp_path / "released", CPU, vision=model.config.vision)
    assert "Ross3D" in caplog.text and "3DRS" in caplog.text
    ours = load_pretrained(tmp_path / "ours", CPU)
    assert rel.model.config == ours.model.config
    for coord in (False, True):
        a = _logits(rel.model, rel.processor, frames[:2], coord)
        b = _logits(ours.model, ours.processor, frames[:2], coord)
        c = _logits(model, ours.processor, frames[:2], coord)
        assert torch.equal(a, b) and torch.equal(b, c)


def test_unknown_weight_and_missing_weight_are_listed(tmp_path, released_tokenizer):
    model, _ = _build(released_tokenizer, tmp_path)
    state = _write_released(tmp_path / "r", model, released_tokenizer,
                            {"model.some_new_module.weight": torch.zeros(2)}, shards=1)
    with pytest.raises(CheckpointError, match=r"unexpected \['model.some_new_module.weight'\]"):
        load_released(tmp_path / "r", CPU, vision=model.config.vision)
    del state["model.some_new_module.weight"], state["model.image_newline"]
    save_file(state, str(tmp_path / "r" / "model-00001-of-00001.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing \['image_newline'\]"):
        load_released(tmp_path / "r", CPU, vision=model.config.vision)


def test_unknown_tower_and_variant_strings_are_refused(tmp_path, released_tokenizer):
    model, _ = _build(released_tokenizer, tmp_path)
    _write_released(tmp_path / "r", model, released_tokenizer, shards=1)
    with pytest.raises(CheckpointError, match="unknown vision tower 'tiny-siglip-test'"):
        load_released(tmp_path / "r", CPU)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    cfg["world_position_embedding_type"] = "avg-discrete-mrope"
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="world_position_embedding_type='avg-discrete-mrope'"):
        load_released(tmp_path / "r", CPU, vision=model.config.vision)


def test_pickle_weights_need_explicit_opt_in(tmp_path, released_tokenizer):
    model, _ = _build(released_tokenizer, tmp_path)
    state = _write_released(tmp_path / "r", model, released_tokenizer, shards=1)
    for f in list((tmp_path / "r").glob("model*.safetensors*")):
        f.unlink()
    torch.save(state, tmp_path / "r" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle"):
        load_released(tmp_path / "r", CPU, vision=model.config.vision)
    loaded = load_released(tmp_path / "r", CPU, vision=model.config.vision, allow_pickle=True)
    assert torch.equal(loaded.model.image_newline, model.image_newline)


def test_paper_config_fields_map_to_the_paper_shape():
    from video3d_ros.model.released import config_from_llava
    from video3d_ros.model.shapes import paper_7b

    raw = {"model_type": "llava_qwen", "hidden_size": 3584, "intermediate_size": 18944,
           "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
           "vocab_size": 152064, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
           "max_position_embeddings": 32768, "tie_word_embeddings": False,
           "mm_vision_tower": "google/siglip-so400m-patch14-384", "mm_hidden_size": 1152,
           "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
           "mm_newline_position": "grid", "mm_spatial_pool_stride": 2,
           "mm_spatial_pool_mode": "bilinear", "world_position_embedding_type": "avg-discrete-sin3d",
           "object_feature_type": "patch14-pe", "ground_head_type": "infonce",
           "ground_head_temperature": 0.07, "voxel_size": 0.1,
           "min_xyz_range": [-15, -15, -5], "max_xyz_range": [15, 15, 5]}
    cfg = config_from_llava(raw)
    assert cfg == paper_7b()
    assert cfg.tokens_per_frame == 210 and 32 * cfg.tokens_per_frame == 6720


def test_a_shard_cut_short_is_named(tmp_path, released_tokenizer):
    model, _ = _build(released_tokenizer, tmp_path)
    _write_released(tmp_path / "r", model, released_tokenizer, shards=2)
    shard = sorted((tmp_path / "r").glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"cannot read the weights .*{shard.name}"):
        load_released(tmp_path / "r", CPU, vision=model.config.vision)


def test_a_corrupt_config_or_index_is_named(tmp_path, released_tokenizer):
    model, _ = _build(released_tokenizer, tmp_path)
    _write_released(tmp_path / "r", model, released_tokenizer, shards=2)
    index = tmp_path / "r" / "model.safetensors.index.json"
    index.write_text(index.read_text()[:30])
    with pytest.raises(CheckpointError, match="cannot read .*model.safetensors.index.json"):
        load_released(tmp_path / "r", CPU, vision=model.config.vision)
    (tmp_path / "r" / "config.json").write_text('"llava"')
    with pytest.raises(CheckpointError, match="config.json: expected a JSON object, got str"):
        load_released(tmp_path / "r", CPU, vision=model.config.vision)
