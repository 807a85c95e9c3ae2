"""``video3d_train.widen``: a fresh language side of another shape keeps the vision tower and
tokenizer of its checkpoint, loads, and trains."""

import json

import pytest
import torch

from video3d_ros.model.checkpoint import load_pretrained
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
from video3d_train.data import SceneStore, Video3DDataset, read_processed
from video3d_train.step import Video3DForTraining
from video3d_train.widen import SHAPE_FIELDS, main, widened


def test_widened_checkpoint_keeps_the_tower_and_draws_the_rest(generated_root, tmp_path):
    out = tmp_path / "wide"
    assert main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--text-hidden", "128",
                 "--text-layers", "3", "--text-intermediate", "256", "--text-heads", "8",
                 "--text-kv-heads", "2", "--out", str(out)]) == 0
    text = json.loads((out / "config.json").read_text())["config"]["text"]
    assert (text["hidden_size"], text["num_layers"], text["intermediate_size"],
            text["num_heads"], text["num_kv_heads"]) == (128, 3, 256, 8, 2)
    original, wide = load_pretrained(EMBEDDED_MODEL_DIR), load_pretrained(out)
    assert wide.tokenizer.get_vocab() == original.tokenizer.get_vocab()
    a, b = original.model.state_dict(), wide.model.state_dict()
    tower = [k for k in a if k.startswith("vision_tower.")]
    assert tower and all(torch.equal(a[k], b[k]) for k in tower)
    assert b["language_model.model.embed_tokens.weight"].shape[1] == 128
    assert len(wide.model.language_model.model.layers) == 3

    # it trains: one step's loss is finite and reaches the new decoder
    samples, _ = read_processed(generated_root / "processed/scanqa_train_llava_style.json")
    store = SceneStore(generated_root, wide.processor, num_frames=2)
    items = [Video3DDataset(samples[:2], store, max_length=4096)[i] for i in range(2)]
    model = wide.model.train()
    loss = Video3DForTraining(model, wide.tokenizer.pad_token_id).forward(items).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert model.language_model.model.layers[2].mlp.down_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("shape, message", [
    ((100, 2, 192, 6, 2), "hidden_size 100 is not divisible by num_heads 6"),
    ((96, 2, 192, 4, 3), "num_heads 4 is not divisible by num_kv_heads 3"),
    ((96, 0, 192, 4, 2), "num_layers"),
])
def test_a_bad_shape_is_refused_with_what_is_wrong(shape, message):
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    with pytest.raises(ValueError, match=message):
        widened(loaded, dict(zip(SHAPE_FIELDS, shape)))
    with pytest.raises(ValueError, match="not decoder shape fields"):
        widened(loaded, {"vocab_size": 10})


def test_cli_refuses_a_bad_shape_before_writing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--text-hidden", "100",
              "--text-layers", "2", "--text-intermediate", "192", "--text-heads", "6",
              "--text-kv-heads", "2", "--out", str(tmp_path / "bad")])
    assert "not divisible by num_heads" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
