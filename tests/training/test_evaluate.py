"""Evaluation writes per-question JSONL from which the metrics are recomputed alone."""

import json
import re

import torch

from video3d_ros.model.build import build_empty, materialize
from video3d_ros.model.checkpoint import save_pretrained
from video3d_ros.model.runtime import Runtime
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of
from video3d_train.evaluate import evaluate, metrics_from_dir, read_jsonl
from video3d_train.metrics import Task

FILES = ["processed/scanrefer_vg_val_llava_style.json", "processed/multi3drefer_val_llava_style.json",
         "processed/scan2cap_val_llava_style.json", "processed/scanqa_val_llava_style.json",
         "processed/sqa3d_val_llava_style.json"]


def test_evaluate_writes_records_and_metrics(generated_root, tmp_path):
    texts = [p.read_text() for p in (generated_root / "processed").glob("*train*.json")]
    tok = build_tokenizer(texts, vocab_size=300)
    model = materialize(build_empty(tiny(len(tok), token_ids_of(tok))),
                        Runtime(torch.device("cpu"), torch.float32, "sdpa"), seed=1)
    save_pretrained(model, tok, tmp_path / "ckpt")
    out = tmp_path / "res"
    res = evaluate(tmp_path / "ckpt", generated_root, FILES, out, num_frames=2, limit=3,
                   device="cpu", progress=False, meteor=False)
    assert set(res) == {t.value for t in Task}
    ground = read_jsonl(out / "scanrefer.jsonl")
    assert len(ground) == 3
    for r in ground:
        assert len(r["proposal_scores"]) == len(r["proposal_boxes"]) + 1
        assert len(r["gt_boxes"]) == 1
    cap = read_jsonl(out / "scan2cap.jsonl")
    assert all(r["matched_iou"] >= 0.5 and isinstance(r["prediction"], str) for r in cap)
    # the metrics are a function of the files alone
    again = metrics_from_dir(out, meteor=False)
    assert again == res
    assert json.loads((out / "metrics.json").read_text()) == res
    table = (out / "table.md").read_text()
    assert "| res |" in table
    # the per-type tables follow, with the types the metrics split by (SQA3D's here)
    by_type = table[table.index("**sqa3d** by question type"):]
    sqa3d_types = [k for k in res["sqa3d"] if k.startswith("em/") and k != "em/overall"]
    assert sqa3d_types and all(k in by_type for k in sqa3d_types)


def test_blind_evaluation_answers_from_the_question_alone(generated_root, tmp_path):
    """``--blind``: the LLM reads zeros instead of the video, so a question gets one answer
    whichever room it is asked about (seeing, the answers may differ); grounding scores
    change (the <ground> query comes from the LLM)."""
    from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR

    raw = json.loads((generated_root / "processed/scanqa_val_llava_style.json").read_text())
    rooms = sorted(p.name for p in (generated_root / "scannet/posed_images").iterdir())
    distinct = list({q["conversations"][0]["value"]: q for q in raw}.values())[:4]
    asked = [{**q, "id": f"q{i}-{room}_0", "video": f"scannet/{room}"}
             for i, q in enumerate(distinct) for room in rooms]  # every question in every room
    qa_file = tmp_path / "asked_everywhere.json"
    qa_file.write_text(json.dumps(asked))
    files = [str(qa_file), "processed/scanrefer_vg_val_llava_style.json"]
    for name, blind in (("blind", True), ("seeing", False)):
        evaluate(EMBEDDED_MODEL_DIR, generated_root, files, tmp_path / name, device="cpu",
                 limit=len(asked), progress=False, meteor=False, blind=blind)
    by_question = {}
    for r in read_jsonl(tmp_path / "blind" / "scanqa.jsonl"):
        by_question.setdefault(r["id"].split("-")[0], set()).add(r["prediction"])
    assert len(by_question) == 4 and all(len(v) == 1 for v in by_question.values()), by_question
    seeing = {r["id"]: r["proposal_scores"] for r in read_jsonl(tmp_path / "seeing" / "scanrefer.jsonl")}
    blind = {r["id"]: r["proposal_scores"] for r in read_jsonl(tmp_path / "blind" / "scanrefer.jsonl")}
    assert seeing.keys() == blind.keys() and any(seeing[k] != blind[k] for k in seeing)


def test_text_answers_see_the_room_they_are_asked_about(generated_root):
    """The evaluator's engine, moved from room to room, gives each question the logits of
    the training forward pass over that room's frames (it once kept the first room's
    video: the frames of every room are numbered 0…F−1 and the prefix cache was keyed
    by those numbers)."""
    from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
    from video3d_train.data import read_processed
    from video3d_train.evaluate import Evaluator
    from video3d_train.step import IGNORE_INDEX, pad_batch

    samples, _ = read_processed(generated_root / "processed/scanqa_train_llava_style.json")
    by_room = {}
    for s in samples:
        by_room.setdefault(s.scene_id, s)
    assert len(by_room) >= 2
    ev = Evaluator(EMBEDDED_MODEL_DIR, generated_root, num_frames=8, device="cpu")
    for s in by_room.values():
        item = ev.dataset.item(s, with_answer=True)
        ids, labels, mask = pad_batch([item], ev.tok.pad_token_id)
        with torch.no_grad():
            out, _, _ = ev.step.run([item], with_labels=True, padded=(ids, labels, mask))
        first = int((labels[0] != IGNORE_INDEX).nonzero()[0])
        ev._load_scene(s.scene_id)
        got = ev.engine.next_token_logits(s.prompt)
        # with labels the training pass has logits at the labelled positions only: row 0
        # predicts the answer's first token, as the engine's last position does
        assert first >= 1
        torch.testing.assert_close(got, out.logits[0].float(), atol=1e-3, rtol=0,
                                   msg=s.scene_id)


def test_grounding_scores_are_the_nodes(generated_root):
    """The figures of record score grounding through the training step; the node through
    ``Video3DEngine.ground``. For every ScanRefer and Multi3DRefer sample the two give the
    same scores over the same boxes — the Multi3DRefer ones only when the engine is asked with
    ``multiple=True`` (with ScanRefer's prompt, as the node once asked, they differ)."""
    import numpy as np

    from video3d_ros.geometry import Box3D
    from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
    from video3d_train.data import read_processed, read_scene_boxes
    from video3d_train.evaluate import Evaluator

    ev = Evaluator(EMBEDDED_MODEL_DIR, generated_root, num_frames=8, device="cpu")
    for name, multiple in (("scanrefer_vg", False), ("multi3drefer", True)):
        samples, _ = read_processed(generated_root / f"processed/{name}_val_llava_style.json")
        assert samples
        for s, rec in zip(samples, ev.grounding(samples)):
            ev._load_scene(s.scene_id)
            boxes = [Box3D(b[:3], b[3:]) for b in read_scene_boxes(generated_root, s.scene_id).boxes]
            description = s.prompt.split("\n")[1]
            g = ev.engine.ground(description, boxes, multiple=multiple)
            np.testing.assert_allclose(np.append(g.scores, g.no_target_score),
                                       rec["proposal_scores"], atol=1e-4, err_msg=s.sample_id)
            if multiple:
                assert g.selected == rec["selected"], s.sample_id  # the model's own decoding
                other = ev.engine.ground(description, boxes)
                assert np.abs(other.scores - g.scores).max() > 1e-3, s.sample_id


def test_keyframe_groups_are_the_engines(generated_root, tmp_path):
    """``--keyframe-groups 2``: grounding records hold the engine's grouped scores and
    selection (not the one-pass scores over the same frames), and text answers the engine's
    grouped decoding; more groups than frames is refused."""
    import numpy as np
    import pytest

    from video3d_ros.geometry import Box3D
    from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
    from video3d_train.data import read_processed, read_scene_boxes
    from video3d_train.evaluate import Evaluator

    ev = Evaluator(EMBEDDED_MODEL_DIR, generated_root, num_frames=4, device="cpu", groups=2)
    samples, _ = read_processed(generated_root / "processed/multi3drefer_val_llava_style.json")
    samples = samples[:6]
    for s, rec in zip(samples, ev.grounding(samples)):
        ev._load_scene(s.scene_id)
        assert len(ev.engine.keyframe_ids) == 4
        boxes = [Box3D(b[:3], b[3:]) for b in read_scene_boxes(generated_root, s.scene_id).boxes]
        description = s.prompt.split("\n")[1]
        g = ev.engine.ground(description, boxes, multiple=True, groups=2)
        np.testing.assert_allclose(np.append(g.scores, g.no_target_score), rec["proposal_scores"],
                                   atol=1e-5, err_msg=s.sample_id)
        assert g.selected == rec["selected"], s.sample_id
        one_pass = ev.engine.ground(description, boxes, multiple=True)
        assert np.abs(one_pass.scores - g.scores).max() > 1e-3, s.sample_id
    res = evaluate(EMBEDDED_MODEL_DIR, generated_root, ["processed/scanqa_val_llava_style.json"],
                   tmp_path / "g2", num_frames=4, limit=3, device="cpu", progress=False,
                   meteor=False, groups=2)
    assert "scanqa" in res
    qa, _ = read_processed(generated_root / "processed/scanqa_val_llava_style.json")
    by_id = {s.sample_id: s for s in qa}
    for rec in read_jsonl(tmp_path / "g2" / "scanqa.jsonl"):
        s = by_id[rec["id"]]
        ev._load_scene(s.scene_id)
        # the embedded model grounds in its answers: the evaluator hands it the scene's boxes
        props = [Box3D(b[:3], b[3:]) for b in ev.candidates(s.scene_id)]
        assert rec["prediction"] == ev.engine.generate(s.prompt, groups=2, proposals=props).text, \
            s.sample_id
    with pytest.raises(ValueError, match="3 keyframe groups need at least as many frames, got 2"):
        Evaluator(EMBEDDED_MODEL_DIR, generated_root, num_frames=2, device="cpu", groups=3)


def test_text_progress_moves_one_scene_at_a_time(generated_root, tmp_path, capsys):
    """The bar of a text task counts scenes (it once showed one step for the whole file)."""
    texts = [p.read_text() for p in (generated_root / "processed").glob("*train*.json")]
    tok = build_tokenizer(texts, vocab_size=300)
    model = materialize(build_empty(tiny(len(tok), token_ids_of(tok))),
                        Runtime(torch.device("cpu"), torch.float32, "sdpa"), seed=1)
    save_pretrained(model, tok, tmp_path / "ckpt")
    raw = json.loads((generated_root / "processed/scanqa_val_llava_style.json").read_text())
    rooms = sorted(p.name for p in (generated_root / "scannet/posed_images").iterdir())
    assert len(rooms) >= 2
    asked = [{**q, "id": f"q{i}-{room}", "video": f"scannet/{room}"}
             for i, q in enumerate(raw[:2]) for room in rooms]  # rooms interleaved in the file
    (tmp_path / "qa.json").write_text(json.dumps(asked))
    evaluate(tmp_path / "ckpt", generated_root, [str(tmp_path / "qa.json")], tmp_path / "res",
             num_frames=2, limit=len(asked), device="cpu", meteor=False)
    records = read_jsonl(tmp_path / "res" / "scanqa.jsonl")
    assert sorted(r["id"] for r in records) == sorted(q["id"] for q in asked)
    err = capsys.readouterr().err
    n = len(rooms)
    assert re.search(rf"scanqa: 100%.*\| {n}/{n} \[[^]]*(scene/s|s/scene)\]", err), err[-500:]
