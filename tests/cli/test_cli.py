"""`video3d ask`: one-shot and interactive queries, JSON + PNG outputs, errors that leave nothing behind."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from video3d_ros import cli
from video3d_ros.figures import project_edges_px
from video3d_ros.files import atomic_write_bytes
from video3d_ros.geometry import Box3D
from video3d_ros.model.engine import Video3DEngine
from video3d_ros.model.processor import grounding_prompt, multi_grounding_prompt
from video3d_ros.model.untrained import write_untrained_tiny
from video3d_ros.query import QueryTask
from video3d_ros.recordings import open_recording
from video3d_ros.scan_session import ScanSession, SessionConfig, build_request
from video3d_ros.scene_qa import SceneQA, load_engine

from .layouts import write_tum

FRAMES = 6
TEXT = "the red chair next to the table"


@pytest.fixture(scope="module")
def proposals_file(generated, tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "proposals.json"
    items = [{"center_m": ((o.box_min_m + o.box_max_m) / 2).tolist(), "size_m": (o.box_max_m - o.box_min_m).tolist()}
             for o in generated[0].objects]
    path.write_text(json.dumps(items))
    return path


def _base(scan, model, *extra):
    return ["ask", str(scan), *extra, "--frames", str(FRAMES), "--pixel-stride", "2", "--model", str(model),
            "--max-new-tokens", "4"]


def test_ground_one_shot_writes_json_and_png(scannet_dir, tiny_model_dir, proposals_file, tmp_path, capsys):
    out_json, out_png = tmp_path / "boxes.json", tmp_path / "boxes.png"
    rc = cli.main(_base(scannet_dir, tiny_model_dir, TEXT, "--task", "ground", "--proposals", str(proposals_file),
                        "--json", str(out_json), "--png", str(out_png), "--verbose"))
    err = capsys.readouterr().err
    assert rc == 0, err
    for stage in ("loading", "frame selection", "encoding", "answering"):
        assert stage in err
    doc = json.loads(out_json.read_text())
    assert doc["status"] == "ok" and doc["task"] == "ground" and doc["recording"]["layout"] == "scannet"
    # the same query through the library, independently
    session = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2))
    qa = SceneQA(load_engine(tiny_model_dir, device="cpu", max_new_tokens=4))
    boxes = [Box3D(center_m=it["center_m"], size_m=it["size_m"]) for it in json.loads(proposals_file.read_text())]
    qa.set_external_proposals(boxes)
    expected = session.ask(qa, TEXT, QueryTask.GROUND)
    assert doc["keyframe_indices"] == list(session.snapshot.frame_ids)
    assert [o["proposal_id"] for o in doc["objects"]] == [o.proposal_id for o in expected.objects]
    for got, exp in zip(doc["objects"], expected.objects):
        np.testing.assert_allclose(got["center_m"] + got["size_m"], exp.box.as_row(), atol=1e-9)
        assert got["score"] == pytest.approx(exp.score, abs=1e-5)
    with Image.open(out_png) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.json", "boxes.png"]  # no temp files


def test_ground_multi_asks_as_multi3drefer_is_trained(scannet_dir, tiny_model_dir, proposals_file):
    """The multi-object query reads the Multi3DRefer prompt (with its "there may be no …, or
    one or more objects" line), the one-object query ScanRefer's: the texts the two tasks were
    trained with. Asked with ScanRefer's, the embedded model's Multi3DRefer F1 halves."""
    session = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2))
    engine = load_engine(tiny_model_dir, device="cpu", max_new_tokens=4)
    qa = SceneQA(engine)
    qa.set_external_proposals([Box3D(center_m=it["center_m"], size_m=it["size_m"])
                               for it in json.loads(proposals_file.read_text())])
    asked: list[str] = []
    suffix = engine._suffix
    engine._suffix = lambda text: asked.append(text) or suffix(text)  # records, then runs as usual
    multi = session.ask(qa, TEXT, QueryTask.GROUND_MULTI)
    one = session.ask(qa, TEXT, QueryTask.GROUND)
    assert asked == [multi_grounding_prompt(TEXT), grounding_prompt(TEXT)]
    assert multi.success and one.success, (multi.message, one.message)
    assert multi.task is QueryTask.GROUND_MULTI and one.task is QueryTask.GROUND


@pytest.fixture
def proposal_builds(monkeypatch) -> list[int]:
    """One entry per call of the proposer by SceneQA (the real proposer still runs)."""
    from video3d_ros import scene_qa

    built: list[int] = []
    original = scene_qa.propose_boxes
    monkeypatch.setattr(scene_qa, "propose_boxes", lambda *a, **k: built.append(1) or original(*a, **k))
    return built


def test_one_scene_qa_over_two_recordings_builds_proposals_for_each(scannet_dir, tiny_model_dir,
                                                                     proposal_builds):
    """Every recording's snapshot has version 1 and frames numbered from 0: the proposals (and
    the engine's encodings) of one must not be reused for the next, while a second question
    about the same recording reuses them."""
    built = proposal_builds
    qa = SceneQA(load_engine(tiny_model_dir, device="cpu", max_new_tokens=4))
    first = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2))
    assert first.ask(qa, TEXT, QueryTask.GROUND).success
    assert first.ask(qa, "the table", QueryTask.GROUND).success
    assert len(built) == 1
    second = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2))
    second.prepare()
    assert second.snapshot.version == first.snapshot.version
    assert second.snapshot.frame_ids == first.snapshot.frame_ids
    assert qa.engine.sync(second.snapshot).added == tuple(second.snapshot.frame_ids)
    assert second.ask(qa, TEXT, QueryTask.GROUND).success
    assert len(built) == 2


def test_forget_makes_the_next_query_encode_and_propose_anew(scannet_dir, tiny_model_dir, proposal_builds):
    """What benchmarks call "the first query after a keyframe change": after ``forget`` the same
    snapshot is encoded again and its proposals are built again."""
    built = proposal_builds
    qa = SceneQA(load_engine(tiny_model_dir, device="cpu", max_new_tokens=4))
    session = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2))
    assert session.ask(qa, TEXT, QueryTask.GROUND).success
    assert qa.engine.sync(session.snapshot).added == ()
    qa.forget()
    assert qa.engine.sync(session.snapshot).added == tuple(session.snapshot.frame_ids)
    assert session.ask(qa, TEXT, QueryTask.GROUND).success
    assert len(built) == 2


def test_scene_qa_holds_no_keyframe_alive_and_refuses_foreign_thresholds(scannet_dir, tiny_model_dir):
    """The proposal cache (and the engine's) know keyframes by weak reference: a recording
    that is gone leaves no images behind. A threshold outside the model's units is refused
    when the SceneQA is built (the node then fails to configure, naming it)."""
    import gc
    import weakref

    qa = SceneQA(load_engine(tiny_model_dir, device="cpu", max_new_tokens=4))
    session = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2))
    assert session.ask(qa, TEXT, QueryTask.GROUND).success
    rgb = weakref.ref(session.snapshot.keyframes[0].rgb)
    del session
    gc.collect()
    assert rgb() is None
    from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR, SceneQAConfig

    embedded = load_engine(EMBEDDED_MODEL_DIR, device="cpu")  # selects by cosine score, in [0, 1)
    with pytest.raises(ValueError, match="not a cosine score"):
        SceneQA(embedded, SceneQAConfig(multi_object_threshold=1.0))
    SceneQA(embedded, SceneQAConfig(multi_object_threshold=0.6))


def test_ground_multi_drops_nested_boxes_of_one_object(scannet_dir, generated):
    """Proposals that nest a box inside each object's (as the built-in, multi-scale ones do):
    the embedded model selects both of a pair, and the answer keeps only the better one."""
    from video3d_ros.geometry import box_iou_matrix
    from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR, SceneQAConfig

    scene = generated[0]
    outer = [Box3D.from_min_max(o.box_min_m, o.box_max_m) for o in scene.objects]
    inner = [Box3D(b.center_m, b.size_m * 0.8) for b in outer]  # IoU 0.512 with its outer box
    counts = {}
    for o in scene.objects:
        counts[o.category] = counts.get(o.category, 0) + 1
    category = max(counts, key=counts.get)  # the most numerous: several objects to select
    text = f"the {category.plural} in the room."
    session = ScanSession(open_recording(scannet_dir), SessionConfig(frames=8, pixel_stride=2))
    rows = {}
    for name, suppress in (("kept", 0.0), ("suppressed", SceneQAConfig().multi_object_suppress_iou)):
        qa = SceneQA(load_engine(EMBEDDED_MODEL_DIR, device="cpu"),
                     SceneQAConfig(multi_object_suppress_iou=suppress))
        qa.set_external_proposals(outer + inner)
        result = session.ask(qa, text, QueryTask.GROUND_MULTI)
        assert result.success, result.message
        rows[name] = np.array([o.box.as_row() for o in result.objects]).reshape(-1, 6)
    iou = box_iou_matrix(rows["kept"], rows["kept"])
    assert (iou[~np.eye(len(iou), dtype=bool)] > 0.5).any(), "precondition: a nested pair selected"
    iou = box_iou_matrix(rows["suppressed"], rows["suppressed"])
    assert not (iou[~np.eye(len(iou), dtype=bool)] >= 0.1).any()
    assert 0 < len(rows["suppressed"]) < len(rows["kept"])


def test_proposals_come_from_every_keyframe_not_only_the_models(scannet_dir, tiny_model_dir,
                                                                 monkeypatch):
    """The model reads a subsample of the keyframes; the built-in proposals are built from
    all of them (more of each object's points)."""
    from video3d_ros import scene_qa
    from video3d_ros.scene_qa import SceneQAConfig

    seen = []
    original = scene_qa.snapshot_points_m
    monkeypatch.setattr(scene_qa, "snapshot_points_m",
                        lambda snap, *a, **k: seen.append(len(snap.keyframes)) or original(snap, *a, **k))
    qa = SceneQA(load_engine(tiny_model_dir, device="cpu", max_new_tokens=4),
                 SceneQAConfig(default_max_keyframes=2))
    session = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2))
    result = session.ask(qa, TEXT, QueryTask.GROUND)
    assert result.success, result.message
    assert len(result.keyframe_stamps_s) == 2  # what the model read
    assert seen == [FRAMES]  # what the proposals were built from


def test_prepare_does_a_querys_keyframe_and_proposal_work_ahead(scannet_dir, tiny_model_dir,
                                                                  monkeypatch):
    """SceneQA.prepare (what the node runs once its keyframes stop changing) encodes the
    keyframes a query reads, pre-fills their visual prefix, builds and pools the proposals;
    the query after it does none of that again and answers as without it."""
    from video3d_ros import scene_qa
    from video3d_ros.scene_qa import SceneQAConfig, subsample_snapshot

    built = []
    original = scene_qa.propose_boxes
    monkeypatch.setattr(scene_qa, "propose_boxes", lambda *a, **k: built.append(1) or original(*a, **k))
    snap = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2)).prepare()
    config = SceneQAConfig(default_max_keyframes=2)
    qa = SceneQA(load_engine(tiny_model_dir, device="cpu", max_new_tokens=4), config)
    model = qa.engine.model
    calls = {"video": 0, "objects": 0}  # decoder calls that read video tokens; poolings
    forward, pool = model.forward, model.object_features

    def counted_forward(*a, **k):
        calls["video"] += k.get("video_tokens") is not None
        return forward(*a, **k)

    def counted_pool(*a, **k):
        calls["objects"] += 1
        return pool(*a, **k)

    monkeypatch.setattr(model, "forward", counted_forward)
    monkeypatch.setattr(model, "object_features", counted_pool)
    qa.prepare(snap)
    assert built == [1] and calls == {"video": 1, "objects": 1}  # proposals, prefix, pooling
    assert qa.engine.sync(subsample_snapshot(snap, 2)).added == ()  # the query's keyframes encoded
    request = build_request(TEXT, QueryTask.GROUND)
    result = qa.answer(request, snap)
    assert result.success, result.message
    assert built == [1] and calls == {"video": 1, "objects": 1}  # none of it done again
    unprepared = SceneQA(load_engine(tiny_model_dir, device="cpu", max_new_tokens=4), config)
    expected = unprepared.answer(request, snap)
    assert [o.score for o in result.objects] == pytest.approx([o.score for o in expected.objects], abs=1e-5)
    assert [o.box.as_row().tolist() for o in result.objects] == \
        [o.box.as_row().tolist() for o in expected.objects]


def test_queries_read_the_keyframes_in_groups(scannet_dir, tiny_model_dir, monkeypatch):
    """keyframe_groups=3 with 2 keyframes a group: a query reads 6 keyframes as 3 groups
    (the engine's grouped answer and scores), a smaller max_keyframes as the groups it fills;
    prepare() pre-fills one prefix per group and the query reads no video again."""
    from video3d_ros.scene_qa import SceneQAConfig

    snap = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2)).prepare()
    assert len(snap.keyframes) >= 6
    qa = SceneQA(load_engine(tiny_model_dir, device="cpu", max_new_tokens=4),
                 SceneQAConfig(default_max_keyframes=2, keyframe_groups=3))
    read, groups = qa.reading(snap)
    assert (len(read.keyframes), groups) == (6, 3)
    assert [(len(s.keyframes), g) for s, g in (qa.reading(snap, 3), qa.reading(snap, 1))] == [(3, 2), (1, 1)]
    calls = {"video": 0}
    forward = qa.engine.model.forward

    def counted(*a, **k):
        calls["video"] += k.get("video_tokens") is not None
        return forward(*a, **k)

    monkeypatch.setattr(qa.engine.model, "forward", counted)
    qa.prepare(snap)
    assert calls["video"] == 3 and len(qa.engine._prefixes) == 3
    question = qa.answer(build_request("How many chairs are there?"), snap)
    ground = qa.answer(build_request(TEXT, QueryTask.GROUND), snap)
    assert question.success and ground.success, (question.message, ground.message)
    assert calls["video"] == 3  # the prepared prefixes were read
    assert len(question.keyframe_stamps_s) == 6 and question.keyframe_groups == 3
    engine = load_engine(tiny_model_dir, device="cpu", max_new_tokens=4)
    engine.sync(read)
    assert question.answer == engine.ask("How many chairs are there?", groups=3).text
    boxes = qa.proposals(snap)[0]
    scores = engine.ground(TEXT, boxes, groups=3).scores
    assert [o.score for o in ground.objects] == pytest.approx(sorted(scores, reverse=True)[:len(ground.objects)], abs=1e-5)
    with pytest.raises(ValueError, match="keyframe_groups must be >= 1"):
        SceneQAConfig(keyframe_groups=0)


def test_question_prints_the_models_answer(layouts_tum, tiny_model_dir, capsys):
    rc = cli.main(_base(layouts_tum, tiny_model_dir, "How many chairs are there?"))
    out = capsys.readouterr().out
    assert rc == 0
    session = ScanSession(open_recording(layouts_tum), SessionConfig(frames=FRAMES, pixel_stride=2))
    expected = session.ask(SceneQA(load_engine(tiny_model_dir, device="cpu", max_new_tokens=4)),
                           "How many chairs are there?")
    assert expected.task is QueryTask.QUESTION
    assert out == expected.answer + "\n"


def test_a_question_prints_the_object_its_answer_grounded(capsys):
    """A model trained to ground before it answers returns that object with the answer."""
    import argparse

    from video3d_ros.query import GroundedObject, QueryResult, QueryStatus

    box = Box3D(np.array([1.0, 2.0, 0.5]), np.array([0.4, 0.3, 0.2]))
    result = QueryResult(QueryStatus.OK, answer="on desk", task=QueryTask.QUESTION,
                         objects=(GroundedObject(7, 0.8125, box),))
    cli._print_result(result, "where is the cup?", None, argparse.Namespace(json=None, png=None), None)
    assert capsys.readouterr().out == ("on desk\nabout box 7: score 0.812 centre (1.00, 2.00, 0.50) m "
                                       "size (0.40, 0.30, 0.20) m\n")
    table = Box3D(np.array([1.0, 2.0, 0.2]), np.array([1.2, 0.8, 0.4]))
    two_hops = QueryResult(QueryStatus.OK, answer="desk", task=QueryTask.QUESTION,
                           objects=(GroundedObject(7, 0.8125, box), GroundedObject(3, 0.5, table)))
    cli._print_result(two_hops, "where is the cup?", None, argparse.Namespace(json=None, png=None), None)
    assert capsys.readouterr().out == (
        "desk\nabout box 7: score 0.812 centre (1.00, 2.00, 0.50) m size (0.40, 0.30, 0.20) m\n"
        "the answer is box 3: score 0.500 centre (1.00, 2.00, 0.20) m size (1.20, 0.80, 0.40) m\n")
    cli._print_result(QueryResult(QueryStatus.OK, answer="two", task=QueryTask.QUESTION), "how many?",
                      None, argparse.Namespace(json=None, png=None), None)
    assert capsys.readouterr().out == "two\n"


@pytest.fixture(scope="module")
def layouts_tum(observations, tmp_path_factory):
    return write_tum(observations, tmp_path_factory.mktemp("tum_cli") / "tum")


def test_interactive_encodes_once_and_answers_every_line(scannet_dir, tiny_model_dir, proposals_file,
                                                         monkeypatch, capsys):
    calls = []
    original = Video3DEngine.add_keyframe

    def counting(self, keyframe_id, *a, **k):
        calls.append(keyframe_id)
        return original(self, keyframe_id, *a, **k)

    monkeypatch.setattr(Video3DEngine, "add_keyframe", counting)
    monkeypatch.setattr(sys, "stdin", io.StringIO(
        "How many chairs are there?\n/task ground\n" + TEXT + "\nthe bed\n/task auto\nWhat colour is the sofa?\n"
        "/bogus\n/quit\nnever asked\n"))
    rc = cli.main(_base(scannet_dir, tiny_model_dir, "--interactive", "--json", "--proposals", str(proposals_file)))
    captured = capsys.readouterr()
    assert rc == 0
    assert len(calls) == FRAMES and len(set(calls)) == FRAMES  # every keyframe encoded exactly once
    docs, text, dec = [], captured.out, json.JSONDecoder()
    i = 0
    while text[i:].strip():
        doc, n = dec.raw_decode(text[i:].lstrip())
        docs.append(doc)
        i += len(text[i:]) - len(text[i:].lstrip()) + n
    assert [d["task"] for d in docs] == ["question", "ground", "ground", "question"]
    assert [d["question"] for d in docs][1:3] == [TEXT, "the bed"]
    assert all(len(d["objects"]) == 5 for d in docs[1:3])
    assert "unknown command '/bogus'" in captured.err


def test_bad_input_exits_2_names_the_file_and_writes_nothing(observations, tiny_model_dir, tmp_path, capsys):
    folder = write_tum(observations[:3], tmp_path / "tum", write_poses=False)
    out = tmp_path / "out"
    out.mkdir()
    rc = cli.main(_base(folder, tiny_model_dir, TEXT, "--json", str(out / "r.json"), "--png", str(out / "r.png")))
    err = capsys.readouterr().err
    assert rc == 2
    assert str(folder / "groundtruth.txt") in err and "--poses" in err
    assert list(out.iterdir()) == []
    assert cli.main(_base(folder, tiny_model_dir, TEXT, "--task", "grounding")) == 2
    assert "unknown task 'grounding'" in capsys.readouterr().err
    assert cli.main(_base(folder, tiny_model_dir, "--task", "caption", "describe it")) == 2
    assert "needs a target" in capsys.readouterr().err


def test_module_entry_point_reports_a_missing_scan(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "video3d_ros.cli", "ask", str(tmp_path / "nope"), "what?"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{tmp_path / 'nope'}: no such file or folder" in proc.stderr


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_bytes(b"old")

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_projected_box_edges_match_the_pinhole_model():
    K = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
    T = np.eye(4)  # camera at the origin looking along +z
    box = Box3D(center_m=[0.0, 0.0, 2.0], size_m=[0.4, 0.2, 0.0])
    edges = project_edges_px(box, K, T)
    ends = {tuple(np.round(p, 6)) for e in edges for p in e}
    # corners (±0.2, ±0.1, 2) → u = 50 ± 10, v = 40 ± 5
    assert ends == {(40.0, 35.0), (60.0, 35.0), (40.0, 45.0), (60.0, 45.0)}
    behind = Box3D(center_m=[0.0, 0.0, -2.0], size_m=[0.4, 0.2, 0.2])
    assert project_edges_px(behind, K, T) == []


def test_keyframe_groups_option(scannet_dir, tmp_path, capsys):
    """--keyframe-groups 2 with a model trained on 3 frames: the 6 keyframes are read as two
    groups of 3 (the engine's grouped answer); without --frames the budget is 2 × 3, and without
    either option the node's reading (4 groups); 0 is refused by name."""
    model = write_untrained_tiny(tmp_path / "m3", trained_frames=3)
    out = tmp_path / "r.json"
    rc = cli.main(_base(scannet_dir, model, "How many chairs are there?", "--keyframe-groups", "2",
                        "--json", str(out)))
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert len(doc["keyframe_indices"]) == FRAMES and doc["keyframe_groups"] == 2
    session = ScanSession(open_recording(scannet_dir), SessionConfig(frames=FRAMES, pixel_stride=2))
    engine = load_engine(model, device="cpu", max_new_tokens=4)
    engine.sync(session.prepare())
    assert doc["answer"] == engine.ask("How many chairs are there?", groups=2).text
    from video3d_ros.cli import default_frames

    assert default_frames(str(model), None, 2) == 6
    # by default as the node: 4 groups of at most 3, at most 12 keyframes
    rc = cli.main(["ask", str(scannet_dir), "Is there a bed?", "--pixel-stride", "2", "--model", str(model),
                   "--max-new-tokens", "4", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    n = len(doc["keyframe_indices"])
    assert 6 < n <= 12 and doc["keyframe_groups"] == -(-n // 3), (n, doc["keyframe_groups"])
    assert cli.main(_base(scannet_dir, model, "Is there a bed?", "--keyframe-groups", "0")) == 2
    assert "--keyframe-groups must be >= 1, got 0" in capsys.readouterr().err


def test_frame_budget_follows_the_model(tmp_path):
    """The budget is the frame count the checkpoint records (the embedded model: 8) times the
    groups, capped; a checkpoint that records none (released, or ours from before) gets the
    paper's 32; --frames always wins; a missing or broken config is a named error."""
    from video3d_ros.cli import default_frames
    from video3d_ros.model.errors import CheckpointError

    assert default_frames(None, None) == 8
    recorded = write_untrained_tiny(tmp_path / "recorded", trained_frames=12)
    assert default_frames(str(recorded), None) == 12
    released = tmp_path / "released"
    released.mkdir()
    (released / "config.json").write_text(json.dumps({"model_type": "llava_qwen"}))
    assert default_frames(str(released), None) == 32
    assert default_frames(None, 16) == 16 and default_frames("x", 4) == 4
    # video3d ask's default: the node's reading of its 32-keyframe buffer, in groups
    assert default_frames(None, None, 4, cap=32) == 32
    assert default_frames(str(recorded), None, 4, cap=32) == 32
    assert default_frames(str(released), None, 4, cap=32) == 32  # one group of 32
    assert default_frames(str(recorded), None, 2, cap=32) == 24
    with pytest.raises(CheckpointError, match="config.json"):
        default_frames(str(tmp_path / "missing"), None)
    (released / "config.json").write_text(json.dumps({"model_type": "llava_qwen", "trained_frames": "8"}))
    with pytest.raises(CheckpointError, match="trained_frames must be a positive integer"):
        default_frames(str(released), None)
