"""Fixtures: a real byte-level BPE tokenizer, tiny models, synthetic RGB-D frames."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from video3d_ros.model.engine import Video3DEngine
from video3d_ros.model.modeling import Video3DModel
from video3d_ros.model.processor import Video3DProcessor
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of

OBJECTS = ["chair", "table", "lamp", "bed", "sofa", "cabinet", "door", "window", "desk"]
COLOURS = ["red", "brown", "white", "black", "blue"]


def scene_corpus() -> list[str]:
    """Templated scene questions, answers and descriptions."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(400):
        a, b = rng.choice(OBJECTS, 2, replace=False)
        c = rng.choice(COLOURS)
        out += [
            f"How many {a}s are there in the room? There are {i % 6} {a}s.",
            f"What is left of the {b}? The {c} {a} is left of the {b}.",
            f"This is a {c} {a}. It is placed next to the {b} near the wall.",
            f"I am sitting on the {b} facing the {a}. Which way should I turn? left",
        ]
    return out


@pytest.fixture(scope="session")
def corpus():
    return scene_corpus()


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(scene_corpus(), vocab_size=600)


@pytest.fixture(scope="session")
def tiny_config(tokenizer):
    return tiny(len(tokenizer), token_ids_of(tokenizer))


@pytest.fixture()
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return Video3DModel(tiny_config).eval()


@pytest.fixture()
def processor(tokenizer, tiny_config):
    return Video3DProcessor(tokenizer, tiny_config)


@pytest.fixture()
def engine(tiny_model, processor):
    return Video3DEngine(tiny_model, processor, max_new_tokens=8)


def make_frame(seed: int, height: int = 120, width: int = 160):
    """A frame looking at a tilted plane: rgb, world xyz (metres) and validity."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    xyz = np.stack([u * 0.02 + seed * 0.3, v * 0.02, 1.0 + 0.005 * u], axis=-1).astype(np.float32)
    valid = np.ones((height, width), dtype=bool)
    valid[:5] = False
    return rgb, xyz, valid


@pytest.fixture(scope="session")
def frame_factory():
    return make_frame


@pytest.fixture()
def frames():
    return [make_frame(s) for s in range(8)]
