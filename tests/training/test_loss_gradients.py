"""video3d-loss-gradients: each loss term's gradient, on generated rooms with the embedded model."""

import json

import pytest
import torch

from video3d_ros.model.checkpoint import load_pretrained
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
from video3d_train.data import SceneStore, Video3DDataset, read_processed
from video3d_train.loss_gradients import TERMS, term_gradients
from video3d_train.loss_gradients import main as loss_gradients_main
from video3d_train.recipes import ANSWER_LOSS_TASKS


def _by_weight(model, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            out[name] = flat[i:i + p.numel()]
            i += p.numel()
    assert i == flat.numel()
    return out


def _zero(term: torch.Tensor, paper: torch.Tensor) -> bool:
    """Zero up to float rounding, next to the paper loss's gradient on the same weight."""
    return float(term.abs().max()) <= 1e-4 * float(paper.abs().max())


def test_each_terms_gradient_reaches_only_the_weights_it_can(generated_root):
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    loaded.model.train()
    samples, _ = read_processed(generated_root / "processed/scanqa_train_llava_style.json")
    ds = Video3DDataset(samples, SceneStore(generated_root, loaded.processor, 4), 4096,
                        ANSWER_LOSS_TASKS)
    items = [it for it in (ds[i] for i in range(len(ds))) if it.answer_cells is not None][:4]
    assert len(items) == 4
    grads, n_answer = term_gradients(loaded, items)
    assert set(grads) == set(TERMS) and n_answer == 4
    last = f"language_model.model.layers.{loaded.model.config.text.num_layers - 1}."
    att, read, paper = (_by_weight(loaded.model, grads[k])
                        for k in ("attention", "readout", "paper"))
    # the attention term moves the weights below the last layer's attention pattern and its
    # queries and keys, never what the layer does with what it attends to …
    for name in (last + "self_attn.v_proj.weight", last + "self_attn.o_proj.weight",
                 last + "mlp.down_proj.weight", "language_model.lm_head.weight"):
        assert _zero(att[name], paper[name]), name
    assert not _zero(att[last + "self_attn.q_proj.weight"], paper[last + "self_attn.q_proj.weight"])
    # … the readout term reads through a detached final norm and LM head and skips the MLP
    for name in ("language_model.lm_head.weight", "language_model.model.norm.weight",
                 last + "mlp.down_proj.weight"):
        assert _zero(read[name], paper[name]), name
    assert not _zero(read[last + "self_attn.o_proj.weight"], paper[last + "self_attn.o_proj.weight"])
    # the paper's loss reaches the LM head
    assert float(paper["language_model.lm_head.weight"].norm()) > 0


def test_report_on_a_mix_of_generated_rooms(generated_root, tmp_path, capsys):
    out = tmp_path / "g.json"
    assert loss_gradients_main([
        "--checkpoint", str(EMBEDDED_MODEL_DIR), "--data-root", str(generated_root),
        "--files", "processed/scanqa_train_llava_style.json", "processed/sqa3d_train_llava_style.json",
        "processed/scanrefer_vg_train_llava_style.json", "--batches", "2", "--batch-size", "8",
        "--num-frames", "4", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == res
    assert len(res["per_batch"]) == 2 and res["batches_with_answer_samples"] >= 1
    assert all(res["mean_norm"][k] > 0 for k in TERMS)
    assert all(-1 <= c <= 1 for c in res["mean_cosine_with_paper"].values())
    for row in res["per_batch"]:  # the sum's norm is bounded by the terms' norms
        assert row["total_norm"] <= sum(row["norm"].values()) * (1 + 1e-5)


def test_a_mix_without_questions_is_refused_with_the_reason(generated_root):
    with pytest.raises(ValueError, match="no sampled batch has a sample the answer losses apply to"):
        loss_gradients_main([
            "--checkpoint", str(EMBEDDED_MODEL_DIR), "--data-root", str(generated_root),
            "--files", "processed/scanrefer_vg_train_llava_style.json", "--batches", "1",
            "--batch-size", "4", "--num-frames", "4"])
    with pytest.raises(ValueError, match="need 4000 samples"):
        loss_gradients_main([
            "--checkpoint", str(EMBEDDED_MODEL_DIR), "--data-root", str(generated_root),
            "--files", "processed/scanqa_train_llava_style.json", "--batches", "1000",
            "--batch-size", "4", "--num-frames", "4"])
