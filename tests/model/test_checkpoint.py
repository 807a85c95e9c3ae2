"""Our checkpoint format round-trips exactly."""

from __future__ import annotations

import json

import pytest
import torch

from video3d_ros.model.checkpoint import load_pretrained, save_pretrained
from video3d_ros.model.errors import CheckpointError
from video3d_ros.model.runtime import select_runtime

CPU = select_runtime(cuda_available=False, flash_attn_available=False)


def _logits(model, processor, frames):
    import numpy as np

    prepared = [processor.prepare_frame(*f) for f in frames]
    pv = torch.stack([p.pixel_values for p in prepared])
    pts = torch.from_numpy(np.stack([p.token_points for p in prepared]))
    enc = processor.encode(len(frames), " How many chairs are there? Answer the question simply.")
    with torch.no_grad():
        fe = model.encode_frames(pv, pts)
        return model(enc.input_ids[None], video_tokens=fe.tokens.flatten(0, 1)).logits


def test_round_trip_is_exact(tmp_path, tiny_model, tokenizer, processor, frames):
    save_pretrained(tiny_model, tokenizer, tmp_path)
    loaded = load_pretrained(tmp_path, CPU)
    assert loaded.model.config == tiny_model.config
    a, b = tiny_model.state_dict(), loaded.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.tokenizer.get_vocab() == tokenizer.get_vocab()
    text = "How many chairs are there?"
    assert loaded.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert torch.equal(_logits(tiny_model, processor, frames[:2]),
                       _logits(loaded.model, loaded.processor, frames[:2]))


def test_missing_and_unexpected_weights_are_listed(tmp_path, tiny_model, tokenizer):
    from safetensors.torch import load_file, save_file

    save_pretrained(tiny_model, tokenizer, tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["image_newline"]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing \['image_newline'\].*unexpected \['extra.weight'\]"):
        load_pretrained(tmp_path, CPU)


def test_foreign_config_is_refused(tmp_path, tiny_model, tokenizer):
    save_pretrained(tiny_model, tokenizer, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_qwen"}))
    with pytest.raises(CheckpointError, match="load_released"):
        load_pretrained(tmp_path, CPU)


@pytest.mark.parametrize("damage,reason", [
    ("weights cut short", "cannot read the weights .*model.safetensors"),
    ("weights not safetensors", "cannot read the weights .*model.safetensors"),
    ("config cut short", "cannot read .*config.json"),
    ("config a list", "config.json: expected a JSON object, got list"),
])
def test_damaged_files_are_named(tmp_path, tiny_model, tokenizer, damage, reason):
    save_pretrained(tiny_model, tokenizer, tmp_path)
    weights, config = tmp_path / "model.safetensors", tmp_path / "config.json"
    if damage == "weights cut short":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "weights not safetensors":
        weights.write_bytes(b"PK\x03\x04 a zip file, for instance")
    elif damage == "config cut short":
        config.write_text(config.read_text()[:50])
    else:
        config.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=reason):
        load_pretrained(tmp_path, CPU)
