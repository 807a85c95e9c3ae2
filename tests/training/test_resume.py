"""Interrupted + resumed training ends with the same weights as an uninterrupted run."""

import json

import torch
from video3d_ros.files import atomic_write_bytes
from video3d_ros.model.checkpoint import load_pretrained
from video3d_ros.model.runtime import Runtime
from video3d_train.checkpointing import checkpoint_model_state, latest_checkpoint
from video3d_train.recipes import load_recipe
from video3d_train.train import train


def _recipe(root):
    return load_recipe("tiny_generated_ground").with_overrides([
        f"data.root={root}", "data.num_frames=2", "max_steps=4", "micro_batch_size=2",
        "grad_accum=2", "save_every_steps=2", "log_every_steps=1",
        "model.tokenizer_vocab_size=300",
        "data.train_files=[processed/scanrefer_vg_train_llava_style.json,"
        "processed/sqa3d_train_llava_style.json,processed/scan2cap_train_llava_style.json]"])


def _weights(run):
    m = load_pretrained(run / "final", Runtime(torch.device("cpu"), torch.float32, "sdpa"))
    return m.model.state_dict()


def test_resume_matches_uninterrupted(generated_root, tmp_path):
    full = train(_recipe(generated_root), tmp_path / "full", progress_bar=False)
    part = tmp_path / "part"
    train(_recipe(generated_root), part, stop_after_steps=2, progress_bar=False)
    assert latest_checkpoint(part).name == "step-0000002"
    assert not (part / "final").exists()
    # the history so far is on disk at every checkpoint, not only at the end
    h_cut = [json.loads(x) for x in (part / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in h_cut] == [1, 2]
    train(_recipe(generated_root), part, resume=True, progress_bar=False)
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # steps 3-4 did change the weights: the comparison is not between untouched copies
    mid = checkpoint_model_state(part / "checkpoints" / "step-0000002")
    assert set(mid) == {f"model.{k}" for k in a}
    assert sum(not torch.equal(a[k], mid[f"model.{k}"]) for k in a) > len(a) // 2
    h_full = [json.loads(x) for x in (full / "history.jsonl").read_text().splitlines()]
    h_part = [json.loads(x) for x in (part / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in h_part] == [1, 2, 3, 4]
    for x, y in zip(h_full, h_part):
        assert abs(x["loss"] - y["loss"]) < 1e-4
        # the gradient norm before clipping (recipe grad_clip 1.0), logged per step
        assert x["grad_norm"] > 0 and abs(x["grad_norm"] - y["grad_norm"]) < 1e-3 * x["grad_norm"]
    assert (full / "loss.png").stat().st_size > 0 and (full / "lr.png").stat().st_size > 0


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "x.txt"
    atomic_write_bytes(p, b"old")
    atomic_write_bytes(p, b"new contents")
    assert p.read_bytes() == b"new contents"
    assert [f.name for f in tmp_path.iterdir()] == ["x.txt"]  # no temp file left


def test_data_loader_workers_train_the_same(generated_root, tmp_path, monkeypatch):
    """num_workers decodes the same micro-batches in worker processes: same losses, same weights."""
    import os

    from video3d_train.data import Video3DDataset

    base = _recipe(generated_root).with_overrides(["max_steps=2", "save_every_steps=2"])
    zero = train(base, tmp_path / "zero", progress_bar=False)
    # which processes decode the items (workers are forked: they write to a file)
    pids = tmp_path / "pids.txt"
    item = Video3DDataset.__getitem__

    def recording(self, i):
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return item(self, i)

    monkeypatch.setattr(Video3DDataset, "__getitem__", recording)
    two = train(base.with_overrides(["num_workers=2"]), tmp_path / "two", progress_bar=False)
    decoders = set(pids.read_text().split())
    assert len(decoders) == 2 and str(os.getpid()) not in decoders  # two workers, not this process
    h0 = [json.loads(x) for x in (zero / "history.jsonl").read_text().splitlines()]
    h2 = [json.loads(x) for x in (two / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in h2] == [1, 2]
    for x, y in zip(h0, h2):
        assert abs(x["loss"] - y["loss"]) < 1e-5
    a, b = _weights(zero), _weights(two)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_export_a_kept_step(generated_root, tmp_path, capsys):
    """keep_checkpoints keeps that many step checkpoints; video3d-export writes a chosen one."""
    from video3d_train.export import main as export_main

    run = tmp_path / "run"
    train(_recipe(generated_root).with_overrides(["max_steps=3", "save_every_steps=1",
                                                  "keep_checkpoints=3"]), run, progress_bar=False)
    kept = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert kept == ["step-0000001", "step-0000002", "step-0000003"]
    assert export_main([str(run), str(tmp_path / "s2"), "--step", "2"]) == 0
    m = load_pretrained(tmp_path / "s2", Runtime(torch.device("cpu"), torch.float32, "sdpa"))
    exported = m.model.state_dict()
    step2 = checkpoint_model_state(run / "checkpoints" / "step-0000002")
    step3 = checkpoint_model_state(run / "checkpoints" / "step-0000003")
    for k, v in exported.items():
        torch.testing.assert_close(v, step2[f"model.{k}"], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(v, step3[f"model.{k}"]) for k, v in exported.items())
    # a step not on disk: exit 2, and the message lists what is kept
    assert export_main([str(run), str(tmp_path / "s9"), "--step", "9"]) == 2
    err = capsys.readouterr().err
    assert "step 9" in err and "step-0000003" in err
    assert not (tmp_path / "s9").exists()
