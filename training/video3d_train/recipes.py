"""Training recipes: typed, validated dataclasses with a YAML round trip.

A recipe is everything that decides a run: model shape and initial weights,
data files and frame sampling, optimiser and schedule, losses, precision and
the distributed engine. Shipped recipes live in ``recipes/*.yaml`` and are
loaded by name (``load_recipe("tiny_generated")``) or by path.

A recipe file may start from another with ``base:`` (a shipped recipe's name, or a
path relative to the file) and write only what differs: its sections (``model``,
``data``, ``optim``) are merged key by key into the base's, and every value it sets —
a list or mapping included — replaces the base's whole. A recipe with a base names
itself. What a run saves (``save_recipe``) is the resolved recipe, with no base.

    recipe = load_recipe("paper_7b")
    recipe.optim.lr                      # 1e-05
    save_recipe(recipe, "run/recipe.yaml")  # exact round trip
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from video3d_ros.geometry import FrameFit
from video3d_ros.keyframes import SamplingStrategy
from video3d_ros.model.config import (BoxSizeEncoding, GroundLossKind, ModelPart, PromptLayout,
                                      RandomInit)

from .metrics import Task

RECIPE_DIR = Path(__file__).parent / "recipes"
# tasks whose samples may name the objects their answer is about (metadata.object_id)
ANSWER_LOSS_TASKS = (Task.SCANQA, Task.SQA3D)


class Precision(enum.Enum):
    """Parameter/activation precision. BF16 is autocast on GPU (fp32 master weights)."""

    FP32 = "fp32"
    BF16 = "bf16"


class DistributedEngine(enum.Enum):
    """How many processes share the model (torchrun launches them)."""

    NONE = "none"  # one process (CPU or one GPU), or plain data parallel (DDP) under torchrun
    FSDP = "fsdp"  # torch FSDP, fully sharded (params, grads, optimiser state)
    DEEPSPEED_ZERO3 = "deepspeed_zero3"  # DeepSpeed ZeRO stage 3 (needs the deepspeed package)


class Schedule(enum.Enum):
    """Learning-rate schedule after the linear warm-up."""

    COSINE = "cosine"
    CONSTANT = "constant"


class ReadoutSource(enum.Enum):
    """What the answer-readout loss (our option, step.py) reads through the logit lens."""

    ATTENDED = "attended"  # what the supervised heads output at the answer position
    OBJECTS = "objects"  # what they would output with all attention on the named objects
    # (the mean of their values there): trains the value path alone


class ModelInit(enum.Enum):
    """Where the weights of step 0 come from."""

    RANDOM = "random"  # a fresh model of ``shape`` (tiny, tests)
    CHECKPOINT = "checkpoint"  # ``checkpoint`` directory in our layout (config.json + safetensors)


@dataclass
class ModelRecipe:
    shape: str = "tiny"  # named shape of video3d_ros.model.shapes.SHAPES
    init: ModelInit = ModelInit.RANDOM  # where initial weights come from
    checkpoint: str | None = None  # directory of the initial checkpoint (init=checkpoint)
    tokenizer: str | None = None  # tokenizer directory; None: train one on the train texts
    tokenizer_vocab_size: int = 1024  # BPE size when a tokenizer is trained
    ground_loss: GroundLossKind = GroundLossKind.INFONCE  # grounding loss family
    random_init: RandomInit = RandomInit.NORMAL_0_02  # weight draw of a fresh model (init=random)
    box_size: BoxSizeEncoding = BoxSizeEncoding.NONE  # size encoding of a fresh model's boxes
    prompt_layout: PromptLayout | None = None  # None: the checkpoint's (a fresh model: video_first)
    reinit: list[ModelPart] = field(default_factory=list)  # parts of the checkpoint re-drawn (random_init)
    # pooling of the patch grid into the LLM's video tokens; None: the checkpoint's (fresh: the
    # shape's). The projector is per patch, so a checkpoint can be trained at another stride
    pool_stride: int | None = None
    # how a frame becomes the tower's square (centre_crop, the paper's; pad: the whole
    # frame); None: the checkpoint's (fresh: centre_crop)
    frame_fit: FrameFit | None = None

    def __post_init__(self) -> None:
        from video3d_ros.model.shapes import SHAPES

        self.init = ModelInit(self.init)
        self.ground_loss = GroundLossKind(self.ground_loss)
        self.random_init = RandomInit(self.random_init)
        self.box_size = BoxSizeEncoding(self.box_size)
        if self.prompt_layout is not None:
            self.prompt_layout = PromptLayout(self.prompt_layout)
        if self.frame_fit is not None:
            self.frame_fit = FrameFit(self.frame_fit)
        self.reinit = [ModelPart(p) for p in self.reinit]
        if self.reinit and self.init is not ModelInit.CHECKPOINT:
            raise ValueError("model.reinit re-draws parts of a loaded checkpoint; a fresh model "
                             "(init=random) is all random already")
        if self.init is ModelInit.CHECKPOINT and self.box_size is not BoxSizeEncoding.NONE:
            raise ValueError("model.box_size applies to a fresh model (init=random); a "
                             "checkpoint keeps the size encoding it was trained with")
        if self.shape not in SHAPES:
            raise ValueError(f"model.shape {self.shape!r} is not one of {sorted(SHAPES)}")
        if self.init is ModelInit.CHECKPOINT and not self.checkpoint:
            raise ValueError("model.init is 'checkpoint' but model.checkpoint is not set")
        _positive(self, "tokenizer_vocab_size")
        if self.pool_stride is not None:
            _positive(self, "pool_stride")


@dataclass
class DataRecipe:
    root: str = "data"  # folder holding scannet/ (posed_images, pcd_with_object_aabbs)
    train_files: list[str] = field(default_factory=list)  # processed JSON files (under root)
    # how many times a training file's samples enter the mix (oversampling one benchmark);
    # keys are entries of train_files, files not named enter once
    train_repeats: dict[str, int] = field(default_factory=dict)
    val_files: list[str] = field(default_factory=list)  # processed JSON files for evaluation
    num_frames: int = 8  # frames per sample
    sampling: SamplingStrategy = SamplingStrategy.UNIFORM  # frame sampling
    selection_file: str | None = None  # max-coverage selection JSON (sampling ≠ uniform)
    proposals_file: str | None = None  # evaluation proposals (None: ground-truth boxes)
    max_length: int = 32768  # longest token sequence; longer samples are an error
    cache_dir: str | None = None  # an on-disk decoded-scene cache: not implemented (must be null)
    # decoded scenes kept in memory per process (None: all of them — fine for generated rooms
    # at 112 px; 0: decode on every access; N: the N most recently used)
    max_cached_scenes: int | None = None
    tokenizer_files: list[str] = field(default_factory=list)  # texts a fresh tokenizer learns
    # from (empty: train_files); a grounding-only first phase still needs every task's words

    def __post_init__(self) -> None:
        self.sampling = SamplingStrategy.parse(self.sampling)
        self.train_files = [str(f) for f in self.train_files]
        self.val_files = [str(f) for f in self.val_files]
        self.tokenizer_files = [str(f) for f in self.tokenizer_files]
        if not isinstance(self.train_repeats, dict):
            raise ValueError(f"data.train_repeats must be a mapping file → count, got "
                             f"{self.train_repeats!r}")
        self.train_repeats = {str(k): v for k, v in self.train_repeats.items()}
        for f, n in self.train_repeats.items():
            if f not in self.train_files:
                raise ValueError(f"data.train_repeats names {f!r}, which is not one of "
                                 f"data.train_files {self.train_files}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"data.train_repeats[{f!r}] must be an integer ≥ 1, got {n!r}")
        _positive(self, "num_frames")
        _positive(self, "max_length")
        if self.sampling is not SamplingStrategy.UNIFORM and not self.selection_file:
            raise ValueError(f"data.sampling {self.sampling.value!r} needs data.selection_file")
        if self.cache_dir is not None:
            raise ValueError(f"data.cache_dir={self.cache_dir!r}: an on-disk scene cache is not "
                             "implemented; decoded scenes are kept in memory "
                             "(data.max_cached_scenes)")
        if self.max_cached_scenes is not None and self.max_cached_scenes < 0:
            raise ValueError(f"data.max_cached_scenes must be ≥ 0 or null, got "
                             f"{self.max_cached_scenes}")


@dataclass
class OptimRecipe:
    lr: float = 1e-5  # peak learning rate of the projector, LLM and heads
    vision_lr: float = 2e-6  # peak learning rate of the vision tower
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    warmup_ratio: float = 0.03  # share of steps with linear warm-up
    schedule: Schedule = Schedule.COSINE  # decay after warm-up
    grad_clip: float = 1.0  # max global grad norm (0: no clipping)

    def __post_init__(self) -> None:
        self.schedule = Schedule(self.schedule)
        for name in ("lr", "vision_lr", "weight_decay", "eps", "warmup_ratio", "grad_clip"):
            _to_float(self, f"optim.{name}", name)
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        for name in ("lr", "vision_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"optim.{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.eps <= 0:
            raise ValueError("optim.weight_decay/grad_clip must be ≥ 0 and eps > 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass
class TrainRecipe:
    name: str  # recipe name (file stem)
    model: ModelRecipe = field(default_factory=ModelRecipe)
    data: DataRecipe = field(default_factory=DataRecipe)
    optim: OptimRecipe = field(default_factory=OptimRecipe)
    seed: int = 0  # seeds data order, initial weights and augmentations
    epochs: int = 1  # passes over the training files
    max_steps: int | None = None  # stop after this many optimiser steps (None: epochs)
    micro_batch_size: int = 1  # samples per process per forward
    grad_accum: int = 1  # micro-batches per optimiser step
    ground_loss_scale: float = 1.0  # weight of the grounding loss next to the LM loss
    answer_attention_loss_scale: float = 0.0  # our option (0: off, the paper): weight of the
    # loss that pulls the answer's attention onto the objects ScanQA names (step.py)
    answer_attention_heads: int = 1  # last-layer heads that loss supervises (the first k)
    answer_readout_loss_scale: float = 0.0  # our option (0: off, the paper): weight of the
    # loss that makes those heads' output alone predict the first answer token (step.py)
    answer_readout_source: ReadoutSource = ReadoutSource.ATTENDED  # what that loss reads
    answer_loss_tasks: list[Task] = field(default_factory=lambda: [Task.SCANQA])  # whose
    # samples with metadata.object_id get those two losses (scanqa and/or sqa3d), and with
    # metadata.subject_object_id the next one
    subject_attention_loss_scale: float = 0.0  # our option (0: off, the paper): weight of the
    # loss that pulls one layer's attention at the answer onto the objects the question
    # names (our generator's metadata.subject_object_id; step.py)
    subject_attention_layer: int = 0  # that layer (0: the first; -1: the last)
    subject_attention_heads: int = 1  # its heads that loss supervises (the first k)
    ground_subject_first: bool = False  # our option (off: the paper): a ScanQA question that
    # names one object is answered "<ground><coord>answer" — ground that object (grounding
    # loss), read its object feature put into <coord>, then answer (data.grounds_subject_first)
    ground_subject_neighbours: int = 0  # with it: the features of this many objects nearest
    # the named one follow it, one <coord> each (what is next to / under it)
    ground_answer_object: bool = False  # our option, with ground_subject_first (no
    # neighbours): where the answer names one other object (what is next to / under / on the
    # named one), a second "<ground><coord>" hop grounds that object and reads its box
    # before the answer (data.answer_object_ids)
    precision: Precision = Precision.FP32  # bf16 autocast on GPU
    gradient_checkpointing: bool = False  # recompute activations of the LLM and tower
    distributed: DistributedEngine = DistributedEngine.NONE  # sharding engine under torchrun
    save_every_steps: int = 500  # checkpoint interval (and at the end)
    keep_checkpoints: int = 2  # newest training checkpoints kept on disk (older ones removed)
    log_every_steps: int = 10  # loss/lr logging interval
    num_workers: int = 0  # DataLoader worker processes

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelRecipe(**self.model)
        if isinstance(self.data, dict):
            self.data = DataRecipe(**self.data)
        if isinstance(self.optim, dict):
            self.optim = OptimRecipe(**self.optim)
        self.precision = Precision(self.precision)
        self.answer_readout_source = ReadoutSource(self.answer_readout_source)
        _to_float(self, "ground_loss_scale", "ground_loss_scale")
        _to_float(self, "answer_attention_loss_scale", "answer_attention_loss_scale")
        _to_float(self, "answer_readout_loss_scale", "answer_readout_loss_scale")
        _positive(self, "answer_attention_heads")
        _to_float(self, "subject_attention_loss_scale", "subject_attention_loss_scale")
        _positive(self, "subject_attention_heads")
        if isinstance(self.ground_subject_neighbours, bool) \
                or not isinstance(self.ground_subject_neighbours, int) or self.ground_subject_neighbours < 0:
            raise ValueError(f"ground_subject_neighbours must be an integer >= 0, got "
                             f"{self.ground_subject_neighbours!r}")
        if not isinstance(self.ground_subject_first, bool):
            raise ValueError(f"ground_subject_first must be true or false, got "
                             f"{self.ground_subject_first!r}")
        if self.ground_subject_neighbours and not self.ground_subject_first:
            raise ValueError("ground_subject_neighbours needs ground_subject_first: true")
        if not isinstance(self.ground_answer_object, bool):
            raise ValueError(f"ground_answer_object must be true or false, got "
                             f"{self.ground_answer_object!r}")
        if self.ground_answer_object and (not self.ground_subject_first
                                          or self.ground_subject_neighbours):
            raise ValueError("ground_answer_object needs ground_subject_first: true and "
                             "ground_subject_neighbours: 0")
        self.answer_loss_tasks = [Task.parse(t) for t in self.answer_loss_tasks]
        if not self.answer_loss_tasks or any(t not in ANSWER_LOSS_TASKS for t in self.answer_loss_tasks):
            raise ValueError(f"answer_loss_tasks must name one or more of "
                             f"{[t.value for t in ANSWER_LOSS_TASKS]}, got "
                             f"{[t.value for t in self.answer_loss_tasks]}")
        for name in ("answer_attention_loss_scale", "answer_readout_loss_scale",
                     "subject_attention_loss_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        self.distributed = DistributedEngine(self.distributed)
        for name in ("epochs", "micro_batch_size", "grad_accum", "save_every_steps",
                     "keep_checkpoints", "log_every_steps"):
            _positive(self, name)
        if self.max_steps is not None:
            _positive(self, "max_steps")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be ≥ 0, got {self.num_workers}")
        if self.ground_loss_scale < 0:
            raise ValueError(f"ground_loss_scale must be ≥ 0, got {self.ground_loss_scale}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainRecipe":
        _check_keys(cls, d, "recipe")
        for key, sub in (("model", ModelRecipe), ("data", DataRecipe), ("optim", OptimRecipe)):
            if key in d:
                _check_keys(sub, d[key], key)
        return cls(**d)

    def with_overrides(self, overrides: list[str]) -> "TrainRecipe":
        """Apply ``section.key=value`` strings (values parsed as YAML)."""
        d = self.to_dict()
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r} is not key=value")
            key, value = item.split("=", 1)
            node, *path = key.strip().split(".")
            target = d
            for part in [node, *path][:-1]:
                if part not in target or not isinstance(target[part], dict):
                    raise ValueError(f"override {item!r}: unknown section {part!r}")
                target = target[part]
            last = [node, *path][-1]
            if last not in target:
                raise ValueError(f"override {item!r}: unknown key {last!r}")
            target[last] = yaml.safe_load(value)
        return TrainRecipe.from_dict(d)


def shipped_recipes() -> list[str]:
    """Names of the recipes under version control."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> TrainRecipe:
    """A shipped recipe by name, or a YAML file by path."""
    p = Path(name_or_path)
    if not p.suffix:
        p = RECIPE_DIR / f"{name_or_path}.yaml"
        if not p.exists():
            raise FileNotFoundError(f"no shipped recipe {name_or_path!r}; shipped: "
                                    f"{shipped_recipes()}")
    d = recipe_mapping(p)
    try:
        return TrainRecipe.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{p}: {e}") from e


_SECTIONS = ("model", "data", "optim")


def recipe_mapping(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe file's mapping with its ``base:`` chain resolved (see the module doc).

    Raises:
        FileNotFoundError: the file, or a base it names, does not exist.
        ValueError: not a YAML mapping, a base that is not a string, a cycle of bases,
            or a recipe with a base and no name of its own.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no recipe file {p}")
    with open(p) as f:
        d = yaml.safe_load(f)
    if not isinstance(d, dict):
        raise ValueError(f"{p}: a recipe must be a YAML mapping")
    if "base" not in d:
        return d
    base = d.pop("base")
    if not isinstance(base, str) or not base:
        raise ValueError(f"{p}: base must be a recipe name or path, got {base!r}")
    if "name" not in d:
        raise ValueError(f"{p}: a recipe with a base must set its own name")
    chain = (*_chain, p.resolve())
    base_path = RECIPE_DIR / f"{base}.yaml" if not Path(base).suffix else p.parent / base
    if base_path.resolve() in chain:
        names = " -> ".join(str(c.name) for c in (*chain, base_path.resolve()))
        raise ValueError(f"{p}: recipe bases form a cycle: {names}")
    if not base_path.is_file():
        raise FileNotFoundError(f"{p}: base {base!r} not found ({base_path}); shipped recipes: "
                                f"{shipped_recipes()}")
    merged = recipe_mapping(base_path, chain)
    for key, value in d.items():
        if key in _SECTIONS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def save_recipe(recipe: TrainRecipe, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def _positive(obj: object, name: str) -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _to_float(obj: object, label: str, name: str) -> None:
    """Accept numbers written as YAML strings ("3e-4" is a string in YAML 1.1)."""
    v = getattr(obj, name)
    try:
        setattr(obj, name, float(v))
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {v!r}") from None


def _check_keys(cls: type, d: Any, where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping, got {type(d).__name__}")
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {where} keys: {sorted(unknown)}")


def _plain(x: Any) -> Any:
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
