"""Pack a processed file's questions into multi-turn conversations, one room each.

``video3d-pack-turns --src processed/scanqa_train_llava_style.json --dst
processed/scanqa_train_turns8.json --turns 8`` writes LLaVA-style samples whose
``conversations`` hold up to 8 question/answer pairs about one room: the first
human turn keeps the ``<image>``, the later ones are the other questions without
it. Training puts the language-model loss on every answer, so a step reads each
room's frames once for several answers instead of one (the frames are most of the
sequence). Only ScanQA and SQA3D are packed: their prompts are plain text
(grounding answers need one ``<ground>`` per sample; a caption's ``<coord>`` box
is per sample). A sample's metadata are its first question's.

Every input sample lands in exactly one conversation, and no conversation asks
the same question twice (ScanQA's several accepted answers to one question are
separate samples: they go to different conversations).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from video3d_ros.model.tokenizer import VIDEO_TOKEN

from .checkpointing import atomic_write_bytes
from .cli import run_command
from .data import MULTI_TURN_TASKS, DataError, parse_sample, read_sample_list


def pack_turns(records: Sequence[Mapping], turns: int, seed: int, file: str = "<records>") -> list[dict]:
    """Processed single-question samples → multi-turn samples of at most ``turns`` questions.

    Samples are grouped by room (``video``), shuffled with ``seed`` and dealt into
    conversations in that order, each sample into the first open conversation of its
    room that does not already ask its question.

    Raises:
        DataError: naming ``file`` and the sample, for a sample that does not parse, is
            already multi-turn, or is not of a packable task.
    """
    if turns < 1:
        raise ValueError(f"turns must be >= 1, got {turns}")
    by_room: dict[str, list[tuple[Mapping, str]]] = defaultdict(list)
    for raw in records:
        sample = parse_sample(raw, file)
        if sample.task not in MULTI_TURN_TASKS:
            only = ", ".join(t.value for t in MULTI_TURN_TASKS)
            raise DataError.in_sample(file, raw["id"],
                                      f"{sample.task.value} samples are not packed (only {only})")
        if sample.follow_ups:
            raise DataError.in_sample(file, raw["id"], "already holds several questions")
        by_room[sample.video].append((raw, sample.prompt))
    rng = random.Random(seed)
    out = []
    for video in sorted(by_room):
        group = by_room[video]
        rng.shuffle(group)
        open_: list[tuple[list[Mapping], set[str]]] = []
        for raw, question in group:
            for members, asked in open_:
                if len(members) < turns and question not in asked:
                    members.append(raw)
                    asked.add(question)
                    break
            else:
                open_.append(([raw], {question}))
        for k, (members, _) in enumerate(open_):
            first = members[0]
            conversations = [dict(t) for t in first["conversations"]]
            for other in members[1:]:
                human, answer = other["conversations"]
                conversations += [{"from": "human", "value": human["value"].replace(VIDEO_TOKEN, "", 1)},
                                  {"from": "gpt", "value": answer["value"]}]
            out.append({**first, "id": f"{first['id']}+{len(members) - 1}", "conversations": conversations})
    return out


def _run(a: argparse.Namespace) -> int:
    records = read_sample_list(a.src)  # DataError naming the file when it is not a JSON list
    packed = pack_turns(records, a.turns, a.seed, str(a.src))
    a.dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(a.dst, json.dumps(packed).encode())
    print(f"{a.dst}: {len(records)} questions in {len(packed)} conversations "
          f"({len(records) / max(len(packed), 1):.2f} a conversation)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-pack-turns", description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, required=True, help="processed ScanQA or SQA3D JSON file")
    p.add_argument("--dst", type=Path, required=True, help="multi-turn JSON file to write")
    p.add_argument("--turns", type=int, default=8, help="questions per conversation at most")
    p.add_argument("--seed", type=int, default=0, help="order of the questions in a room")
    a = p.parse_args(argv)
    if a.turns < 1:
        p.error(f"--turns must be >= 1, got {a.turns}")
    return run_command("video3d-pack-turns", lambda: _run(a))


if __name__ == "__main__":
    raise SystemExit(main())
