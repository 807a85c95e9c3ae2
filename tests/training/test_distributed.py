"""The training entry point under torchrun: two CPU processes (gloo, data parallel through
accelerate) share the samples and rank 0 writes a loadable checkpoint. On GPUs the same
command shards with FSDP or DeepSpeed ZeRO-3 (accelerate enables those only on GPUs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from video3d_ros.model.checkpoint import load_pretrained, trained_frames_of
from video3d_ros.model.runtime import Runtime
from video3d_train.checkpointing import latest_checkpoint

SMALL = ["data.num_frames=2", "max_steps=2", "micro_batch_size=1", "save_every_steps=2",
         "log_every_steps=1", "model.tokenizer_vocab_size=300"]


def _torchrun_train(root, out, *extra):
    sets = [a for s in [f"data.root={root}", *SMALL] for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "video3d_train.train", "--recipe", "tiny_generated_ground", *sets,
           "--output-dir", str(out), "--no-progress", "--threads", "1", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_two_cpu_processes_under_torchrun(generated_root, tmp_path):
    out = tmp_path / "run"
    proc = _torchrun_train(generated_root, out)
    # both ranks ran data parallel over half of the samples each
    started = [line for line in proc.stderr.splitlines() if "process(es)" in line]
    assert len(started) == 2 and all("2 process(es) (MULTI_CPU)" in line for line in started), started
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
    final = load_pretrained(out / "final", Runtime(torch.device("cpu"), torch.float32, "sdpa"))
    assert all(torch.isfinite(p).all() for p in final.model.parameters())
    assert trained_frames_of(out / "final") == 2

    # interrupted after step 1 and resumed under torchrun: every process reloads its part of
    # the checkpoint (accelerate's save_state/load_state) and the run ends where the
    # uninterrupted one did
    part = tmp_path / "part"
    _torchrun_train(generated_root, part, "--set", "save_every_steps=1", "--stop-after-steps", "1")
    assert latest_checkpoint(part).name == "step-0000001" and not (part / "final").exists()
    assert (part / "step1" / "model.safetensors").exists()  # exported once, by rank 0
    assert not list((part / "checkpoints").glob(".*"))  # no partial checkpoint left
    _torchrun_train(generated_root, part, "--set", "save_every_steps=1", "--resume")
    resumed = load_pretrained(part / "final", Runtime(torch.device("cpu"), torch.float32, "sdpa"))
    a, b = final.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    step1 = load_pretrained(part / "step1", Runtime(torch.device("cpu"), torch.float32, "sdpa"))
    assert sum(not torch.equal(a[k], v) for k, v in step1.model.state_dict().items()) > len(a) // 2


def test_evaluation_sharded_over_two_processes_equals_one(generated_root, tmp_path):
    """torchrun splits the questions over ranks; the merged results are one process's, and the
    frame count comes from the checkpoint (no --num-frames)."""
    from video3d_ros.model.build import build_empty, materialize
    from video3d_ros.model.checkpoint import save_pretrained
    from video3d_ros.model.shapes import tiny
    from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of
    from video3d_train.evaluate import evaluate, read_jsonl

    texts = [p.read_text() for p in (generated_root / "processed").glob("*train*.json")]
    tok = build_tokenizer(texts, vocab_size=300)
    model = materialize(build_empty(tiny(len(tok), token_ids_of(tok))),
                        Runtime(torch.device("cpu"), torch.float32, "sdpa"), seed=1)
    save_pretrained(model, tok, tmp_path / "ckpt", trained_frames=2)
    files = ["processed/scanrefer_vg_val_llava_style.json", "processed/scanqa_val_llava_style.json"]
    one = evaluate(tmp_path / "ckpt", generated_root, files, tmp_path / "one", limit=5, device="cpu",
                   progress=False, meteor=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "video3d_train.evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--data-root",
         str(generated_root), "--files", *files, "--out", str(tmp_path / "two"), "--limit", "5",
         "--device", "cpu", "--no-meteor", "--threads", "1"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "(3 on this rank)" in proc.stderr and "(2 on this rank)" in proc.stderr
    assert "2 frames per scene" in proc.stderr  # the count the checkpoint records
    for task in ("scanrefer", "scanqa"):
        a = {r["id"]: r for r in read_jsonl(tmp_path / "one" / f"{task}.jsonl")}
        b = {r["id"]: r for r in read_jsonl(tmp_path / "two" / f"{task}.jsonl")}
        assert a.keys() == b.keys() and len(a) == 5
        for k in a:
            if task == "scanqa":
                assert a[k]["prediction"] == b[k]["prediction"]
            else:
                assert torch.allclose(torch.tensor(a[k]["proposal_scores"]),
                                      torch.tensor(b[k]["proposal_scores"]), atol=1e-4)
    metrics_two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics_two["scanqa"] == one["scanqa"]
