"""The embedded model's phases: grounding only from scratch, then all tasks from its final/;
and the answers-then-mix cycle that continues it (phases 17–24)."""

import json
import shutil

import torch
from video3d_ros.model.checkpoint import load_pretrained, load_tokenizer, trained_frames_of
from video3d_ros.model.config import BoxSizeEncoding
from video3d_ros.model.runtime import Runtime
from video3d_ros.model.tokenizer import build_tokenizer
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
from video3d_train.data import read_processed, write_questions_of_kind
from video3d_train.recipes import load_recipe
from video3d_train.train import read_samples, tokenizer_corpus, train

CPU = Runtime(torch.device("cpu"), torch.float32, "sdpa")
SMALL = ["data.num_frames=2", "max_steps=2", "micro_batch_size=2", "save_every_steps=2",
         "log_every_steps=1", "model.tokenizer_vocab_size=300"]


def test_phase_one_then_phase_two(generated_root, tmp_path):
    g = load_recipe("tiny_generated_ground").with_overrides([f"data.root={generated_root}", *SMALL])
    assert all("refer" in f for f in g.data.train_files)  # grounding only
    run1 = train(g, tmp_path / "ground", progress_bar=False)
    # the phase-1 tokenizer learned every task's texts, not only the grounding ones
    vocab = load_tokenizer(run1 / "tokenizer").get_vocab()
    every = build_tokenizer(tokenizer_corpus(read_samples(g, g.data.tokenizer_files, False)), 300)
    only = build_tokenizer(tokenizer_corpus(read_samples(g, g.data.train_files, False)), 300)
    assert vocab == every.get_vocab() and vocab != only.get_vocab()
    first = load_pretrained(run1 / "final", CPU)
    assert first.model.config.position.box_size is BoxSizeEncoding.SINUSOIDAL

    a = load_recipe("tiny_generated").with_overrides(
        [f"data.root={generated_root}", f"model.checkpoint={run1 / 'final'}", *SMALL])
    assert len(a.data.train_files) == 5
    run2 = train(a, tmp_path / "all", progress_bar=False)
    second = load_pretrained(run2 / "final", CPU)
    assert second.model.config.position.box_size is BoxSizeEncoding.SINUSOIDAL
    assert second.tokenizer.get_vocab() == vocab  # phase 2 kept phase 1's tokenizer
    # both record the frame count they were trained with: the node and `video3d ask` default to it
    assert trained_frames_of(run1 / "final") == trained_frames_of(run2 / "final") == 2
    assert first.trained_frames == second.trained_frames == 2  # and the loader hands it on
    w1, w2 = first.model.state_dict(), second.model.state_dict()
    assert w1.keys() == w2.keys()
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)  # phase 2 trained


def test_answers_then_mix_cycle_from_the_embedded_model(generated_root, tmp_path):
    """Phases 17–24 of the embedded model: ``tiny_generated_answers`` (the two QA files, no
    grounding, no answer losses) then ``tiny_generated_mix`` (all five tasks, grounding back)."""
    root = tmp_path / "rooms"
    shutil.copytree(generated_root, root)
    # the mix's colour-question file, as default_model/README.md writes it
    colour = root / "processed/scanqa_colour_train.json"
    n = write_questions_of_kind(root / "processed/scanqa_train_llava_style.json", colour, "colour")
    assert n > 0, "the rooms have no colour questions"
    assert [s.question_type for s in read_processed(colour)[0]] == ["colour"] * n

    small = [f"data.root={root}", "data.num_frames=2", "max_steps=4", "micro_batch_size=4",
             "save_every_steps=4", "log_every_steps=1"]
    answers = load_recipe("tiny_generated_answers").with_overrides(
        [*small, f"model.checkpoint={EMBEDDED_MODEL_DIR}"])
    assert sorted(answers.data.train_files) == ["processed/scanqa_train_llava_style.json",
                                                "processed/sqa3d_train_llava_style.json"]
    assert answers.answer_attention_loss_scale == answers.answer_readout_loss_scale == 0.0
    run1 = train(answers, tmp_path / "answers", progress_bar=False)
    hist1 = [json.loads(line) for line in (run1 / "history.jsonl").read_text().splitlines()]
    assert len(hist1) == 4 and all(h["ground_loss"] == 0.0 for h in hist1)

    mix = load_recipe("tiny_generated_mix").with_overrides([*small, f"model.checkpoint={run1 / 'final'}"])
    assert len(mix.data.train_files) == 6 and mix.optim.lr < answers.optim.lr
    run2 = train(mix, tmp_path / "mix", progress_bar=False)
    hist2 = [json.loads(line) for line in (run2 / "history.jsonl").read_text().splitlines()]
    assert any(h["ground_loss"] > 0.0 for h in hist2)  # the grounding samples are back

    start = load_pretrained(EMBEDDED_MODEL_DIR, CPU)
    end = load_pretrained(run2 / "final", CPU)
    assert end.tokenizer.get_vocab() == start.tokenizer.get_vocab()  # the tokenizer is kept
    w0, w2 = start.model.state_dict(), end.model.state_dict()
    assert any(not torch.equal(w0[k], w2[k]) for k in w0)
