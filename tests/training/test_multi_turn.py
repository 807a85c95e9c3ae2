"""Multi-turn samples: packing a processed file, reading it, labels on every answer,
training on it, and the evaluator refusing it."""

import json

import pytest

from video3d_ros.model.processor import Video3DProcessor
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import IM_END, build_tokenizer, token_ids_of
from video3d_train.data import (
    DataError,
    SceneStore,
    Video3DDataset,
    parse_sample,
    read_processed,
    single_turns,
)
from video3d_train.pack import main as pack_main
from video3d_train.pack import pack_turns


def qa(i, room, question, answer):
    return {"id": i, "video": f"scannet/{room}",
            "conversations": [{"from": "human", "value": f"<image> {question} Answer the question simply."},
                              {"from": "gpt", "value": answer}],
            "metadata": {"dataset": "scanQA", "question_type": "unknow", "answers": [answer]}}


RECORDS = [qa(1, "scene0000_00", "What color is the chair?", "brown"),
           qa(2, "scene0000_00", "What color is the chair?", "dark brown"),  # 2nd answer, same question
           qa(3, "scene0000_00", "How many tables are there?", "2"),
           qa(4, "scene0000_00", "What is on the desk?", "lamp"),
           qa(5, "scene0001_00", "What color is the bed?", "white")]


def test_pack_deals_every_question_once_and_never_twice_in_a_conversation():
    packed = pack_turns(RECORDS, turns=2, seed=0)
    turns = {}  # (room, question) -> answers
    for rec in packed:
        s = parse_sample(rec, "p.json")
        questions = [s.prompt] + [q for q, _ in s.follow_ups]
        assert len(questions) <= 2 and len(set(questions)) == len(questions)
        for q, a in [(s.prompt, s.answer)] + s.follow_ups:
            turns.setdefault((s.video, q.replace("<image>", "")), []).append(a)
        assert "<image>" not in "".join(q for q, _ in s.follow_ups)
    assert sorted(a for v in turns.values() for a in v) == sorted(
        r["conversations"][1]["value"] for r in RECORDS)
    assert sorted(turns[("scannet/scene0000_00", " What color is the chair? Answer the question simply.")]) \
        == ["brown", "dark brown"]
    assert len(packed) == 3  # scene0000: 4 questions in 2 + 2, scene0001: 1
    assert pack_turns(RECORDS, turns=2, seed=0) == packed  # seeded
    assert len({r["id"] for r in packed}) == len(packed)


def test_pack_refuses_grounding_and_names_the_sample():
    ground = {"id": 7, "video": "scannet/scene0000_00",
              "conversations": [{"from": "human", "value": "<image>Find the chair."},
                                {"from": "gpt", "value": "<ground>"}],
              "box": [0, 0, 0, 1, 1, 1], "metadata": {"dataset": "scanrefer"}}
    with pytest.raises(DataError, match=r"g.json: sample 7: scanrefer samples are not packed"):
        pack_turns([ground], turns=4, seed=0, file="g.json")


def test_reader_checks_multi_turn_samples():
    rec = pack_turns(RECORDS[:1] + RECORDS[2:3], turns=4, seed=0)[0]
    assert len(parse_sample(rec, "f.json").follow_ups) == 1
    bad = json.loads(json.dumps(rec))
    bad["conversations"][2]["value"] = "<image> again?"
    with pytest.raises(DataError, match="f.json: sample .*only the first question may hold <image>"):
        parse_sample(bad, "f.json")
    bad["conversations"] = bad["conversations"][:3]
    with pytest.raises(DataError, match="human, gpt"):
        parse_sample(bad, "f.json")
    cap = {"id": 9, "video": "scannet/scene0000_00", "gt_box": [0, 0, 0, 1, 1, 1],
           "conversations": rec["conversations"], "metadata": {"dataset": "scan2cap"}}
    with pytest.raises(DataError, match="only ScanQA and SQA3D samples may hold several questions"):
        parse_sample(cap, "f.json")


@pytest.fixture(scope="module")
def packed_root(generated_root, tmp_path_factory):
    """The generated rooms' ScanQA training file packed 4 turns a conversation (by the CLI)."""
    src = generated_root / "processed" / "scanqa_train_llava_style.json"
    dst = generated_root / "processed" / "scanqa_train_turns4.json"
    assert pack_main(["--src", str(src), "--dst", str(dst), "--turns", "4"]) == 0
    return generated_root


def test_pack_command_names_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([RECORDS[0], {**RECORDS[1], "conversations": []}]))
    assert pack_main(["--src", str(bad), "--dst", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert f"video3d-pack-turns: error: {bad}: sample 2:" in err and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_every_answer_is_labelled_and_nothing_else(packed_root):
    texts = [p.read_text() for p in (packed_root / "processed").glob("*train*.json")]
    tok = build_tokenizer(texts, vocab_size=300)
    proc = Video3DProcessor(tok, tiny(len(tok), token_ids_of(tok)))
    samples, _ = read_processed(packed_root / "processed" / "scanqa_train_turns4.json")
    s = next(s for s in samples if len(s.follow_ups) >= 2)
    ds = Video3DDataset([s], SceneStore(packed_root, proc, num_frames=2), max_length=4096)
    it = ds.item(s)
    labelled = (it.labels != -100).nonzero().flatten().tolist()
    runs, start = [], labelled[0]  # contiguous runs of labelled positions
    for a, b in zip(labelled, labelled[1:] + [None]):
        if b != a + 1:
            runs.append(it.input_ids[start:a + 1].tolist())
            start = b
    answers = [s.answer] + [a for _, a in s.follow_ups]
    assert [proc.tokenizer.decode(r) for r in runs] == [f"{a}{IM_END}" for a in answers]
    # the questions are in the sequence, unlabelled, each after its predecessor's answer
    text = proc.tokenizer.decode(it.input_ids.tolist())
    positions = [text.index(q.strip()) for q in [s.prompt] + [q for q, _ in s.follow_ups]]
    assert positions == sorted(positions)
    single = proc.encode(2, s.prompt, s.answer)
    assert it.input_ids[:len(single.input_ids)].tolist() == single.input_ids.tolist()


def test_training_reads_a_packed_file_and_evaluation_refuses_it(packed_root, tmp_path):
    from video3d_train.evaluate import evaluate
    from video3d_train.recipes import load_recipe
    from video3d_train.train import train

    recipe = load_recipe("tiny_generated_ground").with_overrides([
        f"data.root={packed_root}", "data.num_frames=2", "max_steps=2", "micro_batch_size=2",
        "save_every_steps=2", "log_every_steps=1", "model.tokenizer_vocab_size=300",
        "data.train_files=[processed/scanqa_train_turns4.json]", "data.val_files=[]"])
    run = train(recipe, tmp_path / "run", progress_bar=False)
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2] and all(h["loss"] > 0 for h in history)
    with pytest.raises(DataError, match="questions in one conversation; evaluation asks one at a time"):
        evaluate(run / "final", packed_root, ["processed/scanqa_train_turns4.json"], tmp_path / "ev",
                 progress=False, meteor=False)


def test_baselines_count_every_answer_of_a_packed_training_file(packed_root, tmp_path):
    """The text-prior baselines learn the same answers from a packed file as from the file
    it was packed from (single_turns), and refuse a packed validation file."""
    from video3d_train.baselines import run_baselines
    from video3d_train.metrics import scanqa_question_kind

    proc = packed_root / "processed"
    flat, _ = read_processed(proc / "scanqa_train_llava_style.json")
    packed, _ = read_processed(proc / "scanqa_train_turns4.json")
    assert sum(len(s.follow_ups) for s in packed) > 0
    unpacked = single_turns(packed)
    key = lambda s: (s.video, s.prompt.replace("<image>", ""), s.answer)  # noqa: E731
    assert sorted(map(key, unpacked)) == sorted(map(key, flat))
    assert all(s.question_type == scanqa_question_kind(s.prompt) for s in unpacked)
    # the baselines read the packed file as the flat one: the same predictions, question by question
    val = ["processed/scanqa_val_llava_style.json"]
    run_baselines(packed_root, ["processed/scanqa_train_llava_style.json"], val, tmp_path / "a",
                  meteor=False)
    run_baselines(packed_root, ["processed/scanqa_train_turns4.json"], val, tmp_path / "b",
                  meteor=False)
    for name in ("most_frequent", "question_prior"):
        a, b = ((tmp_path / r / name / "scanqa.jsonl").read_text() for r in "ab")
        assert a == b and a.count("\n") > 0, name
    with pytest.raises(DataError, match="evaluation asks one at a time"):
        run_baselines(packed_root, ["processed/scanqa_train_turns4.json"],
                      ["processed/scanqa_train_turns4.json"], tmp_path / "c", meteor=False)
