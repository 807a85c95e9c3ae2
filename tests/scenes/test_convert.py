"""Converter: hand-written records in each real benchmark's format, and the generated files end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from video3d_train import convert as cv
from video3d_train.scenes_cli import main as scenes_main

BOXES = {"scene0000_00": {"8": [1.0, 2.0, 0.5, 0.4, 0.6, 1.0], "3": [0.0, 0.0, 0.4, 1.0, 1.0, 0.8]}}


def test_scanrefer_real_record():
    recs = [{"scene_id": "scene0000_00", "object_id": "8", "object_name": "cabinet", "ann_id": "0",
             "description": "this is a brown cabinet. it is next to the bed.",
             "token": ["this", "is", "a", "brown", "cabinet", ".", "it", "is", "next", "to", "the", "bed", "."]},
            {"scene_id": "scene0000_00", "object_id": "3", "object_name": "cabinet", "ann_id": "1",
             "description": "the other cabinet.", "token": ["the", "other", "cabinet", "."]}]
    out = cv.convert_scanrefer(recs, BOXES)
    assert out[0]["conversations"][0]["value"] == ("<image>Identify the object according to the following "
                                                   "description.\nThis is a brown cabinet. it is next to the bed.")
    assert out[0]["conversations"][1] == {"value": "<ground>", "from": "gpt"}
    assert out[0]["box"] == BOXES["scene0000_00"]["8"] and out[0]["video"] == "scannet/scene0000_00"
    assert out[0]["metadata"] == {"dataset": "scanrefer", "question_type": "multiple", "ann_id": "0",
                                  "object_id": "8"}
    assert cv.convert_scanrefer(recs[:1], BOXES)[0]["metadata"]["question_type"] == "unique"
    for r in out:
        cv.validate_processed(r)
    with pytest.raises(KeyError, match="object '99'"):
        cv.convert_scanrefer([{**recs[0], "object_id": "99"}], BOXES)


def test_multi3drefer_real_record_zero_and_multi():
    recs = [{"scene_id": "scene0000_00", "object_name": "cabinet", "ann_id": 0, "description": "the cabinets.",
             "object_ids": [8, 3], "eval_type": "mt", "spans": [[4, 12]]},
            {"scene_id": "scene0000_00", "object_name": "piano", "ann_id": 1, "description": "a piano.",
             "object_ids": [], "eval_type": "zt_wo_d"}]
    out = cv.convert_multi3drefer(recs, BOXES)
    assert out[0]["box"] == [BOXES["scene0000_00"]["8"], BOXES["scene0000_00"]["3"]]
    assert out[1]["box"] == [] and out[1]["metadata"]["question_type"] == "zt_wo_d"
    assert out[0]["conversations"][0]["value"].endswith(
        "There may be no corresponding object, or there may be one or more objects.")
    for r in out:
        cv.validate_processed(r)


def test_scan2cap_val_dedupes_and_matches_proposals():
    recs = [{"scene_id": "scene0000_00", "object_id": "8", "object_name": "cabinet", "ann_id": str(k),
             "description": d, "token": []} for k, d in enumerate(["a brown cabinet.", "the cabinet by the bed."])]
    gt = BOXES["scene0000_00"]["8"]
    near = [gt[0] + 0.02, gt[1], gt[2], gt[3], gt[4], gt[5]]
    far = [5.0, 5.0, 0.5, 0.4, 0.4, 0.4]
    train = cv.convert_scan2cap(recs, BOXES, split="train")
    assert len(train) == 2 and train[0]["box_input"] == gt and "annotations" not in train[0]
    val = cv.convert_scan2cap(recs, BOXES, split="val", proposals={"scene0000_00": [far, near]})
    assert len(val) == 1 and val[0]["box_input"] == near
    assert val[0]["annotations"] == ["a brown cabinet.", "the cabinet by the bed."]
    assert "<coord>" in val[0]["conversations"][0]["value"]
    miss = cv.convert_scan2cap(recs, BOXES, split="val", proposals={"scene0000_00": [far]})
    assert miss[0]["box_input"] is None
    for r in train + val + miss:
        cv.validate_processed(r)


def test_scanqa_real_record():
    rec = {"answers": ["brown cabinet with tv sitting in it", "cabinet"], "object_ids": [8],
           "object_names": ["cabinet"], "question": "What is in the right corner of room by curtains?",
           "question_id": "train-scene0000-0", "scene_id": "scene0000_00"}
    out = cv.convert_scanqa([rec])
    assert [o["id"] for o in out] == ["scanqa_train-scene0000-0_0", "scanqa_train-scene0000-0_1"]
    assert out[1]["conversations"] == [
        {"value": "<image> What is in the right corner of room by curtains? Answer the question simply.",
         "from": "human"}, {"value": "cabinet", "from": "gpt"}]
    assert [o["metadata"]["object_id"] for o in out] == [[8], [8]]
    for r in out:
        cv.validate_processed(r)


def test_sqa3d_real_records_train_uses_alternative_situations():
    questions = {"questions": [{"alternative_situation": ["I am wiping a table."], "question": "Which direction "
                                "should I toss a used napkin?", "question_id": 220602000037,
                                "scene_id": "scene0249_00", "situation": "I am standing by the table."}]}
    annotations = {"annotations": [{"answer_type": "other", "answers": [{"answer": "right",
                                    "answer_confidence": "yes", "answer_id": 1}], "position": {"x": 1, "y": 2,
                                    "z": 0}, "question_id": 220602000037, "question_type": "N/A",
                                    "rotation": {"_w": 1, "_x": 0, "_y": 0, "_z": 0}, "scene_id": "scene0249_00"}]}
    train = cv.convert_sqa3d(questions, annotations, split="train")
    val = cv.convert_sqa3d(questions, annotations, split="val")
    assert len(train) == 2 and len(val) == 1
    assert val[0]["conversations"][0]["value"] == ("<image> I am standing by the table. Which direction should I "
                                                   "toss a used napkin? Answer the question using a single word "
                                                   "or phrase.")
    assert val[0]["metadata"] == {"dataset": "sqa3d", "question_type": "which"}
    assert val[0]["id"] == 220602000037
    with pytest.raises(KeyError, match="no question"):
        cv.convert_sqa3d({"questions": []}, annotations, split="val")
    # our generator's annotations name the object the question is about
    named = {"annotations": [{**annotations["annotations"][0], "object_ids": [7]}]}
    for r in cv.convert_sqa3d(questions, named, split="train"):
        assert r["metadata"] == {"dataset": "sqa3d", "question_type": "which", "object_id": [7]}


def test_validate_rejects_broken_records():
    good = cv.convert_scanrefer([{"scene_id": "scene0000_00", "object_id": "8", "object_name": "cabinet",
                                  "ann_id": "0", "description": "x.", "token": []}], BOXES)[0]
    with pytest.raises(ValueError, match="bad box"):
        cv.validate_processed({**good, "box": [1.0, 2.0]})
    with pytest.raises(ValueError, match="<ground>"):
        cv.validate_processed({**good, "conversations": [good["conversations"][0], {"from": "gpt", "value": "a"}]})


def test_cli_generates_loadable_benchmarks(tmp_path):
    out = tmp_path / "gen"
    assert scenes_main(["--num-scenes", "3", "--seed", "4", "--out", str(out), "--width", "64", "--height", "48",
                        "--frames", "40", "--stride", "10", "--threads", "1"]) == 0
    for s in ("train", "val"):
        sr = json.loads((out / "benchmark" / "scanrefer" / f"ScanRefer_filtered_{s}.json").read_text())
        assert sr and set(sr[0]) == {"scene_id", "object_id", "object_name", "ann_id", "description", "token"}
        scenes = {r["scene_id"] for r in sr}
        assert scenes == ({"scene0000_00", "scene0001_00"} if s == "train" else {"scene0002_00"})
        qa = json.loads((out / "benchmark" / "scanqa" / f"ScanQA_v1.0_{s}.json").read_text())
        # the published fields, and ours: the objects the question names
        assert set(qa[0]) == {"question_id", "scene_id", "question", "answers", "object_ids", "object_names",
                              "subject_object_ids"}
        boxes = cv.load_boxes_npz(sorted((out / "scannet" / "pcd_with_object_aabbs" / s).glob("*.npz")))
        for b in cv.Benchmark:
            recs = json.loads((out / "processed" / cv.processed_filename(b, s)).read_text())
            assert recs, f"{b} {s} empty"
            for r in recs:
                cv.validate_processed(r)
        for r in json.loads((out / "processed" / cv.processed_filename(cv.Benchmark.SCANREFER, s)).read_text()):
            np.testing.assert_allclose(r["box"], boxes[r["video"].split("/")[1]][r["metadata"]["object_id"]],
                                       atol=1e-6)
    assert (out / "figures" / "scene0000_00_topdown.png").stat().st_size > 1000
    assert (out / "figures" / "scene0002_00_frames.png").stat().st_size > 1000


def test_annotations_only_rewrites_the_same_files_without_rendering(tmp_path):
    out = tmp_path / "gen"
    args = ["--num-scenes", "3", "--seed", "5", "--out", str(out), "--val-fraction", "0.34"]
    assert scenes_main(args + ["--width", "64", "--height", "48", "--frames", "40", "--stride", "10",
                               "--threads", "1", "--no-figures"]) == 0
    written = {p: p.read_bytes() for p in sorted((out / "benchmark").rglob("*.json"))
               + sorted((out / "processed").glob("*.json"))}
    colour = sorted((out / "scannet" / "posed_images" / "scene0000_00" / "color").glob("*.jpg"))
    stamps = [p.stat().st_mtime_ns for p in colour]
    for p in written:
        p.unlink()
    assert scenes_main(args + ["--annotations-only"]) == 0
    assert {p: p.read_bytes() for p in written} == written
    assert [p.stat().st_mtime_ns for p in colour] == stamps  # nothing rendered again
    for n in ("2", "4"):  # fewer rooms than rendered (their questions would be lost), or more
        with pytest.raises(SystemExit):
            scenes_main(["--num-scenes", n, "--seed", "5", "--out", str(out), "--annotations-only"])
    assert {p: p.read_bytes() for p in written} == written
    with pytest.raises(SystemExit):  # the third room is a val room, not a train one
        scenes_main(["--num-scenes", "3", "--seed", "5", "--out", str(out), "--val-fraction", "0",
                     "--annotations-only"])
    with pytest.raises(SystemExit):  # other rooms than the ones rendered
        scenes_main(["--num-scenes", "3", "--seed", "6", "--out", str(out), "--val-fraction", "0.34",
                     "--annotations-only"])
    assert {p: p.read_bytes() for p in written} == written
