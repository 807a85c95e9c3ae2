"""Answer-attention and answer-readout supervision (our options): targets, losses by hand,
and that they train the answer position to look at the objects ScanQA names and to read
what it finds."""

import json
import math

import numpy as np
import pytest
import torch

from video3d_ros.model.checkpoint import load_pretrained
from video3d_ros.model.config import NewlinePosition
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
from video3d_train.attention import (
    READOUT_FEATURES,
    ProbeLabel,
    ReadoutQuestions,
    answer_readout,
    linear_probe_accuracy,
    load_for_diagnostics,
    probe_features,
    token_features,
    token_labels,
    token_probe,
)
from video3d_train.attention import main as attention_main
from video3d_train.data import (
    SceneObjects,
    SceneStore,
    SceneTensors,
    Video3DDataset,
    answer_token_cells,
    read_processed,
)
from video3d_train.metrics import Task, scanqa_question_kind
from video3d_train.recipes import ReadoutSource, load_recipe
from video3d_train.step import (
    Video3DForTraining,
    answer_attention_loss,
    ObjectValues,
    answer_readout_loss,
    video_token_targets,
)


def _scene(object_ids: list[int], masks: np.ndarray) -> SceneTensors:
    n, f = masks.shape[:2]
    return SceneTensors(pixel_values=torch.zeros(f, 3, 4, 4), token_points=None,
                        xyz_m=np.zeros((f, 4, 4, 3)), valid=np.zeros((f, 4, 4), bool),
                        objects=SceneObjects(np.asarray(object_ids), np.zeros((n, 6))),
                        object_masks=masks)


def _sample(generated_root, object_ids):
    samples, _ = read_processed(generated_root / "processed/scanqa_train_llava_style.json")
    s = samples[0]
    s.object_ids = object_ids
    return s


def test_answer_cells_or_the_cells_of_each_pooled_token(generated_root):
    masks = np.zeros((2, 2, 8, 8), bool)  # objects 5 and 9, 2 frames, 8×8 patch cells
    masks[0, 1, 7, 6] = True  # object 5 in frame 1, bottom-right 2×2 block
    masks[1, 0, 0, 3] = True  # object 9 in frame 0, top row, second pooled column
    scene = _scene([5, 9], masks)
    cells = answer_token_cells(_sample(generated_root, [5]), scene, pooled_per_side=4)
    want = np.zeros((2, 4, 4), bool)
    want[1, 3, 3] = True
    np.testing.assert_array_equal(cells.numpy(), want)
    both = answer_token_cells(_sample(generated_root, [5, 9]), scene, pooled_per_side=4)
    want[0, 0, 1] = True
    np.testing.assert_array_equal(both.numpy(), want)
    # an id the scene does not have, or an object in no frame: no target
    assert answer_token_cells(_sample(generated_root, [77]), scene, 4) is None
    masks[1] = False
    assert answer_token_cells(_sample(generated_root, [9]), _scene([5, 9], masks), 4) is None


def test_answer_cells_on_the_7b_grid(generated_root):
    """27 patch cells a side onto 14 pooled tokens (the paper's 378-px frames): cell i → ⌊14i/27⌋."""
    masks = np.zeros((1, 1, 27, 27), bool)
    masks[0, 0, 26, 1] = True
    cells = answer_token_cells(_sample(generated_root, [3]), _scene([3], masks), 14)
    assert cells.shape == (1, 14, 14)
    assert cells.nonzero().tolist() == [[0, 13, 0]]
    with pytest.raises(ValueError, match="cannot pool a 4-cell"):
        answer_token_cells(_sample(generated_root, [3]), _scene([3], np.ones((1, 1, 4, 4), bool)), 8)


def test_targets_follow_the_token_layout():
    cells = torch.tensor([[[False, True], [False, False]],
                          [[False, False], [True, False]]])  # (F=2, G=2, G=2)
    # each row of a frame is followed by its newline token
    assert video_token_targets(cells, NewlinePosition.GRID).tolist() == [
        False, True, False, False, False, False,
        False, False, False, True, False, False]
    assert video_token_targets(cells, NewlinePosition.NONE).tolist() == [
        False, True, False, False, False, False, True, False]


class _Item:  # only what answer_attention_loss reads
    def __init__(self, cells):
        self.answer_cells = cells
        self.sample = type("S", (), {"file": "f.json", "sample_id": "q0"})()


def test_loss_is_minus_log_of_the_mass_on_the_targets():
    video_id, t = 9, 12
    ids = torch.tensor([[1] + [video_id] * 6 + [4, 5, 6, 7, 8]])  # 1 frame of G=2: 6 tokens
    labels = torch.full((1, t), -100)
    labels[0, 9:] = torch.tensor([6, 7, 8])  # the first answer token is at 9: predicted at 8
    cells = torch.tensor([[[False, True], [True, False]]])  # tokens 2 and 4 (positions 2, 4)
    attn = torch.zeros(1, 2, t, t)
    attn[0, 0, 8, 2], attn[0, 0, 8, 4], attn[0, 0, 8, 3] = 0.1, 0.15, 0.7  # 3: not a target
    attn[0, 1, 8, 2] = 0.5
    attn[0, :, 7, 2] = 1.0  # another position: ignored
    loss, n = answer_attention_loss(attn, [_Item(cells)], ids, labels, video_id,
                                    NewlinePosition.GRID, heads=1)
    assert n == 1
    assert float(loss) == pytest.approx(-math.log(0.25 + 1e-6))
    loss2, _ = answer_attention_loss(attn, [_Item(cells)], ids, labels, video_id,
                                     NewlinePosition.GRID, heads=2)
    assert float(loss2) == pytest.approx((-math.log(0.25 + 1e-6) - math.log(0.5 + 1e-6)) / 2)
    none, n0 = answer_attention_loss(attn, [_Item(None)], ids, labels, video_id,
                                     NewlinePosition.GRID, heads=1)
    assert n0 == 0 and float(none) == 0.0
    # named objects in no sampled token: left out of the loss and of its count
    unseen = torch.zeros_like(cells)
    both, n1 = answer_attention_loss(attn.repeat(2, 1, 1, 1), [_Item(cells), _Item(unseen)],
                                     ids.repeat(2, 1), labels.repeat(2, 1), video_id,
                                     NewlinePosition.GRID, heads=1)
    assert n1 == 1 and float(both) == pytest.approx(-math.log(0.25 + 1e-6))
    with pytest.raises(ValueError, match=r"f.json: sample 'q0': 6 video tokens but 4"):
        answer_attention_loss(attn, [_Item(cells)], ids, labels, video_id,
                              NewlinePosition.NONE, heads=1)


def _scanqa_items(root, processor, n):
    samples, _ = read_processed(root / "processed/scanqa_train_llava_style.json")
    assert all(s.object_ids for s in samples)  # converted with the annotation's object_ids
    store = SceneStore(root, processor, num_frames=4)
    ds = Video3DDataset(samples, store, max_length=4096)
    items = [it for it in (ds[i] for i in range(len(ds))) if it.answer_cells is not None]
    assert items, "no ScanQA question sees its objects in 4 frames"
    return items[:n]


def _fit(step: Video3DForTraining, items, params, steps: int = 15):
    """``steps`` Adam steps of ``step``'s loss on ``items``; → the step output after them."""
    opt = torch.optim.Adam(params, lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        step(items).loss.backward()
        opt.step()
    return step(items)


def test_training_moves_the_answer_attention_onto_the_named_objects(generated_root):
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    model = loaded.model.train()
    pad = loaded.tokenizer.pad_token_id
    items = _scanqa_items(generated_root, loaded.processor, 6)
    assert all(it.sample.task is Task.SCANQA for it in items)

    off = Video3DForTraining(model, pad)  # default: the paper's losses only, sdpa kept
    res = off(items)
    assert res.n_attention == 0 and float(res.attention_loss) == 0.0
    assert model.language_model.config._attn_implementation == "sdpa"

    step = Video3DForTraining(model, pad, answer_attention_loss_scale=2.0)
    first = step(items)
    assert first.n_attention == len(items)
    assert float(first.loss) == pytest.approx(
        float(first.lm_loss) + float(first.attention_loss) * 2.0, rel=1e-5)
    last = _fit(step, items, model.parameters())
    # the attention mass on the objects' tokens rises (−log mass falls) …
    assert float(last.attention_loss) < 0.5 * float(first.attention_loss)
    # … without giving up the answers
    assert float(last.lm_loss) < float(first.lm_loss) + 0.5


def test_sqa3d_questions_get_answer_targets_when_the_recipe_names_sqa3d(generated_root):
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    samples, _ = read_processed(generated_root / "processed/sqa3d_train_llava_style.json")
    named = [s for s in samples if s.object_ids]
    assert named and len(named) < len(samples)  # "how many … in front of me" names no object
    named = named[:24]
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    default = Video3DDataset(named, store, max_length=4096)  # ScanQA only: the losses' start
    assert all(default[i].answer_cells is None for i in range(len(named)))
    both = Video3DDataset(named, store, max_length=4096, answer_tasks=[Task.SCANQA, Task.SQA3D])
    items = [it for it in (both[i] for i in range(len(named))) if it.answer_cells is not None]
    assert items, "no named object of these SQA3D questions is in 4 frames"
    for it in items:
        scene = store.load(it.sample.scene_id)
        want = answer_token_cells(it.sample, scene, loaded.processor.config.grid.pooled_per_side)
        assert torch.equal(it.answer_cells, want)
    step = Video3DForTraining(loaded.model, loaded.tokenizer.pad_token_id,
                              answer_attention_loss_scale=1.0, answer_readout_loss_scale=1.0)
    out = step(items[:4])
    assert out.n_attention == len(items[:4]) and float(out.attention_loss) > 0
    assert out.n_readout >= 1 and float(out.readout_loss) > 0


def test_readout_loss_is_the_cross_entropy_of_the_heads_logit_lens():
    torch.manual_seed(0)
    b, t, heads, hd, d, v = 3, 6, 4, 2, 8, 11
    heads_out = torch.randn(b, t, heads * hd, requires_grad=True)
    o_w = torch.randn(d, heads * hd, requires_grad=True)
    norm_w = (torch.rand(d) + 0.5).requires_grad_()
    lm_w = torch.randn(v, d, requires_grad=True)
    labels = torch.full((b, t), -100)
    labels[0, 3:] = torch.tensor([7, 2, 1])  # first answer token 7, predicted at position 2
    labels[1, 4:] = torch.tensor([5, 1])  # in view, but …
    labels[2, 5] = 9
    cells = torch.tensor([[[True]]])
    items = [_Item(cells), _Item(torch.tensor([[[False]]])), _Item(cells)]  # … 1: nothing seen
    loss, n = answer_readout_loss(heads_out, o_w, norm_w, 1e-6, lm_w, items, labels,
                                  heads=2, head_dim=hd)
    assert n == 2

    def by_hand(row, token):  # only heads 0 and 1 (the first 2·hd inputs of o_proj)
        x = o_w[:, :2 * hd] @ row[:2 * hd]
        x = x / torch.sqrt((x ** 2).mean() + 1e-6) * norm_w
        return -torch.log_softmax(lm_w @ x, -1)[token]

    want = (by_hand(heads_out[0, 2], 7) + by_hand(heads_out[2, 4], 9)) / 2
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    loss.backward()
    # the heads and their output projection learn; the final norm and the LM head do not
    assert float(o_w.grad[:, :2 * hd].abs().sum()) > 0 and float(o_w.grad[:, 2 * hd:].abs().sum()) == 0
    assert norm_w.grad is None and lm_w.grad is None
    assert float(heads_out.grad[1].abs().sum()) == 0  # the item without a target
    none, n0 = answer_readout_loss(heads_out, o_w, norm_w, 1e-6, lm_w, [_Item(None)] * 3,
                                   labels, heads=1, head_dim=hd)
    assert n0 == 0 and float(none) == 0.0
    with pytest.raises(ValueError, match=r"o_proj weight \(4, 8\) does not match"):
        answer_readout_loss(heads_out, o_w[:4], norm_w, 1e-6, lm_w, items, labels, 1, hd)


def test_readout_of_the_objects_reads_each_heads_values_at_the_named_objects():
    """ReadoutSource.OBJECTS: the rows are the heads' values averaged over the video tokens
    that see the objects (grouped-query attention: head h reads key/value head h // groups)."""
    torch.manual_seed(1)
    video_id, hd = 9, 2
    ids = torch.tensor([[1] + [video_id] * 6 + [4, 5, 6, 7, 8]])  # 1 frame of G=2: 6 tokens
    labels = torch.full((1, 12), -100)
    labels[0, 9:] = torch.tensor([6, 7, 8])
    cells = torch.tensor([[[False, True], [True, False]]])  # video tokens at positions 2 and 4
    values = torch.randn(1, 12, 2 * hd)  # 2 key/value heads
    objects = ObjectValues(values, ids, video_id, NewlinePosition.GRID, kv_groups=2)
    kv0, kv1 = (values[0, [2, 4], :hd].mean(0), values[0, [2, 4], hd:].mean(0))
    torch.testing.assert_close(objects.mean_at_objects(0, _Item(cells), 1, hd), kv0)
    torch.testing.assert_close(objects.mean_at_objects(0, _Item(cells), 3, hd),
                               torch.cat([kv0, kv0, kv1]))
    o_w, norm_w, lm_w = torch.randn(5, 4 * hd), torch.ones(5), torch.randn(11, 5)
    heads_out = torch.randn(1, 12, 4 * hd)
    got, n = answer_readout_loss(heads_out, o_w, norm_w, 1e-6, lm_w, [_Item(cells)], labels,
                                 heads=1, head_dim=hd, objects=objects)
    x = o_w[:, :hd] @ kv0
    want = -torch.log_softmax(lm_w @ (x / torch.sqrt((x ** 2).mean() + 1e-6)), -1)[6]
    assert n == 1 and float(got) == pytest.approx(float(want), rel=1e-5)
    with pytest.raises(ValueError, match=r"f.json: sample 'q0': 6 video tokens but 4"):
        ObjectValues(values, ids, video_id, NewlinePosition.NONE, 2).mean_at_objects(
            0, _Item(cells), 1, hd)


def test_training_makes_the_heads_output_predict_the_first_answer_token(generated_root):
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    model = loaded.model.train()
    items = _scanqa_items(generated_root, loaded.processor, 6)
    items = [it for it in items if bool(it.answer_cells.any())]
    step = Video3DForTraining(model, loaded.tokenizer.pad_token_id, answer_readout_loss_scale=0.5)
    assert model.language_model.config._attn_implementation == "sdpa"  # needs no weights
    first = step(items)
    assert first.n_readout == len(items) and first.n_attention == 0
    assert float(first.loss) == pytest.approx(
        float(first.lm_loss) + 0.5 * float(first.readout_loss), rel=1e-5)
    lm_head = model.language_model.lm_head.weight.detach().clone()
    # the shipped weights were trained with this loss (readout loss 1.56 here), so halving
    # it takes 30 steps (15: 0.86; 30: 0.66); from weights trained without it, 15 did
    last = _fit(step, items, [p for n, p in model.named_parameters() if "lm_head" not in n],
                steps=30)
    assert float(last.readout_loss) < 0.5 * float(first.readout_loss)
    assert float(last.lm_loss) < float(first.lm_loss) + 0.5
    assert torch.equal(model.language_model.lm_head.weight, lm_head)
    # the hook that read the heads' outputs is gone after each step
    o_proj = model.language_model.model.layers[-1].self_attn.o_proj
    assert not o_proj._forward_pre_hooks
    # reading the objects' values instead: another loss, which training lowers too
    step = Video3DForTraining(model, loaded.tokenizer.pad_token_id, answer_readout_loss_scale=0.5,
                              answer_readout_source=ReadoutSource.OBJECTS)
    first = step(items)
    assert first.n_readout == len(items) and float(first.readout_loss) != pytest.approx(
        float(last.readout_loss))
    last = _fit(step, items, [p for n, p in model.named_parameters() if "lm_head" not in n])
    assert float(last.readout_loss) < 0.5 * float(first.readout_loss)
    assert not model.language_model.model.layers[-1].self_attn.v_proj._forward_hooks


def test_recipe_validates_the_option():
    r = load_recipe("tiny_generated")
    assert r.answer_attention_loss_scale == 0.0  # off unless asked: the paper's recipe
    with pytest.raises(ValueError, match="answer_attention_loss_scale must be ≥ 0"):
        r.with_overrides(["answer_attention_loss_scale=-1"])
    with pytest.raises(ValueError, match="answer_attention_heads must be a positive"):
        r.with_overrides(["answer_attention_heads=0"])
    assert r.answer_readout_loss_scale == 0.0
    assert r.with_overrides(["answer_readout_loss_scale=2"]).answer_readout_loss_scale == 2.0
    with pytest.raises(ValueError, match="answer_readout_loss_scale must be ≥ 0"):
        r.with_overrides(["answer_readout_loss_scale=-0.5"])
    assert r.answer_readout_source is ReadoutSource.ATTENDED
    assert (r.with_overrides(["answer_readout_source=objects"]).answer_readout_source
            is ReadoutSource.OBJECTS)
    with pytest.raises(ValueError, match="'values' is not a valid ReadoutSource"):
        r.with_overrides(["answer_readout_source=values"])
    assert r.answer_loss_tasks == [Task.SCANQA]
    assert (r.with_overrides(["answer_loss_tasks=[scanqa, SQA3D]"]).answer_loss_tasks
            == [Task.SCANQA, Task.SQA3D])
    assert r.with_overrides(["answer_loss_tasks=[sqa3d]"]).to_dict()["answer_loss_tasks"] == ["sqa3d"]
    for bad in ("[scan2cap]", "[]"):
        with pytest.raises(ValueError, match="answer_loss_tasks must name one or more of"):
            r.with_overrides([f"answer_loss_tasks={bad}"])
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    for option in ("answer_attention_loss_scale", "answer_readout_loss_scale"):
        with pytest.raises(ValueError, match=r"answer_attention_heads must be in \[1, 4\]"):
            Video3DForTraining(loaded.model, 0, answer_attention_heads=5, **{option: 1.0})


def test_attention_report_on_generated_rooms(generated_root, tmp_path, capsys):
    out = tmp_path / "attention.json"
    assert attention_main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--data-root",
                           str(generated_root), "--file",
                           "processed/scanqa_train_llava_style.json", "--limit", "12",
                           "--num-frames", "4", "--out", str(out), "--probe", "colour",
                           "--category-probe", "--probe", "category",
                           "--probe-train-rooms", "2", "--probe-val-rooms", "1"]) == 0
    res = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == res
    # each label probed once, at every decoder layer's input
    for label in ("category", "colour"):
        probe = res[f"token_{label}_probe"]
        assert probe["label"] == label and set(probe["accuracy"]) == set(probe_features(2))
    assert res["token_colour_probe"]["classes"] != res["token_category_probe"]["classes"]
    assert res["questions"] == 12 and 0 <= res["objects_not_in_view"] < 12
    heads = load_pretrained(EMBEDDED_MODEL_DIR).model.config.text.num_heads
    assert len(res["mass_on_objects_per_head"]) == len(res["mass_on_video_per_head"]) == heads
    for on_obj, on_video in zip(res["mass_on_objects_per_head"], res["mass_on_video_per_head"]):
        assert 0 <= on_obj <= on_video + 1e-4 <= 1 + 1e-4
    assert 0 < res["objects_share_of_video_tokens"] < 1
    assert len(res["argmax_on_objects_per_head"]) == heads
    assert all(0 <= x <= 1 for x in res["argmax_on_objects_per_head"])
    # the generated SQA3D questions name their objects too
    assert attention_main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--data-root",
                           str(generated_root), "--file", "processed/sqa3d_val_llava_style.json",
                           "--num-frames", "4", "--out", str(out)]) == 0
    sqa = json.loads(out.read_text())
    assert sqa["objects_not_in_view"] < sqa["questions"]
    assert len(sqa["mass_on_objects_per_head"]) == heads


@pytest.fixture(scope="module")
def seeing_rooms(tmp_path_factory, make_rooms):
    """Rooms whose 8 frames show the objects of most colour questions (the shared
    64×48, 4-frame fixture shows none of them)."""
    return make_rooms(tmp_path_factory.mktemp("seeing"), num_scenes=4, seed=3, val_fraction=0.25,
                      width=96, height=72, n_frames=80, frame_stride=10)


def test_colour_readout_on_generated_rooms(seeing_rooms):
    generated_root = seeing_rooms
    loaded, store = load_for_diagnostics(EMBEDDED_MODEL_DIR, generated_root, num_frames=8)
    file = "processed/scanqa_train_llava_style.json"
    res = answer_readout(loaded, store, file, test_every=2, progress=False)
    colour_questions = {s.sample_id.rsplit("_", 1)[0] for s in read_processed(generated_root / file)[0]
                        if "color" in s.prompt.lower() or "colour" in s.prompt.lower()}
    assert 0 < res["test_questions"] < res["questions"] <= len(colour_questions)
    assert set(res["accuracy"]) == set(READOUT_FEATURES)
    assert all(0 <= a <= 100 for a in res["accuracy"].values())
    colours = {o["colour"] for p in (generated_root / "scannet/scans").glob("*/*_objects.json")
               for o in json.loads(p.read_text())["objects"]}
    assert set(res["classes"]) <= colours
    # its hooks are removed afterwards (transformers keeps hooks of its own)
    assert not [h for m in loaded.model.modules() for h in m._forward_hooks.values()
                if "answer_readout" in getattr(h, "__qualname__", "")]
    with pytest.raises(ValueError, match="colour readout .* at least two rooms"):
        answer_readout(loaded, store, file, test_every=1, progress=False)


def test_relation_readout_probes_the_answer_objects_category(seeing_rooms):
    """Relation questions ("what is next to X") name their answer object; the label is
    its category, whichever of the answer's forms ("a brown window") the sample holds."""
    loaded, store = load_for_diagnostics(EMBEDDED_MODEL_DIR, seeing_rooms, num_frames=8)
    file = "processed/scanqa_train_llava_style.json"
    res = answer_readout(loaded, store, file, test_every=2, progress=False,
                         questions=ReadoutQuestions.RELATION)
    relation = {s.sample_id.rsplit("_", 1)[0] for s in read_processed(seeing_rooms / file)[0]
                if scanqa_question_kind(s.prompt) == "relation"}
    assert 0 < res["test_questions"] < res["questions"] <= len(relation)
    categories = {o["object_name"] for p in (seeing_rooms / "scannet/scans").glob("*/*_objects.json")
                  for o in json.loads(p.read_text())["objects"]}
    assert set(res["classes"]) <= categories and set(res["accuracy"]) == set(READOUT_FEATURES)


def test_linear_probe_finds_a_linear_label_and_not_a_random_one():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = (x[:, 2] > 0).long() + 2 * (x[:, 5] > 0).long()  # 4 classes, linear in the features
    assert linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:], 4) > 80
    noise = torch.randint(0, 4, (400,), generator=g)
    assert linear_probe_accuracy(x[:300], noise[:300], x[300:], noise[300:], 4) < 45


def test_probe_features_name_every_layer_input():
    assert probe_features(2) == ("pooled", "decoder_input", "layer1_output")
    assert probe_features(4)[-1] == "layer3_output" and len(probe_features(4)) == 5
    assert ProbeLabel.from_name("color") is ProbeLabel.COLOUR
    with pytest.raises(ValueError, match="unknown probe label 'size'"):
        ProbeLabel.from_name("size")


@pytest.mark.parametrize("label,field", [(ProbeLabel.CATEGORY, "object_name"),
                                         (ProbeLabel.COLOUR, "colour")])
def test_token_probe_on_generated_rooms(generated_root, label, field):
    loaded, store = load_for_diagnostics(EMBEDDED_MODEL_DIR, generated_root, num_frames=4)
    scenes = sorted(p.stem for p in (generated_root / "scannet/pcd_with_object_aabbs").glob("*/*.npz"))
    labels = token_labels(store, scenes[0], label)
    g = loaded.model.config.grid.pooled_per_side
    assert labels.shape == (4 * g * g,)
    values = {o[field] for o in json.loads(
        (generated_root / "scannet/scans" / scenes[0] / f"{scenes[0]}_objects.json").read_text())["objects"]}
    seen = set(labels) - {""}
    assert seen and seen <= values
    names = probe_features(loaded.model.config.text.num_layers)
    feats = token_features(loaded, store.load(scenes[0]))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        k: (4 * g * g, loaded.model.config.text.hidden_size) for k in names}
    res = token_probe(loaded, store, scenes[:2], scenes[2:], label, progress=False)
    assert res["label"] == label.name.lower()
    assert set(res["accuracy"]) == set(names)
    assert all(0 <= a <= 100 for a in res["accuracy"].values())
    assert res["train_tokens"] > 0 and res["val_tokens"] > 0
    assert set(seen) <= set(res["classes"])


def test_token_features_of_a_deeper_decoder(generated_root, tmp_path):
    """A grown 3-layer decoder: the probe reads the outputs of layers 1 and 2, and the
    inserted second layer (zero writes; 2 → 3 is ``[0, None, 1]``) leaves layer 2's
    output equal to layer 1's."""
    from video3d_train.grow import main as grow_main

    assert grow_main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--text-layers", "3",
                      "--out", str(tmp_path / "g3")]) == 0
    loaded, store = load_for_diagnostics(tmp_path / "g3", generated_root, num_frames=4)
    scenes = sorted(p.stem for p in (generated_root / "scannet/pcd_with_object_aabbs").glob("*/*.npz"))
    feats = token_features(loaded, store.load(scenes[0]))
    assert set(feats) == {"pooled", "decoder_input", "layer1_output", "layer2_output"}
    assert torch.equal(feats["layer2_output"], feats["layer1_output"])
    assert not torch.equal(feats["layer1_output"], feats["decoder_input"])