"""Metrics on small cases computed by hand."""

import math

import numpy as np
import pytest

from video3d_train import metrics as M

UNIT = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # unit cube at the origin
HALF = [0.5, 0.0, 0.0, 1.0, 1.0, 1.0]  # shifted by half: IoU 0.5/1.5 = 1/3
QUARTER = [0.2, 0.0, 0.0, 1.0, 1.0, 1.0]  # overlap 0.8 → IoU 0.8/1.2 = 2/3
FAR = [5.0, 5.0, 5.0, 1.0, 1.0, 1.0]


def ground_rec(rid, props, scores, gt, qtype=None):
    return {"id": rid, "proposal_boxes": props, "proposal_scores": scores, "gt_boxes": gt,
            "question_type": qtype}


def test_scanrefer_accuracy_by_hand():
    recs = [
        # top real proposal (score 0.9) is the exact box → hit at both thresholds
        ground_rec(0, [FAR, UNIT], [0.1, 0.9, 0.95], [UNIT], "unique"),
        # top proposal has IoU 1/3 → hit @0.25 only (zero-target score is ignored)
        ground_rec(1, [HALF, FAR], [0.5, 0.2, 0.0], [UNIT], "multiple"),
        # top proposal far away → miss
        ground_rec(2, [FAR, UNIT], [0.9, 0.1, 0.0], [UNIT], "multiple"),
        # no proposals at all → miss
        ground_rec(3, [], [0.3], [UNIT], "multiple"),
    ]
    m = M.scanrefer_metrics(recs)
    assert m["acc@0.25/overall"] == pytest.approx(50.0)
    assert m["acc@0.5/overall"] == pytest.approx(25.0)
    assert m["acc@0.25/unique"] == pytest.approx(100.0)
    assert m["acc@0.5/multiple"] == pytest.approx(0.0)
    assert m["acc@0.25/multiple"] == pytest.approx(100 / 3)


def test_scanrefer_rejects_bad_scores_naming_the_record():
    with pytest.raises(ValueError, match="'q7'.*N \\+ 1"):
        M.scanrefer_metrics([ground_rec("q7", [UNIT], [0.3], [UNIT])])


def test_f1_one_cases():
    e = np.zeros((0, 6))
    assert M.f1_one(e, e, 0.5) == 1.0  # empty prediction, empty truth
    assert M.f1_one(e, np.array([UNIT]), 0.5) == 0.0  # empty prediction
    assert M.f1_one(np.array([UNIT]), e, 0.5) == 0.0  # empty truth
    # 2 predictions, 1 truth: the matching takes the exact box → TP 1, F1 = 2/3
    assert M.f1_one(np.array([HALF, UNIT]), np.array([UNIT]), 0.5) == pytest.approx(2 / 3)
    # one-to-one: two truths, two predictions; greedy-by-row would pair HALF with UNIT first;
    # Hungarian maximises summed IoU: (UNIT,UNIT)=1 + (QUARTER? no) ...
    p = np.array([QUARTER, UNIT])
    g = np.array([UNIT, HALF])
    # IoU matrix rows p, cols g: QUARTER-UNIT 2/3, QUARTER-HALF 0.7/1.3, UNIT-UNIT 1, UNIT-HALF 1/3
    # assignments: (Q-U, U-H) = 2/3+1/3 = 1.0 ; (Q-H, U-U) = 0.538+1 = 1.538 → chosen
    # @0.5: both pairs ≥ 0.5 → TP 2 → F1 1; @0.25 same
    assert M.f1_one(p, g, 0.5) == pytest.approx(1.0)
    assert M.f1_one(p, g, 0.6) == pytest.approx(2 * 1 / 4)  # only UNIT-UNIT ≥ 0.6


def test_multi3drefer_decoding_and_types():
    recs = [
        # zero target on top → empty prediction, empty truth → 1
        ground_rec(0, [UNIT, FAR], [0.1, 0.2, 0.9], [], "zt_w_d"),
        # zero target on top but truth non-empty → 0
        ground_rec(1, [UNIT, FAR], [0.1, 0.2, 0.9], [UNIT], "st_w_d"),
        # UNIT dominates softmax(s/0.07) → [UNIT] alone passes 0.4 → F1 1
        ground_rec(2, [UNIT, FAR], [0.9, 0.1, 0.0], [UNIT], "st_wo_d"),
        # equal scores: each prob 0.5 ≥ 0.4 after one pick → only the first index (UNIT)
        # truth {UNIT, FAR} → TP 1, F1 = 2/3
        ground_rec(3, [UNIT, FAR], [0.5, 0.5, 0.0], [UNIT, FAR], "mt"),
        # three equal scores: 1/3 < 0.4 → two picks (indices 0, 1) = UNIT, FAR; truth {UNIT, FAR}
        ground_rec(4, [UNIT, FAR, HALF], [0.5, 0.5, 0.5, 0.0], [UNIT, FAR], "mt"),
    ]
    m = M.multi3drefer_metrics(recs)
    assert m["f1@0.5/overall"] == pytest.approx(100 * (1 + 0 + 1 + 2 / 3 + 1) / 5)
    assert m["f1@0.5/zt_w_d"] == pytest.approx(100.0)
    assert m["f1@0.5/st_w_d"] == pytest.approx(0.0)
    assert m["f1@0.5/mt"] == pytest.approx(100 * (2 / 3 + 1) / 2)


def test_multi3drefer_reads_the_models_own_selection():
    """A record with ``selected`` (the model's decoding, written by video3d-eval) is scored
    by it; without, by the paper's decoding of the scores."""
    paper = ground_rec(0, [UNIT, FAR], [0.5, 0.5, 0.0], [UNIT, FAR], "mt")  # decodes to [UNIT]
    own = {**paper, "selected": [0, 1]}
    assert M.multi3drefer_metrics([paper])["f1@0.5/overall"] == pytest.approx(100 * 2 / 3)
    assert M.multi3drefer_metrics([own])["f1@0.5/overall"] == pytest.approx(100.0)
    assert M.multi3drefer_metrics([{**paper, "selected": []}])["f1@0.5/overall"] == 0.0
    with pytest.raises(ValueError, match="outside the 2 proposals"):
        M.multi3drefer_metrics([{**paper, "selected": [2]}])


def test_caption_metrics_identical_distinct_captions():
    # two objects, perfect captions with disjoint words: every CIDEr-D n-gram term has
    # idf log(2) and cosine 1 → 10 per caption (×100 → 1000); BLEU-4 and ROUGE-L 100
    recs = [
        {"id": "a", "prediction": "A brown chair.", "ground_truth": ["a brown chair."],
         "matched_iou": 0.8},
        {"id": "b", "prediction": "Big red table, near wall", "ground_truth":
         ["big red table , near wall"], "matched_iou": 0.6},
    ]
    m = M.scan2cap_metrics(recs, meteor=False)
    assert m["cider@0.5"] == pytest.approx(1000.0)
    assert m["bleu-4@0.5"] == pytest.approx(100.0, abs=1e-4)
    assert m["rouge-l@0.5"] == pytest.approx(100.0)


def test_caption_below_iou_threshold_counts_as_empty():
    recs = [
        {"id": "a", "prediction": "a brown chair .", "ground_truth": ["a brown chair ."],
         "matched_iou": 0.8},
        {"id": "b", "prediction": "big red table", "ground_truth": ["big red table"],
         "matched_iou": 0.3},  # proposal too far: the caption is '' → 'sos eos'
    ]
    m = M.scan2cap_metrics(recs, meteor=False)
    # object a scores 10, object b: only sos/eos (idf 0) → 0 → mean 5 → 500
    assert m["cider@0.5"] == pytest.approx(500.0)
    m25 = M.scan2cap_metrics(recs, iou_threshold=0.25, meteor=False)
    assert m25["cider@0.25"] == pytest.approx(1000.0)


def test_caption_text_form():
    assert M.caption_text("A Chair, near.the wall.") == "sos a chair , near . the wall . eos"
    assert M.caption_text("") == "sos eos"


def test_scanqa_em_and_trailing_dot():
    recs = [
        {"id": 1, "prediction": "brown chair", "ground_truth": ["brown chair", "chair"]},
        {"id": 2, "prediction": "two.", "ground_truth": ["two"]},  # EM is exact: miss
        {"id": 3, "prediction": "", "ground_truth": ["white"]},
    ]
    m = M.scanqa_metrics(recs, meteor=False)
    assert m["em"] == pytest.approx(100 / 3)
    assert m["bleu-1"] > 0


@pytest.mark.parametrize("question, kind", [
    ("What color is the chair?", "colour"),
    ("What is the colour of the cup on the desk?", "colour"),
    ("How many chairs are in the room?", "count"),
    ("What is the number of sinks in the room?", "count"),
    ("Where is the cup next to the bed placed?", "where"),
    ("What is on the table next to the bed?", "support"),
    ("What sits on the shelf?", "support"),
    ("What is next to the door?", "relation"),
    ("What object is closest to the sink?", "relation"),
    ("What is on the left of the chair?", "other"),
    ("Is the door open?", "other"),
])
def test_scanqa_question_kind(question, kind):
    assert M.scanqa_question_kind(question) == kind


def test_scanqa_em_per_question_kind():
    recs = [
        {"id": 1, "question_type": "colour", "prediction": "red", "ground_truth": ["red"]},
        {"id": 2, "question_type": "colour", "prediction": "blue", "ground_truth": ["red"]},
        {"id": 3, "question_type": "count", "prediction": "2", "ground_truth": ["2", "two"]},
        {"id": 4, "question_type": "unknow", "prediction": "x", "ground_truth": ["y"]},
    ]
    m = M.scanqa_metrics(recs, meteor=False)
    assert m["em"] == pytest.approx(50.0)
    assert m["em/colour"] == pytest.approx(50.0) and m["em/count"] == pytest.approx(100.0)
    assert "em/unknow" not in m and "em/other" not in m


def test_meteor_runs_with_java():
    recs = [{"id": 1, "prediction": "brown chair", "ground_truth": ["brown chair"]},
            {"id": 2, "prediction": "table", "ground_truth": ["white lamp"]}]
    m = M.scanqa_metrics(recs, meteor=True)
    assert 0 < m["meteor"] < 100


@pytest.mark.parametrize("raw, norm", [
    ("  The  Chair ", "chair"),
    ("2", "two"),
    ("none", "zero"),
    ("23", "twenty-three"),
    ("an apple", "apple"),
    ("Backwards!", "backward"),
    ("rigth", "right"),
    ("mat2", "mat"),
    ("tv", "TV"),
    ("12 o' clock", "twelve o'clock"),
    ("left,   right", "left, right"),
    ("it's (blue)", "it's blue"),
])
def test_sqa3d_normaliser(raw, norm):
    assert M.sqa3d_normalize(raw) == norm


def test_sqa3d_em_per_type():
    recs = [
        {"id": 1, "prediction": "The table", "ground_truth": ["table"], "question_type": "what"},
        {"id": 2, "prediction": "3", "ground_truth": ["three"], "question_type": "how"},
        {"id": 3, "prediction": "left", "ground_truth": ["right"], "question_type": "which"},
        {"id": 4, "prediction": "no", "ground_truth": ["yes"], "question_type": "is"},
    ]
    m = M.sqa3d_metrics(recs)
    assert m["em/overall"] == pytest.approx(50.0)
    assert m["em/what"] == 100.0 and m["em/which"] == 0.0


def test_sqa3d_question_type():
    assert M.sqa3d_question_type(" Which way") == "which"
    assert M.sqa3d_question_type("Is it") == "is"
    assert M.sqa3d_question_type("Where") == "others"


def test_type_breakdown_tables():
    rows = {"model": {M.Task.SCANQA: {"em": 50.0, "em/colour": 60.0, "em/count": 40.04,
                                      "bleu-4": 9.0},
                      M.Task.SCAN2CAP: {"cider@0.5": 100.0},
                      M.Task.SQA3D: {"em/overall": 50.0, "em/what": 25.0}},
            "prior": {M.Task.SCANQA: {"em": 30.0, "em/count": 70.0, "em/relation": 5.0}}}
    text = M.type_breakdown_tables(rows)
    qa, sqa = text.split("\n\n**sqa3d** by question type\n\n")
    assert qa.splitlines() == ["**scanqa** by question type", "",
                               "| system | em/colour | em/count | em/relation |",
                               "|---|---:|---:|---:|",
                               "| model | 60.0 | 40.0 | – |",
                               "| prior | – | 70.0 | 5.0 |"]
    assert sqa.splitlines()[0] == "| system | em/what |"  # /overall is the headline table's
    assert "scan2cap" not in text  # no types, no table
    assert M.type_breakdown_tables({"model": {M.Task.SCAN2CAP: {"cider@0.5": 1.0}}}) == ""


def test_task_parse_and_table():
    assert M.Task.parse("scanQA") is M.Task.SCANQA
    with pytest.raises(ValueError, match="unknown task"):
        M.Task.parse("scanqa2")
    table = M.markdown_table({"model": {M.Task.SQA3D: {"em/overall": 55.25}},
                              "baseline": {}})
    assert "| model | 55.2 |" in table or "| model | 55.3 |" in table
    assert "| baseline | – |" in table
    assert not math.isnan(len(table))
