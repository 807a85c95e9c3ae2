"""Text-only baselines: most frequent answer per question type, and per exact question."""

import json

from video3d_train.baselines import main as baselines_main
from video3d_train.baselines import (most_frequent_answers, most_frequent_records,
                                     question_prior_records)
from video3d_train.data import parse_sample


def qa(i: int, question: str, answer: str):
    return parse_sample({"id": f"q{i}", "video": "scannet/scene0000_00",
                         "conversations": [{"from": "human", "value": f"<image> {question}"},
                                           {"from": "gpt", "value": answer}],
                         "metadata": {"dataset": "scanQA", "answers": [answer]}}, "hand.json")


def test_question_prior_answers_the_same_question_like_training():
    train = [qa(0, "What color is the sofa?", "red"), qa(1, "What color is the sofa?", "red"),
             qa(2, "What color is the lamp?", "blue"), qa(3, "What  COLOR is the lamp?", "blue"),
             qa(4, "What color is the bed?", "white"), qa(5, "What color is the door?", "white"),
             qa(6, "What color is the desk?", "white")]
    val = [qa(10, "What color is the sofa?", "red"), qa(11, "what color is the lamp?", "green"),
           qa(12, "What color is the chair?", "white")]
    table = most_frequent_answers(train)
    # per type ("what"): "white" for everything
    assert [r["prediction"] for r in most_frequent_records(val, table)] == ["white"] * 3
    # per exact question (case and spacing normalised); unseen questions fall back to the type
    recs = question_prior_records(val, train, table)
    assert [r["prediction"] for r in recs] == ["red", "blue", "white"]
    assert [r["ground_truth"] for r in recs] == [["red"], ["green"], ["white"]]


def test_the_command_writes_every_baseline_side_by_side(generated_root, tmp_path, capsys):
    files = ["processed/scanqa_{}_llava_style.json", "processed/scanrefer_vg_{}_llava_style.json"]
    out = tmp_path / "baselines"
    assert baselines_main(["--data-root", str(generated_root), "--out", str(out), "--no-meteor",
                           "--train-files", *[f.format("train") for f in files],
                           "--val-files", *[f.format("val") for f in files]]) == 0
    table = (out / "table.md").read_text()
    assert capsys.readouterr().out == table
    headline = table.split("\n\n")[0].splitlines()  # the per-type tables follow
    rows = {line.split(" | ")[0][2:]: line for line in headline if line.startswith("| ")}
    assert {"random_proposal", "most_frequent", "question_prior"} <= set(rows)
    # each row holds the figures of that baseline's own folder (what video3d-eval writes)
    prior = json.loads((out / "question_prior/metrics.json").read_text())["scanqa"]
    assert f"| {prior['em']:.1f} |" in rows["question_prior"]
    assert "**scanqa** by question type" in table
