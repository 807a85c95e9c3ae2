"""Max-coverage frame sampling end to end: ``video3d-keyframes`` over every scan of a
generated dataset writes the selection file that training, ``video3d-eval`` and
``video3d-visibility`` read."""

import json

import pytest
import torch

from video3d_ros.keyframes import SamplingStrategy
from video3d_ros.keyframes.cli import main as keyframes_main
from video3d_ros.model.build import build_empty, materialize
from video3d_ros.model.checkpoint import save_pretrained
from video3d_ros.model.processor import Video3DProcessor
from video3d_ros.model.runtime import Runtime
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of
from video3d_train.data import DataError, SceneStore, read_selection, uniform_frame_numbers
from video3d_train.evaluate import evaluate, read_jsonl
from video3d_train.evaluate import main as eval_main
from video3d_train.visibility import main as visibility_main
from video3d_train.visibility import visibility


@pytest.fixture(scope="module")
def selection(generated_root, tmp_path_factory):
    scans = sorted((generated_root / "scannet/posed_images").iterdir())
    out = tmp_path_factory.mktemp("sel") / "selection.json"
    png = out.with_suffix(".png")
    assert keyframes_main([*map(str, scans), "--out", str(out), "--max-frames", "4",
                           "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # mean curves over the scans
    return out


def test_one_record_per_scan_keyed_by_scene(generated_root, selection):
    scans = sorted(p.name for p in (generated_root / "scannet/posed_images").iterdir())
    sel = read_selection(selection)
    assert sorted(sel) == scans
    for sid, rec in sel.items():
        assert rec["video_id"] == f"scannet/{sid}"
        n = len(uniform_frame_numbers(generated_root / "scannet/posed_images" / sid, 1000))
        assert len(rec["frame_files"]) == min(4, n)
        assert rec["voxel_nums"] == sorted(rec["voxel_nums"], reverse=True)  # greedy gains fall


def test_store_takes_the_first_picks_in_time_order(generated_root, selection):
    texts = [p.read_text() for p in (generated_root / "processed").glob("*train*.json")]
    tok = build_tokenizer(texts, vocab_size=300)
    proc = Video3DProcessor(tok, tiny(len(tok), token_ids_of(tok)))
    store = SceneStore(generated_root, proc, 2, SamplingStrategy.MAX_COVERAGE, selection)
    for sid, rec in read_selection(selection).items():
        picks = sorted(int(f.split("/")[-1].split(".")[0]) for f in rec["frame_files"][:2])
        assert store.frame_numbers(sid) == picks
    assert store.load(next(iter(read_selection(selection)))).pixel_values.shape[0] == 2


def test_evaluate_reads_the_selection(generated_root, selection, tmp_path, capsys):
    texts = [p.read_text() for p in (generated_root / "processed").glob("*train*.json")]
    tok = build_tokenizer(texts, vocab_size=300)
    model = materialize(build_empty(tiny(len(tok), token_ids_of(tok))),
                        Runtime(torch.device("cpu"), torch.float32, "sdpa"), seed=1)
    save_pretrained(model, tok, tmp_path / "ckpt")
    files = ["processed/scanqa_val_llava_style.json"]
    res = evaluate(tmp_path / "ckpt", generated_root, files, tmp_path / "res", num_frames=2,
                   limit=2, device="cpu", progress=False, meteor=False,
                   sampling=SamplingStrategy.MAX_COVERAGE, selection_file=selection)
    assert "scanqa" in res and len(read_jsonl(tmp_path / "res" / "scanqa.jsonl")) == 2
    # a selection without the asked scene is an error that names it (so the picks are used)
    val_scene = json.loads((generated_root / files[0]).read_text())[0]["video"].split("/")[1]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([r for r in json.loads(selection.read_text())
                                   if not r["video_id"].endswith(val_scene)]))
    with pytest.raises(DataError, match=f"no record for scene {val_scene}"):
        evaluate(tmp_path / "ckpt", generated_root, files, tmp_path / "res2", num_frames=2,
                 limit=2, device="cpu", progress=False, meteor=False,
                 sampling=SamplingStrategy.MAX_COVERAGE, selection_file=partial)
    with pytest.raises(SystemExit):
        eval_main(["--checkpoint", str(tmp_path / "ckpt"), "--data-root", str(generated_root),
                   "--files", *files, "--out", str(tmp_path / "res3"), "--sampling", "max-coverage"])
    assert "needs --selection-file" in capsys.readouterr().err


def test_visibility_with_every_frame_picked_equals_uniform(generated_root, selection, capsys):
    ann = json.loads((generated_root / "benchmark/scanqa/ScanQA_v1.0_val.json").read_text())
    sel = read_selection(selection)
    # 4 picks of scans with 4 frames: the same frames whichever way they were chosen
    uniform = visibility(generated_root, ann, 4, 1)
    picked = visibility(generated_root, ann, 4, 1, SamplingStrategy.MAX_COVERAGE, sel)
    assert picked == uniform and any(uniform.values())
    # and the picks are what it reads: a selection without a room's record is an error
    asked = ann[0]["scene_id"]
    with pytest.raises(DataError, match=f"no record for scene {asked}"):
        visibility(generated_root, ann, 4, 1, SamplingStrategy.MAX_COVERAGE,
                   {k: v for k, v in sel.items() if k != asked})
    assert visibility_main(["--data-root", str(generated_root), "--annotations",
                            "benchmark/scanqa/ScanQA_v1.0_val.json", "--frames", "1",
                            "--sampling", "max-coverage", "--selection-file", str(selection)]) == 0
    assert "(max-coverage)" in capsys.readouterr().out


def test_training_takes_the_selected_frames(generated_root, selection, tmp_path):
    from video3d_train.recipes import load_recipe
    from video3d_train.train import train

    small = [f"data.root={generated_root}", "data.num_frames=2", "max_steps=2",
             "micro_batch_size=2", "save_every_steps=2", "log_every_steps=1",
             "model.tokenizer_vocab_size=300", "data.sampling=max-coverage-0.95",
             f"data.selection_file={selection}"]  # absolute: used as it is
    recipe = load_recipe("tiny_generated_ground").with_overrides(small)
    run = train(recipe, tmp_path / "run", progress_bar=False)
    assert "sampling: max-coverage-0.95" in (run / "recipe.yaml").read_text()
    # every training scene is looked up in the selection: one left out is named
    scenes = {r["video_id"].split("/")[1] for r in json.loads(selection.read_text())}
    train_scene = json.loads((generated_root / recipe.data.train_files[0]).read_text())[0]
    train_scene = train_scene["video"].split("/")[1]
    assert train_scene in scenes
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([r for r in json.loads(selection.read_text())
                                   if not r["video_id"].endswith(train_scene)]))
    recipe = load_recipe("tiny_generated_ground").with_overrides(
        [*small[:-1], f"data.selection_file={partial}"])
    with pytest.raises(DataError, match=f"no record for scene {train_scene}"):
        train(recipe, tmp_path / "run2", progress_bar=False)
