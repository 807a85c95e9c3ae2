"""Grounding before answering (our option ``ground_subject_first``): a ScanQA question that
names one object is trained as ``<ground><coord>answer`` — the grounding loss at ``<ground>``
on that object, its object feature in ``<coord>`` — and the engine, given proposals, grounds
where the model emits ``<ground>`` and feeds the best proposal's object feature into
``<coord>``."""

import json

import numpy as np
import pytest
import torch

from video3d_ros.geometry import Box3D, anchor_relations_m, nearest_boxes
from video3d_ros.model.checkpoint import load_pretrained, save_pretrained
from video3d_ros.model.config import GroundingConfig
from video3d_ros.model.grounding import GroundingHead
from video3d_ros.model.engine import Video3DEngine
from video3d_ros.model.position_encoding import center_points
from video3d_ros.query import QueryTask
from video3d_ros.recordings import open_recording
from video3d_ros.scan_session import ScanSession, SessionConfig
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR, SceneQA, SceneQAConfig
from video3d_train.data import (
    DataError,
    SceneStore,
    Video3DDataset,
    answer_object_ids,
    grounds_subject_first,
    read_processed,
    read_scene_boxes,
)
from video3d_train.evaluate import Evaluator
from video3d_train.metrics import Task
from video3d_train.recipes import load_recipe
from video3d_train.step import Video3DForTraining


@pytest.fixture(scope="module")
def loaded():
    return load_pretrained(EMBEDDED_MODEL_DIR)


@pytest.fixture(scope="module")
def scanqa(generated_root):
    return read_processed(generated_root / "processed/scanqa_train_llava_style.json")[0]


def _answer_ids(item) -> list[int]:
    return item.input_ids[item.labels != -100].tolist()


def test_items_ground_the_named_object_first(generated_root, loaded, scanqa):
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    plain = Video3DDataset(scanqa, store, max_length=4096)
    first = Video3DDataset(scanqa, store, max_length=4096, ground_subject_first=True)
    near = Video3DDataset(scanqa, store, max_length=4096, ground_subject_first=True,
                          subject_neighbours=2)
    ids = loaded.processor.token_ids
    pos = loaded.processor.config.position
    n_first = n_count = 0
    for i, s in enumerate(scanqa):
        a, b = plain[i], first[i]
        if not grounds_subject_first(s):  # counts, also of a category with one object
            assert s.question_type == "count"
            assert torch.equal(a.input_ids, b.input_ids) and b.object_masks is None
            n_count += 1
            continue
        n_first += 1
        assert a.object_masks is None and a.coord_points is None and a.positives is None
        assert _answer_ids(b) == [ids.ground, ids.coord] + _answer_ids(a)
        objects = read_scene_boxes(generated_root, s.scene_id)
        k = list(objects.object_ids).index(s.subject_ids[0])
        assert b.positives == [k] and b.object_masks.shape[0] == len(objects.boxes)
        assert b.coord_objects == [k] and b.coord_points is None  # its object feature, not a box
        want = torch.from_numpy(center_points(objects.boxes[k, :3], pos))
        assert torch.allclose(b.object_centres[k], want)
        c = near[i]  # and its two nearest objects' features, a <coord> each
        assert c.coord_objects == [k] + nearest_boxes(objects.boxes, k, 2) and c.positives == [k]
        assert _answer_ids(c) == [ids.ground, ids.coord, ids.coord, ids.coord] + _answer_ids(a)
    assert n_first and n_count


def test_a_subject_missing_from_the_room_names_the_sample(generated_root, loaded, tmp_path):
    path = generated_root / "processed/scanqa_train_llava_style.json"
    raw = json.loads(path.read_text())
    row = next(r for r in raw if len(r["metadata"]["subject_object_id"]) == 1)
    row["metadata"]["subject_object_id"] = [9999]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([row]))
    samples, _ = read_processed(bad)
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    ds = Video3DDataset(samples, store, max_length=4096, ground_subject_first=True)
    with pytest.raises(DataError, match=rf"bad.json.*{row['id']}.*subject object 9999 is not"):
        ds[0]


def test_the_option_is_validated_and_off_by_default():
    r = load_recipe("tiny_generated")
    assert r.ground_subject_first is False and r.ground_subject_neighbours == 0
    assert r.with_overrides(["ground_subject_first=true"]).ground_subject_first is True
    with pytest.raises(ValueError, match="ground_subject_first must be true or false"):
        r.with_overrides(["ground_subject_first=3"])
    with pytest.raises(ValueError, match="ground_subject_neighbours must be an integer >= 0"):
        r.with_overrides(["ground_subject_first=true", "ground_subject_neighbours=-1"])
    with pytest.raises(ValueError, match="ground_subject_neighbours needs ground_subject_first"):
        r.with_overrides(["ground_subject_neighbours=2"])
    assert r.with_overrides(["ground_subject_first=true",
                             "ground_subject_neighbours=2"]).ground_subject_neighbours == 2


def test_nearest_boxes_by_gap_then_centre():
    rows = np.array([[0, 0, 0, 1, 1, 1],          # the box itself
                     [0, 0, 0.9, 0.5, 0.5, 1],    # standing on it: gap 0, centre 0.9 m
                     [3, 0, 0, 1, 1, 1],          # 2 m away
                     [1.2, 0, 0, 1, 1, 1],        # 0.2 m away
                     [0, -1.0, 0, 1, 1, 1]])      # touching its side: gap 0, centre 1 m
    assert nearest_boxes(rows, 0, 3) == [1, 4, 3]  # gap 0 twice: the nearer centre first
    assert nearest_boxes(rows, 0, 10) == [1, 4, 3, 2]
    assert nearest_boxes(rows, 2, 1) == [3] and nearest_boxes(rows, 0, 0) == []
    with pytest.raises(ValueError, match="box index 5 out of range for 5 boxes"):
        nearest_boxes(rows, 5, 1)


def _engine_on(model, processor, store, scene_id) -> Video3DEngine:
    engine = Video3DEngine(model, processor, max_new_tokens=8)
    for i, (rgb, xyz, valid) in enumerate(store.raw_frames(scene_id)):
        engine.add_keyframe(i, rgb, xyz, valid, stamp_s=float(i))
    return engine


def _question(s) -> str:
    return s.prompt.replace("Answer the question simply.", "").strip()


def test_a_model_without_the_mark_answers_the_same_with_proposals(generated_root, scanqa):
    """A checkpoint without ``grounding.grounds_in_answers`` (every model not trained with
    ``ground_subject_first``) is never let ground inside an answer: handing it proposals
    changes nothing."""
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    loaded.model.config.grounding.grounds_in_answers = False
    loaded.model.config.grounding.grounds_answer_object = False
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    s0 = scanqa[0]
    engine = _engine_on(loaded.model, loaded.processor, store, s0.scene_id)
    boxes = read_scene_boxes(generated_root, s0.scene_id).boxes
    props = [Box3D(b[:3], b[3:]) for b in boxes]
    for s in [s for s in scanqa if s.scene_id == s0.scene_id][:4]:
        with_props = engine.ask(_question(s), proposals=props, groups=2)
        assert with_props.grounded_index is None
        assert with_props == engine.ask(_question(s), groups=2)


def test_training_teaches_grounding_first_and_the_engine_follows(generated_root, scanqa, tmp_path, fit):
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)  # trained below: a copy of its own
    model = loaded.model.train()
    g = model.config.grounding  # taught one hop below, unmarked until then (as before train.py)
    g.grounds_in_answers = g.grounds_answer_object = False
    model.ground_head.anchor = None  # as train.py drops a second hop it does not train
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    chosen = [s for s in scanqa if grounds_subject_first(s)][:6]
    ds = Video3DDataset(chosen, store, max_length=4096, ground_subject_first=True,
                        subject_neighbours=2)
    model.config.grounding.answer_neighbours = 2  # as train.py records it
    items = [ds[i] for i in range(len(ds))]
    step = Video3DForTraining(model, loaded.tokenizer.pad_token_id)
    first, last = fit(step, items, 20)
    assert first.n_ground == len(items)
    assert float(last.ground_loss) < 0.5 * float(first.ground_loss)
    assert float(last.lm_loss) < float(first.lm_loss)

    model.eval()
    s = chosen[0]
    engine = _engine_on(model, loaded.processor, store, s.scene_id)
    objects = read_scene_boxes(generated_root, s.scene_id)
    props = [Box3D(b[:3], b[3:]) for b in objects.boxes]
    # without the mark train.py writes, the engine never lets the model ground in an answer
    assert model.config.grounding.grounds_in_answers is False
    unmarked = engine.ask(_question(s), proposals=props)
    assert unmarked.grounded_index is None and unmarked == engine.ask(_question(s))
    model.config.grounding.grounds_in_answers = True  # as train.py records it
    ans = engine.ask(_question(s), proposals=props)
    assert ans.grounded_index is not None
    assert int(objects.object_ids[ans.grounded_index]) == s.subject_ids[0]  # a training question
    ids = loaded.processor.token_ids
    assert ids.ground not in ans.token_ids and ids.coord not in ans.token_ids
    # the same object, found among the proposals in another order
    order = np.random.default_rng(0).permutation(len(props))
    again = engine.ask(_question(s), proposals=[props[i] for i in order])
    assert order[again.grounded_index] == ans.grounded_index and again.text == ans.text
    # without proposals it answers directly, never emitting the placeholder tokens
    direct = engine.ask(_question(s))
    assert direct.grounded_index is None and ids.ground not in direct.token_ids
    assert Task.SCANQA is s.task

    # as the node asks (SceneQA over the recording's keyframes and its own proposals): a model
    # whose config says it grounds in answers returns the object it grounded with the answer
    session = ScanSession(open_recording(generated_root / "scannet/posed_images" / s.scene_id),
                          SessionConfig(frames=8))
    qa = SceneQA(engine, SceneQAConfig(keyframe_groups=1))
    model.config.grounding.grounds_in_answers = False
    plain = session.ask(qa, _question(s), QueryTask.QUESTION)
    assert plain.success and plain.objects == ()
    model.config.grounding.grounds_in_answers = True
    boxes, _ = qa.proposals(session.snapshot)
    assert boxes  # the room's point clusters
    res = session.ask(qa, _question(s), QueryTask.QUESTION)
    assert res.success and res.answer and len(res.objects) == 1
    obj = res.objects[0]
    assert obj.box is boxes[obj.proposal_id] and -1.0 <= obj.score <= 1.0

    # video3d-eval hands such a checkpoint the scene's boxes with a question and records the
    # box it grounded; a checkpoint without the mark is asked as before
    save_pretrained(model, loaded.tokenizer, tmp_path / "ckpt", trained_frames=4)
    rec = Evaluator(tmp_path / "ckpt", generated_root, 4).text([s])[0]
    k = list(objects.object_ids).index(s.subject_ids[0])
    assert rec["grounded_box"] == pytest.approx(objects.boxes[k].tolist(), abs=1e-5)
    model.config.grounding.grounds_in_answers = False
    save_pretrained(model, loaded.tokenizer, tmp_path / "unmarked", trained_frames=4)
    assert "grounded_box" not in Evaluator(tmp_path / "unmarked", generated_root, 4).text([s])[0]


def test_training_with_the_option_marks_the_checkpoint(generated_root, tmp_path):
    from video3d_train.train import train

    recipe = load_recipe("tiny_generated_answers").with_overrides([
        f"model.checkpoint={EMBEDDED_MODEL_DIR}", f"data.root={generated_root}", "max_steps=2",
        "ground_subject_first=true", "data.num_frames=4", "save_every_steps=2"])
    run = train(recipe, tmp_path / "run", progress_bar=False)
    config = json.loads((run / "final/config.json").read_text())["config"]
    assert config["grounding"]["grounds_in_answers"] is True
    # the marks say how the run trained, whatever the checkpoint it started from said (the
    # embedded model grounds twice): one hop here, so no second hop and no relation encoder
    assert config["grounding"]["grounds_answer_object"] is False
    again = load_pretrained(run / "final").model
    assert again.config.grounding.grounds_in_answers is True and again.ground_head.anchor is None
    assert load_pretrained(EMBEDDED_MODEL_DIR).model.config.grounding.grounds_answer_object is True
    plain = train(recipe.with_overrides(["ground_subject_first=false"]), tmp_path / "plain",
                  progress_bar=False)
    config = json.loads((plain / "final/config.json").read_text())["config"]
    assert config["grounding"]["grounds_in_answers"] is False


# ---- a second hop: the object the answer names (our option ground_answer_object) ------------

def test_items_ground_the_answer_object_second(generated_root, loaded, scanqa):
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    plain = Video3DDataset(scanqa, store, max_length=4096)
    two = Video3DDataset(scanqa, store, max_length=4096, ground_subject_first=True,
                         ground_answer_object=True)
    ids = loaded.processor.token_ids
    hops = {1: 0, 2: 0}
    for i, s in enumerate(scanqa):
        if not grounds_subject_first(s):
            continue
        a, b = plain[i], two[i]
        objects = read_scene_boxes(generated_root, s.scene_id)
        index = list(objects.object_ids)
        k = index.index(s.subject_ids[0])
        other = answer_object_ids(s)
        assert s.subject_ids[0] not in other
        if len(other) == 1:  # next to / under / the one thing on the named object
            assert s.question_type in ("relation", "where", "support")
            j = index.index(other[0])
            assert b.positives == [k] and b.answer_positives == [j] and b.coord_objects == [k]
            assert _answer_ids(b) == [ids.ground, ids.coord] * 2 + _answer_ids(a)
        else:  # colour (about the named object itself), or several things on it
            assert s.question_type in ("colour", "support")
            assert b.answer_positives is None and b.coord_objects == [k]
            assert _answer_ids(b) == [ids.ground, ids.coord] + _answer_ids(a)
        hops[1 + (len(other) == 1)] += 1
    assert hops[1] and hops[2]


def test_an_answer_object_missing_from_the_room_names_the_sample(generated_root, loaded, tmp_path):
    raw = json.loads((generated_root / "processed/scanqa_train_llava_style.json").read_text())
    row = next(r for r in raw if len(r["metadata"]["subject_object_id"]) == 1
               and not r["conversations"][0]["value"].lower().startswith(("how many", "what is the n")))
    row["metadata"]["object_id"] = row["metadata"]["subject_object_id"] + [9998]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([row]))
    samples, _ = read_processed(bad)
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    ds = Video3DDataset(samples, store, max_length=4096, ground_subject_first=True,
                        ground_answer_object=True)
    with pytest.raises(DataError, match=rf"bad.json.*{row['id']}.*answer object 9998 is not"):
        ds[0]


def test_the_second_hop_option_is_validated(loaded, generated_root):
    r = load_recipe("tiny_generated")
    assert r.ground_answer_object is False
    with pytest.raises(ValueError, match="ground_answer_object needs ground_subject_first"):
        r.with_overrides(["ground_answer_object=true"])
    with pytest.raises(ValueError, match="ground_answer_object needs ground_subject_first"):
        r.with_overrides(["ground_subject_first=true", "ground_subject_neighbours=1",
                          "ground_answer_object=true"])
    with pytest.raises(ValueError, match="ground_answer_object must be true or false"):
        r.with_overrides(["ground_subject_first=true", "ground_answer_object=2"])
    assert r.with_overrides(["ground_subject_first=true",
                             "ground_answer_object=true"]).ground_answer_object is True
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    with pytest.raises(ValueError, match="ground_answer_object needs ground_subject_first"):
        Video3DDataset([], store, max_length=64, ground_answer_object=True)
    with pytest.raises(ValueError, match="grounds_answer_object needs grounds_in_answers"):
        GroundingConfig(grounds_answer_object=True)
    with pytest.raises(ValueError, match="grounds_answer_object must be true or false"):
        GroundingConfig(grounds_in_answers=True, grounds_answer_object="yes")


def test_training_teaches_two_hops_and_the_engine_follows(generated_root, scanqa, tmp_path, fit):
    loaded = load_pretrained(EMBEDDED_MODEL_DIR)  # trained below: a copy of its own
    model = loaded.model.train()
    store = SceneStore(generated_root, loaded.processor, num_frames=4)
    chosen = [s for s in scanqa if grounds_subject_first(s) and len(answer_object_ids(s)) == 1][:6]
    ds = Video3DDataset(chosen, store, max_length=4096, ground_subject_first=True,
                        ground_answer_object=True)
    items = [ds[i] for i in range(len(ds))]
    for it in items:  # the second hop sees the candidates from the named object
        objects = read_scene_boxes(generated_root, it.sample.scene_id)
        want_rel = anchor_relations_m(objects.boxes, it.positives[0])
        assert torch.equal(it.anchor_relations, torch.from_numpy(want_rel))
    head = model.ground_head
    head.add_anchor_encoder()  # as train.py does
    step = Video3DForTraining(model, loaded.tokenizer.pad_token_id)
    fed = {}
    hook = model.register_forward_pre_hook(
        lambda mod, args, kwargs: fed.update(coord=kwargs["coord_embeds"]), with_kwargs=True)
    with torch.no_grad():  # the second <ground>'s scores are a term of the grounding loss
        out, scores, second = step.run(items, with_labels=True)
        # the <coord>s: the named object's feature, then the answer object's box encoding
        a = items[0].answer_positives[0]
        box = model.encode_boxes(items[0].object_centres[a:a + 1], items[0].object_sizes[a:a + 1])
    hook.remove()
    assert fed["coord"].shape[0] == 2 * len(items)
    assert torch.allclose(fed["coord"][1], box[0], atol=1e-6)
    assert sorted(second) == list(range(len(items)))
    want = torch.stack([head.loss(scores[b], it.positives) for b, it in enumerate(items)]
                       + [head.loss(second[b], it.answer_positives) for b, it in enumerate(items)])
    first, last = fit(step, items, 25)
    assert float(first.ground_loss) == pytest.approx(float(want.mean()), rel=1e-4)
    assert float(last.ground_loss) < 0.3 * float(first.ground_loss)
    assert float(head.anchor[2].weight.detach().abs().sum()) > 0  # the relation encoder learnt

    model.eval()
    model.config.grounding.grounds_in_answers = True  # as train.py records it
    model.config.grounding.grounds_answer_object = True
    s = chosen[0]
    engine = _engine_on(model, loaded.processor, store, s.scene_id)
    objects = read_scene_boxes(generated_root, s.scene_id)
    props = [Box3D(b[:3], b[3:]) for b in objects.boxes]
    ans = engine.ask(_question(s), proposals=props)
    ids = list(objects.object_ids)
    assert ids[ans.grounded_index] == s.subject_ids[0]  # training questions: both hops right
    assert ids[ans.answer_object_index] == answer_object_ids(s)[0]
    assert -1.0 <= ans.answer_object_score <= 1.0
    tok = loaded.processor.token_ids
    assert tok.ground not in ans.token_ids and tok.coord not in ans.token_ids and ans.text
    # a one-hop model never takes the second <ground> (the same weights, the mark off)
    model.config.grounding.grounds_answer_object = False
    one = engine.ask(_question(s), proposals=props)
    assert one.grounded_index == ans.grounded_index and one.answer_object_index is None
    model.config.grounding.grounds_answer_object = True

    # as the node asks: both objects come back with the answer, in order
    session = ScanSession(open_recording(generated_root / "scannet/posed_images" / s.scene_id),
                          SessionConfig(frames=8))
    qa = SceneQA(engine, SceneQAConfig(keyframe_groups=1))
    res = session.ask(qa, _question(s), QueryTask.QUESTION)
    assert res.success and res.answer
    boxes, _ = qa.proposals(session.snapshot)
    assert 1 <= len(res.objects) <= 2 and all(o.box is boxes[o.proposal_id] for o in res.objects)

    # video3d-eval records the second object's box; the checkpoint keeps the relation encoder
    save_pretrained(model, loaded.tokenizer, tmp_path / "ckpt", trained_frames=4)
    again = load_pretrained(tmp_path / "ckpt").model.ground_head.anchor
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                 head.anchor.state_dict().values()))
    rec = Evaluator(tmp_path / "ckpt", generated_root, 4).text([s])[0]
    j = ids.index(answer_object_ids(s)[0])
    assert rec["answer_object_box"] == pytest.approx(objects.boxes[j].tolist(), abs=1e-5)


def test_anchor_relations_by_hand():
    rows = np.array([[0, 0, 0.5, 2, 1, 1],          # the anchor: a table, top at 1 m
                     [0.5, 0, 1.25, 0.4, 0.4, 0.5],  # a box standing on it
                     [2, 0, 0.5, 1, 1, 1],           # beside it: footprint gap 0.5 m
                     [0, 0, -0.5, 4, 4, 1]])         # the floor slab it stands on
    rel = anchor_relations_m(rows, 0)
    assert rel.dtype == np.float32 and rel.shape == (4, 8)
    np.testing.assert_allclose(rel[0], [0, 0, 0, 0, 0, -1, -1, 1])
    np.testing.assert_allclose(rel[1], [0.5, 0, 0.75, 0.5, 0, 0, -1.5, 0])
    np.testing.assert_allclose(rel[2], [2, 0, 0, 2, 0.5, -1, -1, 0])
    np.testing.assert_allclose(rel[3], [0, 0, -1, 0, 0, -2, 0, 0])
    with pytest.raises(ValueError, match="box index 4 out of range for 4 boxes"):
        anchor_relations_m(rows, 4)


def test_the_relation_encoder_starts_at_zero_and_checks_shapes(loaded):
    head = GroundingHead(GroundingConfig(), 16)
    objects = torch.randn(3, 16)
    with pytest.raises(ValueError, match="no anchor-relation encoder"):
        head.with_anchor(objects, torch.zeros(3, 8))
    head.add_anchor_encoder()
    rel = torch.randn(3, 8)
    assert torch.equal(head.with_anchor(objects, rel), objects)  # zero output until trained
    with pytest.raises(ValueError, match=r"relations must be \(3, 8\) for 3 objects, got \(2, 8\)"):
        head.with_anchor(objects, rel[:2])
    cfg = GroundingConfig(grounds_in_answers=True, grounds_answer_object=True)
    assert GroundingHead(cfg, 16).anchor is not None  # a checkpoint that says so has one


def test_training_with_the_second_hop_saves_its_encoder(generated_root, tmp_path):
    from video3d_train.train import train

    recipe = load_recipe("tiny_generated_answers").with_overrides([
        f"model.checkpoint={EMBEDDED_MODEL_DIR}", f"data.root={generated_root}", "max_steps=2",
        "ground_subject_first=true", "ground_answer_object=true", "data.num_frames=4",
        "save_every_steps=2"])
    run = train(recipe, tmp_path / "run", progress_bar=False)
    config = json.loads((run / "final/config.json").read_text())["config"]
    assert config["grounding"]["grounds_answer_object"] is True
    head = load_pretrained(run / "final").model.ground_head
    assert head.anchor is not None and float(head.anchor[2].weight.detach().abs().sum()) > 0
