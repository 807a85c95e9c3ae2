"""Grounding head: score object proposals against the ``<ground>`` hidden state.

Two MLPs (Linear → ReLU → LayerNorm → Linear, the released layout) embed the
query hidden state and every object feature; a learnable "zero target" vector
is appended as an extra object meaning "no referent". Scores are cosine
similarities. Losses: InfoNCE over objects with temperature τ (positives
summed; the zero target is the positive when there is none), or BCE on
score/τ with positives weighted by #neg/#pos.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import GroundingConfig, GroundLossKind, MultiObjectSelection


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.LayerNorm(hidden),
                         nn.Linear(hidden, hidden))


ANCHOR_RELATION_FEATURES = 8  # columns of geometry.anchor_relations_m


class GroundingHead(nn.Module):
    def __init__(self, cfg: GroundingConfig, dim: int):
        super().__init__()
        hidden = cfg.head_hidden_size or dim
        self.cfg = cfg
        self.obj = _mlp(dim, hidden)
        self.query = _mlp(dim, hidden)
        self.zero_target = nn.Parameter(torch.randn(dim) * dim**-0.5)
        # ours (cfg.grounds_answer_object): the second hop of an answer scores candidates with
        # their geometry relative to the object the first hop grounded (with_anchor)
        self.anchor: nn.Sequential | None = None
        if cfg.grounds_answer_object:
            self.add_anchor_encoder()

    def add_anchor_encoder(self) -> None:
        """Create the anchor-relation encoder (Linear → GELU → Linear to the object features'
        width), its output layer zero so that adding it changes no score until trained; a
        no-op when it exists."""
        if self.anchor is not None:
            return
        dim, ref = self.zero_target.shape[0], self.zero_target
        self.anchor = nn.Sequential(nn.Linear(ANCHOR_RELATION_FEATURES, dim), nn.GELU(),
                                    nn.Linear(dim, dim)).to(device=ref.device, dtype=ref.dtype)
        nn.init.zeros_(self.anchor[2].weight)
        nn.init.zeros_(self.anchor[2].bias)

    def with_anchor(self, objects: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """(N, D) object features + the encoding of their (N, 8) geometry relative to an
        anchor object (``geometry.anchor_relations_m``) → (N, D): what a second hop scores."""
        if self.anchor is None:
            raise ValueError("this grounding head has no anchor-relation encoder "
                             "(config grounding.grounds_answer_object is false)")
        if relations.shape != (objects.shape[0], ANCHOR_RELATION_FEATURES):
            raise ValueError(f"relations must be ({objects.shape[0]}, {ANCHOR_RELATION_FEATURES})"
                             f" for {objects.shape[0]} objects, got {tuple(relations.shape)}")
        rel = relations.to(device=objects.device, dtype=self.zero_target.dtype)
        return objects + self.anchor(rel).to(objects.dtype)

    def forward(self, query: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        """Cosine scores.

        Args:
            query: (D,) hidden state at ``<ground>``.
            objects: (N, D) object features (N ≥ 0).
        Returns:
            (N + 1,) scores in [-1, 1]; the last entry is the zero target.
        """
        objs = torch.cat([objects.to(self.zero_target.dtype), self.zero_target[None]])  # (N+1, D)
        o = F.normalize(self.obj(objs), dim=-1)  # (N+1, Hh)
        q = F.normalize(self.query(query.to(self.zero_target.dtype)), dim=-1)  # (Hh,)
        return o @ q

    def loss(self, scores: torch.Tensor, positives: Sequence[int]) -> torch.Tensor:
        """Loss for one query; ``positives`` index real objects (empty: no referent)."""
        return grounding_loss(scores, positives, self.cfg.loss, self.cfg.temperature)


def grounding_loss(scores: torch.Tensor, positives: Sequence[int], kind: GroundLossKind,
                   temperature: float) -> torch.Tensor:
    """Loss of one query's scores (N + 1,) (last = zero target)."""
    n = scores.shape[0] - 1
    pos = list(positives) if len(positives) else [n]
    if any(not 0 <= p < n for p in positives):
        raise ValueError(f"positive indices {list(positives)} outside [0, {n})")
    logits = scores.float() / temperature
    if kind is GroundLossKind.INFONCE:
        return -(torch.logsumexp(logits[pos], 0) - torch.logsumexp(logits, 0))
    target = torch.zeros_like(logits)
    target[list(positives)] = 1.0
    weight = torch.ones_like(logits)
    if len(positives):
        weight[list(positives)] = (logits.shape[0] - len(positives)) / len(positives)
    return (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).mean()


def select_multiple(scores: torch.Tensor, temperature: float, threshold: float) -> list[int]:
    """Multi-object decoding (Multi3DRefer).

    If the zero target (last score) is the top score: no object. Otherwise take
    softmax(scores / τ) over the real objects and add objects in descending
    probability until their cumulative probability reaches ``threshold``.
    Returns the chosen indices into the real objects, best first.
    """
    n = scores.shape[0] - 1
    if n == 0 or int(torch.argmax(scores)) == n:
        return []
    probs = torch.softmax(scores[:n].float() / temperature, dim=0)
    order = torch.argsort(probs, descending=True).tolist()
    chosen, total = [], 0.0
    for i in order:
        chosen.append(i)
        total += float(probs[i])
        if total >= threshold:
            break
    return chosen


def select_above(scores: torch.Tensor, min_score: float) -> list[int]:
    """Multi-object decoding by score (our option, ``MultiObjectSelection.SCORE_THRESHOLD``).

    If the zero target (last score) is the top score: no object. Otherwise every real
    object whose cosine score exceeds ``min_score``, and at least the best one.
    Returns indices into the real objects, best first.
    """
    n = scores.shape[0] - 1
    if n == 0 or int(torch.argmax(scores)) == n:
        return []
    order = torch.argsort(scores[:n].float(), descending=True).tolist()
    return [order[0]] + [i for i in order[1:] if float(scores[i]) > min_score]


def select_objects(scores: torch.Tensor, selection: MultiObjectSelection, temperature: float,
                   threshold: float) -> list[int]:
    """(N + 1,) scores (last: zero target) → the chosen real objects, best first, by
    ``selection`` (threshold in its units: a cumulative probability or a cosine score)."""
    return _SELECTORS[selection](scores, temperature, threshold)


_SELECTORS = {
    MultiObjectSelection.CUMULATIVE_PROBABILITY: select_multiple,
    MultiObjectSelection.SCORE_THRESHOLD:
        lambda scores, _temperature, min_score: select_above(scores, min_score),
}
