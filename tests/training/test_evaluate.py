"""Evaluation writes per-question JSONL from which the metrics are recomputed alone."""

import json

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
    assert "| res |" in (out / "table.md").read_text()
