"""Typed configuration of the Video-3D LLM.

One dataclass per component, composed into :class:`Video3DConfig`. Every closed
choice is an enum; the enums are mapped to classes/functions once, in the
factories of the modules that use them. Values are checked in ``__post_init__``
and errors name the field. ``to_dict``/``from_dict`` give a JSON round trip
(used by ``config.json`` of our checkpoint format).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

from video3d_ros.geometry import Aggregation, FrameFit, TokenGrid, token_grid


class ProjectorKind(enum.Enum):
    """Vision → language projector."""

    MLP2X_GELU = "mlp2x_gelu"  # Linear → GELU → Linear


class PoolMode(enum.Enum):
    """2-D pooling of the projected patch grid of a video frame."""

    AVERAGE = "average"
    MAX = "max"
    BILINEAR = "bilinear"  # the LLaVA-Video default


class NewlinePosition(enum.Enum):
    """Where the learned newline token goes in a frame's token sequence."""

    GRID = "grid"  # after every row of pooled tokens: G × (G + 1) tokens per frame
    NONE = "none"  # no newline token: G × G tokens per frame


class PromptLayout(enum.Enum):
    """Where the video goes in the user turn (see :mod:`video3d_ros.model.processor`)."""

    VIDEO_FIRST = "video_first"  # the paper's (LLaVA-Video): video, then the task text
    QUESTION_FIRST = "question_first"  # ours: task text, then the video, so video tokens
    #                                   attend to the question (no cached visual prefix)


class PositionEncodingKind(enum.Enum):
    """3D position encoding added to the pooled visual tokens."""

    NONE = "none"  # no 3D information (plain LLaVA-Video)
    SINUSOIDAL = "sinusoidal"  # parameter-free sin/cos per axis (paper default)
    MLP = "mlp"  # 3·K → 512 → LayerNorm → ReLU → hidden


class CoordMode(enum.Enum):
    """Coordinates fed to the position encoding."""

    DISCRETE = "discrete"  # clamp, shift to ≥ 0, divide by the voxel size, round (paper)
    CONTINUOUS = "continuous"  # metres as they are


class ObjectFeatureKind(enum.Enum):
    """How an object proposal becomes a feature vector for grounding."""

    PATCH14 = "patch14"  # un-pooled patches with ≥ 50 % of their pixels inside the box
    PATCH27 = "patch27"  # pooled cells with ≥ 25 % of their pixels inside the box


class BoxSizeEncoding(enum.Enum):
    """Whether a box's size enters the model next to its centre (objects and ``<coord>``)."""

    NONE = "none"  # centre only, as the paper (and every released checkpoint)
    SINUSOIDAL = "sinusoidal"  # + sin/cos of the size in ``size_unit_m`` steps (ours)


class RandomInit(enum.Enum):
    """How a fresh model's matrices are drawn (norms are 1, biases 0 either way)."""

    NORMAL_0_02 = "normal_0.02"  # N(0, 0.02²) everywhere: transformers' default, sized for wide models
    FAN_IN = "fan_in"  # N(0, 1/fan_in), projector output ×0.1: unit-scale activations when narrow

    def std(self, name: str, shape: tuple[int, ...]) -> float:
        """Standard deviation for the weight ``name`` of ``shape``.

        Why FAN_IN exists (measured on the ``tiny`` shape, BENCHMARKS.md): with
        N(0, 0.02²) a 96-wide decoder starts with near-uniform attention and the
        grounding query never left chance in 300 steps even with ideal object
        features; with fan-in scaling it learned within 150. The projector's
        output layer starts at a tenth so the image features (≈ 17 in norm
        otherwise) do not drown the 3D and box encodings added to them (≈ 7):
        grounding accuracy after 300 steps 28 % instead of 9 %.
        """
        if self is RandomInit.NORMAL_0_02:
            return 0.02
        if len(shape) < 2:  # vectors (newline, zero target): unit-norm on average
            return shape[0] ** -0.5 if shape else 1.0
        # token embeddings / lm_head rows live in the width (last dim); a Linear or
        # Conv weight's fan-in is everything after the output dimension
        fan_in = shape[-1] if name.endswith(("embed_tokens.weight", "lm_head.weight")) \
            else math.prod(shape[1:])
        gain = 0.1 if name == "projector.2.weight" else 1.0
        return gain * fan_in ** -0.5


class ModelPart(enum.Enum):
    """A named group of a model's weights (what ``reinitialize`` re-draws)."""

    TEXT_DECODER = "text_decoder"  # decoder blocks, final norm and lm_head; not the token embeddings
    TEXT_EMBEDDINGS = "text_embeddings"  # the decoder's input token embeddings
    PROJECTOR = "projector"  # vision → text projector
    GROUND_HEAD = "ground_head"  # grounding head

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes of the part."""
        return _PART_PREFIXES[self]


_PART_PREFIXES = {
    ModelPart.TEXT_DECODER: ("language_model.model.layers.", "language_model.model.norm.",
                             "language_model.lm_head."),
    ModelPart.TEXT_EMBEDDINGS: ("language_model.model.embed_tokens.",),
    ModelPart.PROJECTOR: ("projector.",),
    ModelPart.GROUND_HEAD: ("ground_head.",),
}


class MultiObjectSelection(enum.Enum):
    """How multi-object grounding (Multi3DRefer) turns scores into a set of objects. Both
    first return nothing when the "no referent" entry scores highest."""

    # the paper's: objects in order of softmax(score / temperature) until their probability
    # sums to the threshold (it keeps one object whenever the best takes that much)
    CUMULATIVE_PROBABILITY = "cumulative_probability"
    # ours: every object whose cosine score exceeds the threshold, and at least the best
    # (the embedded model: Multi3DRefer F1@0.5 74.9 against 70.2; BENCHMARKS.md)
    SCORE_THRESHOLD = "score_threshold"


class GroundLossKind(enum.Enum):
    """Training loss of the grounding head."""

    INFONCE = "infonce"  # softmax over objects + zero target, positives summed (released)
    BCE = "bce"  # per-object BCE on score/temperature, positives weighted #neg/#pos


@dataclass
class VisionTowerConfig:
    """SigLIP vision tower as it is *stored*: already truncated (no last layer, no head)."""

    image_size_px: int = 384  # side of the square crop fed to the tower
    patch_size_px: int = 14  # ViT patch side
    hidden_size: int = 1152  # tower width (the projector's input size)
    intermediate_size: int = 4304  # MLP width inside the tower
    num_layers: int = 26  # encoder layers kept (so400m has 27; the last is dropped)
    num_heads: int = 16  # attention heads
    layer_norm_eps: float = 1e-6  # LayerNorm epsilon

    def __post_init__(self) -> None:
        for name in ("image_size_px", "patch_size_px", "hidden_size", "intermediate_size",
                     "num_layers", "num_heads"):
            _check_positive_int(self, name)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"vision hidden_size {self.hidden_size} is not divisible by "
                             f"num_heads {self.num_heads}")
        if self.patch_size_px > self.image_size_px:
            raise ValueError(f"vision patch_size_px {self.patch_size_px} > image_size_px "
                             f"{self.image_size_px}")


@dataclass
class TextConfig:
    """Qwen2 decoder."""

    vocab_size: int = 152064  # rows of the embedding / lm_head
    hidden_size: int = 3584  # model width H
    intermediate_size: int = 18944  # MLP width
    num_layers: int = 28  # decoder layers
    num_heads: int = 28  # query heads
    num_kv_heads: int = 4  # key/value heads (GQA)
    rope_theta: float = 1_000_000.0  # rotary base
    rms_norm_eps: float = 1e-6  # RMSNorm epsilon
    max_position_embeddings: int = 32768  # longest sequence
    tie_word_embeddings: bool = False  # share embed_tokens and lm_head

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                     "num_heads", "num_kv_heads", "max_position_embeddings"):
            _check_positive_int(self, name)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"text hidden_size {self.hidden_size} is not divisible by "
                             f"num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"text num_heads {self.num_heads} is not divisible by "
                             f"num_kv_heads {self.num_kv_heads}")


@dataclass
class VideoConfig:
    """Projector, pooling and newline layout of the video tokens, and where they go."""

    projector: ProjectorKind = ProjectorKind.MLP2X_GELU  # vision → text projector
    pool_stride: int = 2  # spatial pooling factor of the patch grid
    pool_mode: PoolMode = PoolMode.BILINEAR  # how the patch grid is pooled
    newline: NewlinePosition = NewlinePosition.GRID  # newline token layout
    prompt_layout: PromptLayout = PromptLayout.VIDEO_FIRST  # video before/after the task text
    frame_fit: FrameFit = FrameFit.CENTRE_CROP  # a frame → the tower's square (paper: crop)

    def __post_init__(self) -> None:
        self.projector = ProjectorKind(self.projector)
        self.pool_mode = PoolMode(self.pool_mode)
        self.newline = NewlinePosition(self.newline)
        self.prompt_layout = PromptLayout(self.prompt_layout)
        self.frame_fit = FrameFit(self.frame_fit)
        _check_positive_int(self, "pool_stride")


@dataclass
class PositionEncodingConfig:
    """3D position encoding of visual tokens, object centres and ``<coord>``."""

    kind: PositionEncodingKind = PositionEncodingKind.SINUSOIDAL  # encoding family
    aggregation: Aggregation = Aggregation.MEAN  # pixels of a cell → token coordinate
    coords: CoordMode = CoordMode.DISCRETE  # discretised voxel indices or metres
    lo_m: tuple[float, float, float] = (-15.0, -15.0, -5.0)  # clamp minimum (discrete)
    hi_m: tuple[float, float, float] = (15.0, 15.0, 5.0)  # clamp maximum (discrete)
    voxel_size_m: float = 0.1  # voxel edge for discretisation
    temperature: float = 10000.0  # sinusoidal frequency base
    mlp_hidden_size: int = 512  # hidden width of the MLP kind
    ignore_invalid: bool = False  # False: cells average every pixel, as the reference
    box_size: BoxSizeEncoding = BoxSizeEncoding.NONE  # encode box sizes too (see BoxSizeEncoding)
    size_unit_m: float = 0.05  # box sizes are encoded as round(size / size_unit_m)
    size_temperature: float = 100.0  # sinusoidal frequency base of the size encoding

    def __post_init__(self) -> None:
        self.kind = PositionEncodingKind(self.kind)
        self.box_size = BoxSizeEncoding(self.box_size)
        self.aggregation = Aggregation(self.aggregation)
        self.coords = CoordMode(self.coords)
        self.lo_m = tuple(float(v) for v in self.lo_m)  # type: ignore[assignment]
        self.hi_m = tuple(float(v) for v in self.hi_m)  # type: ignore[assignment]
        if len(self.lo_m) != 3 or len(self.hi_m) != 3 or not all(
            lo < hi for lo, hi in zip(self.lo_m, self.hi_m)
        ):
            raise ValueError(f"position lo_m/hi_m must be 3 numbers with lo < hi, got "
                             f"{self.lo_m}, {self.hi_m}")
        if not self.voxel_size_m > 0:
            raise ValueError(f"position voxel_size_m must be > 0, got {self.voxel_size_m}")
        if not self.temperature > 0:
            raise ValueError(f"position temperature must be > 0, got {self.temperature}")
        _check_positive_int(self, "mlp_hidden_size")
        if not (self.size_unit_m > 0 and self.size_temperature > 0):
            raise ValueError(f"position size_unit_m and size_temperature must be > 0, got "
                             f"{self.size_unit_m}, {self.size_temperature}")
        if self.box_size is not BoxSizeEncoding.NONE and self.kind is PositionEncodingKind.NONE:
            raise ValueError(f"position box_size {self.box_size.value!r} needs a position "
                             "encoding (kind is 'none')")

    @property
    def points_per_token(self) -> int:
        """Number of 3D points encoded per token (2 for min/max, else 1)."""
        return 2 if self.aggregation is Aggregation.MIN_MAX else 1


@dataclass
class GroundingConfig:
    """Grounding head: ``<ground>`` hidden state vs. object-proposal features."""

    object_feature: ObjectFeatureKind = ObjectFeatureKind.PATCH14  # proposal → feature
    loss: GroundLossKind = GroundLossKind.INFONCE  # training loss
    temperature: float = 0.07  # softmax temperature of the scores
    head_hidden_size: int | None = None  # width of the two MLPs; None → text hidden size
    add_center_encoding: bool = True  # add the encoding of the box centre ("-pe")
    multi_object_selection: MultiObjectSelection = MultiObjectSelection.CUMULATIVE_PROBABILITY
    # the selection's threshold: a cumulative probability in (0, 1] (paper: 0.4), or the
    # minimum cosine score in [0, 1)
    multi_object_threshold: float = 0.4
    # ours (False: the paper): the model was trained to ground the object a question names
    # before it answers (recipe ground_subject_first), so callers hand it the proposals with
    # a question (Video3DEngine.generate's proposals)
    grounds_in_answers: bool = False
    # ours: with grounds_in_answers, the features of this many objects nearest the grounded
    # one (geometry.nearest_boxes) follow it, one <coord> each — an answer that names another
    # object (what is next to / under it) can read that object there
    answer_neighbours: int = 0
    # ours: with grounds_in_answers, after the named object a second <ground> may pick the
    # object the answer names (recipe ground_answer_object), its box encoding fed into a <coord>
    grounds_answer_object: bool = False

    def __post_init__(self) -> None:
        for name in ("grounds_in_answers", "grounds_answer_object"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"grounding {name} must be true or false, got "
                                 f"{getattr(self, name)!r}")
        if isinstance(self.answer_neighbours, bool) or not isinstance(self.answer_neighbours, int) \
                or self.answer_neighbours < 0:
            raise ValueError(f"grounding answer_neighbours must be an integer >= 0, got "
                             f"{self.answer_neighbours!r}")
        if self.grounds_answer_object and (not self.grounds_in_answers or self.answer_neighbours):
            raise ValueError("grounding grounds_answer_object needs grounds_in_answers and "
                             f"answer_neighbours 0 (got {self.grounds_in_answers}, "
                             f"{self.answer_neighbours})")
        self.object_feature = ObjectFeatureKind(self.object_feature)
        self.loss = GroundLossKind(self.loss)
        self.multi_object_selection = MultiObjectSelection(self.multi_object_selection)
        if not self.temperature > 0:
            raise ValueError(f"grounding temperature must be > 0, got {self.temperature}")
        if self.head_hidden_size is not None:
            _check_positive_int(self, "head_hidden_size")
        self.check_threshold(self.multi_object_threshold)

    def check_threshold(self, threshold: float) -> None:
        """Raise ValueError unless ``threshold`` is in the units of ``multi_object_selection``
        (for this config's own threshold and for a caller's override of it)."""
        selection = self.multi_object_selection
        if selection is MultiObjectSelection.CUMULATIVE_PROBABILITY and not 0 < threshold <= 1:
            raise ValueError(f"multi_object_threshold {threshold} is not a cumulative probability "
                             "in (0, 1] (multi_object_selection cumulative_probability)")
        if selection is MultiObjectSelection.SCORE_THRESHOLD and not 0 <= threshold < 1:
            raise ValueError(f"multi_object_threshold {threshold} is not a cosine score in [0, 1) "
                             "(multi_object_selection score_threshold)")

    @property
    def inside_fraction(self) -> float:
        """Fraction of a patch/cell's pixels that must lie in the box."""
        return 0.5 if self.object_feature is ObjectFeatureKind.PATCH14 else 0.25


@dataclass
class TokenIds:
    """Ids of the special tokens the model itself needs (from the tokenizer)."""

    video: int  # placeholder expanded into the visual tokens (never embedded)
    ground: int  # ``<ground>``: its hidden state queries the grounding head
    coord: int  # ``<coord>``: its embedding receives the encoding of a box centre
    eos: tuple[int, ...]  # generation stops at any of these

    def __post_init__(self) -> None:
        self.eos = tuple(int(t) for t in self.eos)
        if not self.eos:
            raise ValueError("token_ids.eos must name at least one token")
        ids = {"video": self.video, "ground": self.ground, "coord": self.coord}
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"token ids must be distinct, got {ids}")


@dataclass
class Video3DConfig:
    """The whole model."""

    vision: VisionTowerConfig = field(default_factory=VisionTowerConfig)  # SigLIP tower
    text: TextConfig = field(default_factory=TextConfig)  # Qwen2 decoder
    video: VideoConfig = field(default_factory=VideoConfig)  # projector / pooling / newline
    position: PositionEncodingConfig = field(default_factory=PositionEncodingConfig)  # 3D PE
    grounding: GroundingConfig | None = field(default_factory=GroundingConfig)  # None: no head
    token_ids: TokenIds | None = None  # set from the tokenizer; needed to run the model

    def __post_init__(self) -> None:
        self.grid  # raises if the pooled grid does not tile the crop  # noqa: B018
        if self.grounding is not None and self.position.kind is PositionEncodingKind.NONE \
                and self.grounding.add_center_encoding:
            raise ValueError("grounding.add_center_encoding needs a position encoding "
                             "(position.kind is NONE)")
        if self.token_ids is not None:
            for name in ("ground", "coord"):
                tid = getattr(self.token_ids, name)
                if not 0 <= tid < self.text.vocab_size:
                    raise ValueError(f"token_ids.{name}={tid} outside the vocabulary "
                                     f"(text.vocab_size={self.text.vocab_size})")

    @property
    def grid(self) -> TokenGrid:
        """Token grid of one frame (patches, pooled side, cell size)."""
        return token_grid(self.vision.image_size_px, self.vision.patch_size_px,
                          self.video.pool_stride)

    @property
    def tokens_per_frame(self) -> int:
        """Visual tokens one frame contributes to the sequence (210 for the paper shape)."""
        g = self.grid.pooled_per_side
        return g * (g + 1) if self.video.newline is NewlinePosition.GRID else g * g

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Video3DConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown Video3DConfig fields: {sorted(unknown)}")
        g = d.get("grounding", {})
        t = d.get("token_ids")
        return cls(
            vision=VisionTowerConfig(**d.get("vision", {})),
            text=TextConfig(**d.get("text", {})),
            video=VideoConfig(**d.get("video", {})),
            position=PositionEncodingConfig(**d.get("position", {})),
            grounding=None if g is None else GroundingConfig(**g),
            token_ids=None if t is None else TokenIds(**t),
        )


def _check_positive_int(obj: object, name: str) -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{type(obj).__name__}.{name} must be a positive integer, got {v!r}")


def _to_jsonable(x: Any) -> Any:
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, dict):
        return {k: _to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_jsonable(v) for v in x]
    return x
