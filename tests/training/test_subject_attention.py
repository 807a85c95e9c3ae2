"""Subject-attention supervision (our option): the generator names the objects a ScanQA
question is about, the converter and reader carry them, the loss is −log of one layer's
attention mass on them, and training moves that attention there."""

import json
import math

import pytest
import torch

from video3d_ros.model.checkpoint import load_pretrained
from video3d_ros.model.config import NewlinePosition
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
from video3d_ros.scenes.annotations import scanqa_records
from video3d_ros.scenes.layout import generate_scene
from video3d_train.data import DataError, SceneStore, Video3DDataset, object_token_cells, read_processed
from video3d_train.recipes import load_recipe
from video3d_train.step import Video3DForTraining, subject_attention_loss


def test_generated_questions_name_their_subjects():
    """Every ScanQA question carries the objects it names: the object asked about (for
    "what is next to X?" X, not the answer), every object of a counted category."""
    kinds = set()
    for seed in range(6):
        scene = generate_scene(seed, f"scene{seed:04d}_00")
        g = scanqa_records(scene, "train", n_per_scene=10**6)
        for rec, claim in zip(g.records, g.claims):
            subject = rec["subject_object_ids"]
            kinds.add(claim["kind"])
            if claim["kind"] == "count":
                assert subject == rec["object_ids"]
                assert all(scene.objects[i].category.value == claim["category"] for i in subject)
                continue
            named = claim["support_id"] if claim["kind"] == "what_on" else claim["object_id"]
            assert subject == [named]
            assert scene.objects[named].category.value in rec["question"]
            if claim["kind"] == "nearest":  # the answer is another object
                assert rec["object_ids"] != subject
    assert kinds == {"colour", "where_on", "what_on", "nearest", "count"}


def test_processed_samples_carry_the_subjects_and_bad_ones_name_the_sample(generated_root, tmp_path):
    path = generated_root / "processed/scanqa_train_llava_style.json"
    samples, _ = read_processed(path)
    assert samples and all(s.subject_ids for s in samples)
    raw = json.loads(path.read_text())
    assert all(r["metadata"]["subject_object_id"] == s.subject_ids for r, s in zip(raw, samples))
    raw[1]["metadata"]["subject_object_id"] = ["the desk"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=rf"bad.json.*{raw[1]['id']}.*bad metadata.subject_object_id"):
        read_processed(bad)


class _Item:
    def __init__(self, subject, answer=None):
        self.subject_cells, self.answer_cells = subject, answer


def test_loss_is_minus_log_of_the_mass_on_the_subject():
    video_id, t = 9, 12
    ids = torch.tensor([[1] + [video_id] * 6 + [4, 5, 6, 7, 8]])  # 1 frame of G=2: 6 tokens
    labels = torch.full((1, t), -100)
    labels[0, 9:] = torch.tensor([6, 7, 8])  # the first answer token is predicted at 8
    subject = torch.tensor([[[True, False], [False, False]]])  # token 1 (position 1)
    answer = torch.tensor([[[False, False], [False, True]]])  # token 5 (position 6)
    attn = torch.zeros(1, 2, t, t)
    attn[0, 0, 8, 1], attn[0, 0, 8, 6] = 0.2, 0.7
    attn[0, 1, 8, 1] = 0.6
    loss, n = subject_attention_loss(attn, [_Item(subject, answer)], ids, labels, video_id,
                                     NewlinePosition.GRID, heads=1)
    assert n == 1 and float(loss) == pytest.approx(-math.log(0.2 + 1e-6))  # not the answer's 0.7
    loss2, _ = subject_attention_loss(attn, [_Item(subject)], ids, labels, video_id,
                                      NewlinePosition.GRID, heads=2)
    assert float(loss2) == pytest.approx((-math.log(0.2 + 1e-6) - math.log(0.6 + 1e-6)) / 2)
    # no subject: left out even when the answer has cells
    none, n0 = subject_attention_loss(attn, [_Item(None, answer)], ids, labels, video_id,
                                      NewlinePosition.GRID, heads=1)
    assert n0 == 0 and float(none) == 0.0


def test_training_moves_the_first_layers_attention_onto_the_subject(generated_root, fit):
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    model = loaded.model.train()
    samples, _ = read_processed(generated_root / "processed/scanqa_train_llava_style.json")
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    ds = Video3DDataset(samples, store, max_length=4096)
    items = [it for it in (ds[i] for i in range(len(ds))) if it.subject_cells is not None][:6]
    assert len(items) == 6
    for it in items:
        want = object_token_cells(it.sample.subject_ids, store.load(it.sample.scene_id),
                                  loaded.processor.config.grid.pooled_per_side)
        assert torch.equal(it.subject_cells, want)

    off = Video3DForTraining(model, loaded.tokenizer.pad_token_id)
    res = off(items)
    assert res.n_subject == 0 and float(res.subject_loss) == 0.0
    assert model.language_model.config._attn_implementation == "sdpa"

    step = Video3DForTraining(model, loaded.tokenizer.pad_token_id, subject_attention_loss_scale=2.0)
    first, last = fit(step, items, 15)
    assert first.n_subject == len(items) and first.n_attention == 0
    assert float(first.loss) == pytest.approx(float(first.lm_loss) + 2.0 * float(first.subject_loss),
                                              rel=1e-5)
    assert float(last.subject_loss) < 0.5 * float(first.subject_loss)
    assert float(last.lm_loss) < float(first.lm_loss) + 0.5


def test_recipe_and_step_validate_the_options():
    r = load_recipe("tiny_generated")
    assert r.subject_attention_loss_scale == 0.0 and r.subject_attention_layer == 0
    assert r.with_overrides(["subject_attention_loss_scale=1"]).subject_attention_loss_scale == 1.0
    with pytest.raises(ValueError, match="subject_attention_loss_scale must be ≥ 0"):
        r.with_overrides(["subject_attention_loss_scale=-1"])
    with pytest.raises(ValueError, match="subject_attention_heads must be a positive"):
        r.with_overrides(["subject_attention_heads=0"])
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    with pytest.raises(ValueError, match=r"subject_attention_layer must be in \[-2, 1\]"):
        Video3DForTraining(loaded.model, 0, subject_attention_loss_scale=1.0, subject_attention_layer=2)
    with pytest.raises(ValueError, match=r"subject_attention_heads must be in \[1, 4\]"):
        Video3DForTraining(loaded.model, 0, subject_attention_loss_scale=1.0, subject_attention_heads=5)


def test_attention_report_on_the_subject(generated_root, tmp_path):
    """``video3d-attention --subject-layer L``: layer L's attention on the question's objects;
    on a colour or count question they are the answer's, on the others another object."""
    from video3d_train.attention import answer_attention, load_for_diagnostics
    from video3d_train.attention import main as attention_main

    out = tmp_path / "attention.json"
    args = ["--checkpoint", str(EMBEDDED_MODEL_DIR), "--data-root", str(generated_root), "--file",
            "processed/scanqa_train_llava_style.json", "--limit", "12", "--num-frames", "4",
            "--out", str(out)]
    assert attention_main(args + ["--subject-layer", "0"]) == 0
    res = json.loads(out.read_text())
    first = res["subject_attention_layer0"]
    assert first["questions"] == 12 and len(first["mass_on_objects_per_head"]) == 4
    assert all(0 <= m <= v + 1e-4 for m, v in zip(first["mass_on_objects_per_head"],
                                                  first["mass_on_video_per_head"]))
    loaded, store = load_for_diagnostics(EMBEDDED_MODEL_DIR, generated_root, 4)
    file = "processed/scanqa_train_llava_style.json"
    last_on_subject = answer_attention(loaded, store, file, 12, layer=-1, subject=True, progress=False)
    # the last layer on the question's objects differs from it on the answer's (some
    # questions' answers are other objects), and from the first layer on the same objects
    assert last_on_subject["mass_on_objects_per_head"] != res["mass_on_objects_per_head"]
    assert last_on_subject["mass_on_objects_per_head"] != first["mass_on_objects_per_head"]
