"""Block expansion (``video3d_train.grow``): a deepened checkpoint computes exactly what the
original does, and its inserted layers train."""

import json

import pytest
import torch

from video3d_ros.model.checkpoint import load_pretrained
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
from video3d_train.data import SceneStore, Video3DDataset, read_processed
from video3d_train.evaluate import evaluate
from video3d_train.grow import (
    grow_text_layers,
    layer_plan,
    main,
    resample_patch_positions,
    resize_tower_input,
)
from video3d_train.step import Video3DForTraining


def test_layer_plan_spreads_inserted_layers():
    assert layer_plan(2, 4) == [0, None, 1, None]
    assert layer_plan(2, 3) == [0, None, 1]
    assert layer_plan(2, 6) == [0, None, None, 1, None, None]
    assert layer_plan(3, 4) == [0, None, 1, 2]
    with pytest.raises(ValueError, match="must exceed the current 2"):
        layer_plan(2, 2)


def test_grown_checkpoint_answers_exactly_like_the_original(generated_root, tmp_path):
    assert main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--text-layers", "4",
                 "--out", str(tmp_path / "grown")]) == 0
    meta = json.loads((tmp_path / "grown" / "config.json").read_text())
    original = json.loads((EMBEDDED_MODEL_DIR / "config.json").read_text())
    assert meta["config"]["text"]["num_layers"] == 4
    assert meta["trained_frames"] == original["trained_frames"]
    files = ["processed/scanrefer_vg_val_llava_style.json", "processed/scanqa_val_llava_style.json"]
    for name, ckpt in (("original", EMBEDDED_MODEL_DIR), ("grown", tmp_path / "grown")):
        evaluate(ckpt, generated_root, files, tmp_path / name, device="cpu", limit=8,
                 progress=False, meteor=False)
    for task in ("scanrefer", "scanqa"):
        a = (tmp_path / "original" / f"{task}.jsonl").read_text().splitlines()
        b = (tmp_path / "grown" / f"{task}.jsonl").read_text().splitlines()
        assert a and len(a) == len(b)
        for ra, rb in zip(a, b):
            ra, rb = json.loads(ra), json.loads(rb)
            assert ra["prediction"] == rb["prediction"], ra["id"]
            if task == "scanrefer":
                assert ra["proposal_scores"] == pytest.approx(rb["proposal_scores"], abs=1e-4)


def test_inserted_layers_receive_gradients(generated_root):
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    model = grow_text_layers(loaded, 4).train()
    inserted = model.language_model.model.layers[1]
    assert torch.count_nonzero(inserted.self_attn.o_proj.weight) == 0
    assert torch.count_nonzero(inserted.mlp.down_proj.weight) == 0
    samples, _ = read_processed(generated_root / "processed/scanqa_train_llava_style.json")
    store = SceneStore(generated_root, loaded.processor, num_frames=2)
    items = [Video3DDataset(samples[:2], store, max_length=4096)[i] for i in range(2)]
    pad = loaded.tokenizer.pad_token_id
    Video3DForTraining(model, pad).forward(items).loss.backward()
    # the zero writes learn first (their inputs are the copied layer's, which are not zero)
    assert inserted.self_attn.o_proj.weight.grad.abs().sum() > 0
    assert inserted.mlp.down_proj.weight.grad.abs().sum() > 0


def test_shrinking_is_refused_with_the_counts(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--text-layers", "1",
              "--out", str(tmp_path / "x")])
    assert "must exceed the current 2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_resampled_positions_follow_a_smooth_field():
    """The embedding field is resampled, not re-indexed: a constant stays exact, and a field
    linear over the image keeps its values at the new patch centres away from the clamped
    border, up to the cubic kernel's (a = -0.75) error, a tenth of one old step here."""
    g, G = 8, 16
    centre = lambda n: (torch.arange(n, dtype=torch.float64) + 0.5) / n  # noqa: E731
    def field(n):
        y, x = torch.meshgrid(centre(n), centre(n), indexing="ij")
        return torch.stack([2 * x - 3 * y, x + 0.5], -1).reshape(n * n, 2)  # (n², 2)
    out = resample_patch_positions(field(g), G).reshape(G, G, 2)
    want = field(G).reshape(G, G, 2)
    inner = slice(3, G - 3)
    assert out.shape == want.shape
    step = 3 / g  # the largest change between neighbouring old patches
    torch.testing.assert_close(out[inner, inner], want[inner, inner], atol=0.1 * step, rtol=0)
    flat = torch.full((g * g, 3), 0.25, dtype=torch.float64)
    torch.testing.assert_close(resample_patch_positions(flat, G), torch.full((G * G, 3), 0.25,
                                                                             dtype=torch.float64))
    assert not torch.allclose(out, resample_patch_positions(field(g).flip(0), G).reshape(G, G, 2))
    with pytest.raises(ValueError, match="not a square patch grid"):
        resample_patch_positions(torch.zeros(10, 2), G)


def test_resized_tower_reads_larger_crops_and_trains(generated_root, tmp_path):
    out = tmp_path / "t224"
    assert main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--image-size-px", "224",
                 "--out", str(out)]) == 0
    original = load_pretrained(EMBEDDED_MODEL_DIR)
    loaded = load_pretrained(out)
    assert loaded.model.config.vision.image_size_px == 224
    assert loaded.model.config.tokens_per_frame == 8 * 9  # 16 × 16 patches pooled 2 × 2, newlines
    table = loaded.model.state_dict()["vision_tower.embeddings.position_embedding.weight"]
    assert tuple(table.shape) == (256, 64)
    before, after = original.model.state_dict(), loaded.model.state_dict()
    kept = [k for k in before if "position_embedding" not in k]
    assert all(torch.equal(before[k], after[k]) for k in kept)  # nothing else changed
    samples, _ = read_processed(generated_root / "processed/scanqa_train_llava_style.json")
    store = SceneStore(generated_root, loaded.processor, num_frames=2)
    item = Video3DDataset(samples[:1], store, max_length=4096)[0]
    assert tuple(item.pixel_values.shape[-2:]) == (224, 224)
    model = loaded.model.train()
    Video3DForTraining(model, loaded.tokenizer.pad_token_id).forward([item]).loss.backward()
    assert model.vision_tower.embeddings.position_embedding.weight.grad.abs().sum() > 0


def test_resize_tower_input_leaves_the_source_model_alone():
    """The resized model owns its tensors: training it cannot change the model it came from."""
    source = load_pretrained(EMBEDDED_MODEL_DIR)
    table = source.model.state_dict()["vision_tower.embeddings.position_embedding.weight"].clone()
    resized = resize_tower_input(source, 224)
    assert torch.equal(source.model.state_dict()["vision_tower.embeddings.position_embedding.weight"], table)
    source_storage = {p.data_ptr() for p in source.model.parameters()}
    assert not source_storage & {p.data_ptr() for p in resized.parameters()}


@pytest.mark.parametrize("size, message", [(200, "not a multiple of the tower's 14-px patches"),
                                            (112, "already reads 112-px crops")])
def test_resize_tower_input_rejects_bad_sizes(size, message):
    with pytest.raises(ValueError, match=message):
        resize_tower_input(load_pretrained(EMBEDDED_MODEL_DIR), size)


def test_grow_needs_something_to_do(capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--out", "unused"])
    assert "nothing to grow" in capsys.readouterr().err


def test_grow_deeper_and_larger_at_once(tmp_path, capsys):
    assert main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--text-layers", "3",
                 "--image-size-px", "168", "--out", str(tmp_path / "both")]) == 0
    assert "2 → 3 decoder layers, tower input 112 → 168 px" in capsys.readouterr().out
    config = load_pretrained(tmp_path / "both").model.config
    assert (config.text.num_layers, config.vision.image_size_px) == (3, 168)
