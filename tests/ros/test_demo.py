"""The README's first command: ``video3d-demo`` (what ``scripts/demo.sh`` runs) — a real
rclpy graph, a synthetic RGB-D camera in a generated room, the node with the embedded
model and four queries over the Query service."""

from __future__ import annotations

import re

import pytest

from video3d_ros.ros.demo import main
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR, load_engine

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_demo_answers_four_queries_and_draws_them(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0  # every query answered OK
    out = capsys.readouterr().out
    assert re.search(r"demo: 32 keyframes cover \d+ voxels", out)  # the node's default buffer
    assert re.search(r"demo: keyframes prepared by the node after [\d.]+ s", out)  # before asking
    answers = dict(re.findall(r"^\[(\w+)\].*\n  -> OK: (.*)$", out, flags=re.M))
    assert set(answers) == {"ground", "question", "situated", "caption"}
    assert answers["ground"].startswith("box centre (")
    # the caption is whole: the node's answer length, not a test harness's 4 tokens (a
    # caption of the embedded model is a sentence about the object, then one about its size)
    caption = re.fullmatch(r"'(.*)'   \(truth: .*\)", answers["caption"]).group(1)
    tok = load_engine(EMBEDDED_MODEL_DIR, device="cpu").processor.tokenizer
    assert len(tok(caption, add_special_tokens=False)["input_ids"]) > 8, caption
    png = tmp_path / "demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
