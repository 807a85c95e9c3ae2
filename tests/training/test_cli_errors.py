"""Every training-package command answers a user's mistake with one line and exit status 2.

Each case runs the command's real ``main`` on real files with one thing wrong (a checkpoint
folder that does not exist or whose weights are cut short, a data root without the files,
a results file with a broken line) and checks the message names what was wrong.
"""

import json
import shutil

import pytest

from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
from video3d_train.attention import main as attention_main
from video3d_train.baselines import main as baselines_main
from video3d_train.cli import run_command
from video3d_train.evaluate import main as eval_main
from video3d_train.export import main as export_main
from video3d_train.grow import main as grow_main
from video3d_train.loss_gradients import main as loss_gradients_main
from video3d_train.proposals_file import main as proposals_main
from video3d_train.train import main as train_main
from video3d_train.vision_pretrain import main as vision_pretrain_main
from video3d_train.widen import main as widen_main

QA = "processed/scanqa_val_llava_style.json"


def _one_line_error(capsys, prog: str, *named: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith(f"{prog}: error: ")]
    assert len(line) == 1, err
    for n in named:
        assert n in line[0], (n, line[0])
    return line[0]


@pytest.mark.parametrize("prog,main,argv", [
    ("video3d-eval", eval_main, ["--data-root", "{root}", "--files", QA, "--out", "{tmp}/r"]),
    ("video3d-grow", grow_main, ["--text-layers", "3", "--out", "{tmp}/g"]),
    ("video3d-widen", widen_main, ["--text-hidden", "64", "--text-layers", "2",
                                   "--text-intermediate", "128", "--text-heads", "4",
                                   "--text-kv-heads", "2", "--out", "{tmp}/w"]),
    ("video3d-vision-pretrain", vision_pretrain_main,
     ["--data-root", "{root}", "--out", "{tmp}/v", "--steps", "1", "--no-progress"]),
    ("video3d-attention", attention_main, ["--data-root", "{root}", "--file", QA]),
    ("video3d-loss-gradients", loss_gradients_main, ["--data-root", "{root}", "--files", QA]),
])
def test_a_missing_checkpoint_is_named(prog, main, argv, generated_root, tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    argv = [a.format(root=generated_root, tmp=tmp_path) for a in argv]
    assert main(["--checkpoint", str(missing), *argv]) == 2
    _one_line_error(capsys, prog, str(missing))


def test_a_checkpoint_cut_short_is_named(generated_root, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(EMBEDDED_MODEL_DIR, ckpt)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert eval_main(["--checkpoint", str(ckpt), "--data-root", str(generated_root),
                      "--files", QA, "--out", str(tmp_path / "r"), "--no-meteor"]) == 2
    _one_line_error(capsys, "video3d-eval", str(ckpt))


@pytest.mark.parametrize("prog,main,argv", [
    ("video3d-train", train_main, ["--recipe", "tiny_generated", "--set", "data.root={missing}",
                                   "--output-dir", "{tmp}/run", "--no-progress"]),
    ("video3d-baselines", baselines_main, ["--data-root", "{missing}", "--train-files", QA,
                                           "--val-files", QA, "--out", "{tmp}/b"]),
    ("video3d-proposals", proposals_main, ["--data-root", "{missing}", "--scenes-from", QA,
                                           "--out", "{tmp}/p.json", "--no-progress"]),
])
def test_a_data_root_without_the_files_is_named(prog, main, argv, tmp_path, capsys):
    missing = tmp_path / "no_such_root"
    assert main([a.format(missing=missing, tmp=tmp_path) for a in argv]) == 2
    _one_line_error(capsys, prog, str(missing / "processed"))


def test_a_bad_recipe_override_and_a_run_without_checkpoints_are_named(tmp_path, capsys):
    assert train_main(["--recipe", "tiny_generated", "--set", "optim.lr=-1",
                       "--output-dir", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, "video3d-train", "optim.lr must be > 0")
    assert export_main([str(tmp_path / "no_run"), str(tmp_path / "out")]) == 2
    _one_line_error(capsys, "video3d-export", str(tmp_path / "no_run"))


def test_a_broken_results_line_is_named(tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    good = {"id": "q0", "task": "scanqa", "question_type": "count", "prediction": "two",
            "ground_truth": ["two"]}
    (out / "scanqa.jsonl").write_text(json.dumps(good) + "\n" + '{"id": "q1", "pred\n')
    assert eval_main(["--metrics-only", "--out", str(out), "--no-meteor"]) == 2
    _one_line_error(capsys, "video3d-eval", "scanqa.jsonl:2", "not a JSON line")
    (out / "scanqa.jsonl").write_text(json.dumps(good) + "\n")
    assert eval_main(["--metrics-only", "--out", str(out), "--no-meteor"]) == 0
    assert json.loads((out / "metrics.json").read_text())["scanqa"]["em"] == 100.0


@pytest.mark.parametrize("arg,named", [("a", "expected NAME=DIR"),
                                       ("a={tmp}/none", "none/metrics.json")])
def test_compare_names_a_bad_folder(arg, named, tmp_path, capsys):
    assert eval_main(["--compare", arg.format(tmp=tmp_path)]) == 2
    _one_line_error(capsys, "video3d-eval", named)


def test_a_bug_keeps_its_traceback_and_the_option_shows_user_errors_in_full(
        tmp_path, capsys, monkeypatch):
    def bug() -> int:
        raise KeyError("a mistake of ours")

    with pytest.raises(KeyError):
        run_command("video3d-x", bug)

    def missing() -> int:
        return len((tmp_path / "nope.json").read_text())

    assert run_command("video3d-x", missing) == 2
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setenv("VIDEO3D_TRACEBACK", "1")
    assert run_command("video3d-x", missing) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "video3d-x: error: " in err and "nope.json" in err
