"""Proposals file from posed RGB-D frames, and evaluation on it instead of the truth boxes."""

import json

import numpy as np
import torch

from video3d_ros.model.build import build_empty, materialize
from video3d_ros.model.checkpoint import save_pretrained
from video3d_ros.model.runtime import Runtime
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of
from video3d_train.data import read_processed, read_proposals, read_scene_boxes
from video3d_train.evaluate import evaluate, read_jsonl
from video3d_train.proposals_file import main

VAL = "processed/scanrefer_vg_val_llava_style.json"


def test_proposals_file_and_evaluation_on_it(generated_root, tmp_path, capsys):
    out = tmp_path / "proposals.json"
    assert main(["--data-root", str(generated_root), "--scenes-from", VAL, "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "recall@0.5" in printed
    props = read_proposals(out)  # the evaluation's own reader accepts it
    scenes = {s.scene_id for s in read_processed(generated_root / VAL)[0]}
    assert set(props) == scenes
    for sid, boxes in props.items():
        assert boxes.ndim == 2 and boxes.shape[1] == 6 and len(boxes) > 0
        # proposals come from the frames: they lie in the room the truth boxes span
        truth = read_scene_boxes(generated_root, sid).boxes
        lo = (truth[:, :3] - truth[:, 3:] / 2).min(0) - 1.0
        hi = (truth[:, :3] + truth[:, 3:] / 2).max(0) + 1.0
        assert np.all((boxes[:, :3] >= lo) & (boxes[:, :3] <= hi))
        assert not np.array_equal(np.sort(boxes, 0)[: len(truth)], np.sort(truth, 0))

    texts = [p.read_text() for p in (generated_root / "processed").glob("*train*.json")]
    tok = build_tokenizer(texts, vocab_size=300)
    model = materialize(build_empty(tiny(len(tok), token_ids_of(tok))),
                        Runtime(torch.device("cpu"), torch.float32, "sdpa"), seed=1)
    save_pretrained(model, tok, tmp_path / "ckpt")
    res = tmp_path / "res"
    evaluate(tmp_path / "ckpt", generated_root, [VAL], res, num_frames=2, limit=3,
             proposals_file=out, device="cpu", progress=False, meteor=False)
    for r in read_jsonl(res / "scanrefer.jsonl"):
        np.testing.assert_allclose(r["proposal_boxes"], props[r["scene_id"]], atol=1e-6)
        assert len(r["proposal_scores"]) == len(props[r["scene_id"]]) + 1
    assert json.loads((res / "metrics.json").read_text())["scanrefer"]
