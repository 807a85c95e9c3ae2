"""What we write gets the mode any new file gets under the umask, not a private 0600:
a model trained by one user must be readable by the node running as another. (safetensors
and ``tempfile`` both create 0600 files.)"""

import os
import stat

import pytest
import torch

from video3d_ros.files import atomic_write_bytes, process_umask
from video3d_ros.model.build import build_empty, materialize
from video3d_ros.model.checkpoint import WEIGHTS_NAME, load_pretrained, save_pretrained
from video3d_ros.model.runtime import Runtime
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_process_umask_reads_without_changing(umask_022):
    assert process_umask() == 0o022
    os.umask(0o027)
    assert process_umask() == 0o027 and process_umask() == 0o027


def test_atomic_write_honours_the_umask(tmp_path, umask_022):
    p = atomic_write_bytes(tmp_path / "sub" / "a.json", b"{}")
    assert p.read_bytes() == b"{}" and mode(p) == 0o644
    os.umask(0o077)
    assert mode(atomic_write_bytes(tmp_path / "b.json", b"{}")) == 0o600
    assert not [q for q in tmp_path.rglob("*.tmp")]  # no temporary file left behind


def test_saved_weights_are_readable_by_others(tmp_path, umask_022):
    tok = build_tokenizer(["a chair next to the table"] * 4, vocab_size=300)
    model = materialize(build_empty(tiny(len(tok), token_ids_of(tok))),
                        Runtime(torch.device("cpu"), torch.float32, "sdpa"), seed=0)
    save_pretrained(model, tok, tmp_path / "m")
    assert mode(tmp_path / "m" / WEIGHTS_NAME) == 0o644
    assert mode(tmp_path / "m" / "config.json") == 0o644
    load_pretrained(tmp_path / "m", Runtime(torch.device("cpu"), torch.float32, "sdpa"))


def test_training_checkpoint_parts_are_readable_by_others(tmp_path, umask_022):
    from video3d_train.checkpointing import (
        TrainProgress,
        partial_checkpoint_dir,
        save_training_checkpoint,
    )

    partial = partial_checkpoint_dir(tmp_path, 3)
    (partial / "engine").mkdir(parents=True)
    weights = partial / "engine" / "model.safetensors"
    weights.write_bytes(b"x")
    os.chmod(weights, 0o600)  # as the engine's safetensors writer leaves it
    done = save_training_checkpoint(tmp_path, TrainProgress(step=3), {}, partial=partial)
    assert mode(done / "engine" / "model.safetensors") == 0o644
    assert mode(done / "state.pt") == 0o644 and mode(done) == 0o755
    own = save_training_checkpoint(tmp_path, TrainProgress(step=4), {})  # mkdtemp's folder
    assert mode(own) == 0o755
