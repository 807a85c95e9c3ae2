"""The engine asks with exactly the text (and tokens) the converter wrote for training.

For every task a raw benchmark record goes through ``video3d_train.convert`` and
``video3d_train.data.parse_sample`` (the training path); the same question goes
through the public engine method (the inference path, as used by the ROS node), whose
task text is captured where it enters the processor.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from video3d_ros.geometry import Box3D
from video3d_ros.model.engine import Video3DEngine
from video3d_ros.model.modeling import Video3DModel
from video3d_ros.model.processor import (
    Video3DProcessor,
    grounding_prompt,
    multi_grounding_prompt,
    referring_text,
)
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import GROUND_TOKEN, build_tokenizer, token_ids_of
from video3d_train import convert as cv
from video3d_train.data import Sample, Task, parse_sample

SCENE = "scene0000_00"
BOX = [1.0, 2.0, 0.5, 0.4, 0.6, 1.0]
BOXES = {SCENE: {"3": BOX, "4": [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]}}
DESCRIPTION = "this is a brown door. it is right of the white table."
NUM_FRAMES = 2


class _Captured(Exception):
    """Raised by the spy once the engine has handed its task text to the processor."""


@pytest.fixture(scope="module")
def engine() -> Video3DEngine:
    corpus = [DESCRIPTION, "Identify the object according to the following description.",
              "Given an object located at , describe the object in detail.",
              "What colour is the door? Answer the question simply. brown",
              "I am standing by the table. Which way is the door? right"] * 20
    tok = build_tokenizer(corpus, vocab_size=400)
    config = tiny(len(tok), token_ids_of(tok))
    torch.manual_seed(0)
    return Video3DEngine(Video3DModel(config).eval(), Video3DProcessor(tok, config),
                         max_new_tokens=4)


def _engine_text(engine: Video3DEngine, call) -> str:
    """The task text an engine query passes to the processor."""
    seen: list[str] = []

    def spy(task_text: str) -> list[int]:
        seen.append(task_text)
        raise _Captured

    engine._suffix = spy  # instance attribute shadows the method for this call only
    try:
        with pytest.raises(_Captured):
            call()
    finally:
        del engine._suffix
    assert len(seen) == 1
    return seen[0]


def _training_sample(records: list[dict], task: Task) -> Sample:
    assert len(records) >= 1
    for r in records:
        cv.validate_processed(r)
    s = parse_sample(records[-1], "test.json")
    assert s.task is task
    return s


def _assert_same_tokens(engine: Video3DEngine, sample: Sample, engine_text: str,
                        appended: list[int] = ()) -> None:
    """Training ids (prompt + answer) start with the ids the engine feeds the model."""
    proc = engine.processor
    train_ids = proc.encode(NUM_FRAMES, sample.prompt, sample.answer).input_ids.tolist()
    infer_ids = proc.prefix_ids(NUM_FRAMES) + proc.suffix_ids(engine_text)[0] + list(appended)
    assert train_ids[:len(infer_ids)] == infer_ids


def test_scanrefer_prompt_matches_engine_ground(engine):
    raw = [{"scene_id": SCENE, "object_id": "3", "object_name": "door", "ann_id": "0",
            "description": DESCRIPTION}]
    s = _training_sample(cv.convert_scanrefer(raw, BOXES), Task.SCANREFER)
    text = _engine_text(engine, lambda: engine.ground(DESCRIPTION, [Box3D(BOX[:3], BOX[3:])]))
    assert text == s.prompt
    _assert_same_tokens(engine, s, text, [engine.processor.token_ids.ground])


def test_multi3drefer_prompt_matches_engine_ground_multiple(engine):
    raw = [{"scene_id": SCENE, "object_ids": [3, 4], "ann_id": "0", "description": DESCRIPTION,
            "eval_type": "mt"}]
    s = _training_sample(cv.convert_multi3drefer(raw, BOXES), Task.MULTI3DREFER)
    assert s.prompt == multi_grounding_prompt(DESCRIPTION)
    assert s.prompt.startswith(grounding_prompt(DESCRIPTION) + "\n")
    assert s.answer == GROUND_TOKEN
    text = _engine_text(engine, lambda: engine.ground(DESCRIPTION, [Box3D(BOX[:3], BOX[3:])],
                                                      multiple=True))
    assert text == s.prompt
    _assert_same_tokens(engine, s, text, [engine.processor.token_ids.ground])


def test_scan2cap_prompt_matches_engine_caption(engine):
    raw = [{"scene_id": SCENE, "object_id": "3", "object_name": "door", "ann_id": "0",
            "description": DESCRIPTION}]
    s = _training_sample(cv.convert_scan2cap(raw, BOXES, split="train"), Task.SCAN2CAP)
    text = _engine_text(engine, lambda: engine.caption(Box3D(BOX[:3], BOX[3:])))
    assert text == s.prompt
    _assert_same_tokens(engine, s, text)


def test_scanqa_prompt_matches_engine_ask(engine):
    question = "What colour is the door right of the table?"
    raw = [{"question_id": "q0", "scene_id": SCENE, "question": question, "answers": ["brown"]}]
    s = _training_sample(cv.convert_scanqa(raw), Task.SCANQA)
    text = _engine_text(engine, lambda: engine.ask(question))
    assert text == s.prompt
    _assert_same_tokens(engine, s, text)


def test_sqa3d_prompt_matches_engine_ask_situated(engine):
    situation, question = "I am standing by the table.", "Which way is the door?"
    questions = {"questions": [{"question_id": 7, "situation": situation, "question": question,
                                "alternative_situation": []}]}
    annotations = {"annotations": [{"question_id": 7, "scene_id": SCENE,
                                    "answers": [{"answer": "right"}]}]}
    s = _training_sample(cv.convert_sqa3d(questions, annotations, split="val"), Task.SQA3D)
    text = _engine_text(engine, lambda: engine.ask_situated(situation, question))
    assert text == s.prompt
    _assert_same_tokens(engine, s, text)


def test_referring_text_only_upper_cases_the_first_character(engine):
    assert referring_text(DESCRIPTION) == DESCRIPTION[0].upper() + DESCRIPTION[1:]
    user = "The lamp. It stands next to the TV."
    text = _engine_text(engine, lambda: engine.ground(user, [Box3D(BOX[:3], BOX[3:])]))
    assert text.endswith("\n" + user)  # capitals after the first stay as the user wrote them
    assert referring_text("") == ""


def test_prompt_texts_match_existing_processed_files():
    """Processed files already on disk (and the trained models) use exactly these texts."""
    from video3d_ros.model.processor import caption_prompt, qa_prompt, sqa_prompt

    assert caption_prompt() == " Given an object located at <coord> , describe the object in detail."
    assert grounding_prompt("the door.") == (
        "Identify the object according to the following description.\nThe door.")
    assert multi_grounding_prompt("the door.") == (
        "Identify the object according to the following description.\nThe door.\n"
        "There may be no corresponding object, or there may be one or more objects.")
    assert qa_prompt("Where?") == " Where? Answer the question simply."
    assert sqa_prompt("I sit.", "Where?") == (
        " I sit. Where? Answer the question using a single word or phrase.")
