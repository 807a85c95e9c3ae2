"""The multi-task training objective as one module (so FSDP/ZeRO-3 see one forward).

    loss = CE(answer tokens) + ground_loss_scale · mean over grounding samples of
           InfoNCE/BCE(<ground> hidden state vs. candidate object features)
         [+ answer_attention_loss_scale · mean over QA samples that name objects of
           −log(attention mass on the named objects' video tokens)]
         [+ answer_readout_loss_scale · mean over QA samples whose named objects
           are in view of CE(first answer token | the supervised heads' output alone)]
         [+ subject_attention_loss_scale · mean over QA samples whose question names
           objects of −log(attention mass of one layer's heads on those objects' tokens)]

(QA samples: ScanQA, and SQA3D too when the recipe's ``answer_loss_tasks`` says so.)

The last three terms are our options, not the paper's (default off): see
:func:`answer_attention_loss`, :func:`answer_readout_loss` and :func:`subject_attention_loss`.

A micro-batch is a list of :class:`~video3d_train.data.Item`. All its frames go
through the vision tower together; the texts are right-padded into one batch
for the language model; every grounding item then scores its candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from video3d_ros.model.config import NewlinePosition, ObjectFeatureKind
from video3d_ros.model.layers import add_newlines
from video3d_ros.model.modeling import IGNORE_INDEX, Video3DModel

from .data import Item
from .recipes import ReadoutSource


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar: lm_loss + scale · ground_loss
    lm_loss: torch.Tensor  # scalar: mean CE over the answer tokens of the micro-batch
    ground_loss: torch.Tensor  # scalar: mean grounding loss (0 when no grounding item)
    n_ground: int  # grounding items in the micro-batch
    attention_loss: torch.Tensor  # scalar: mean answer-attention loss (0 when none or off)
    n_attention: int  # items with an answer-attention target in the micro-batch
    readout_loss: torch.Tensor  # scalar: mean answer-readout loss (0 when none or off)
    n_readout: int  # items with an answer-readout target in the micro-batch
    subject_loss: torch.Tensor  # scalar: mean subject-attention loss (0 when none or off)
    n_subject: int  # items with a subject-attention target in the micro-batch


def pad_batch(items: list[Item], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad ids/labels: → input_ids (B, T), labels (B, T), attention_mask (B, T)."""
    t = max(int(it.input_ids.numel()) for it in items)
    ids = torch.full((len(items), t), pad_id, dtype=torch.long)
    labels = torch.full((len(items), t), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), t), dtype=torch.long)
    for b, it in enumerate(items):
        n = it.input_ids.numel()
        ids[b, :n], labels[b, :n], mask[b, :n] = it.input_ids, it.labels, 1
    return ids, labels, mask


def video_token_targets(cells: torch.Tensor, newline: NewlinePosition) -> torch.Tensor:
    """(F, G, G) bool cells → (F·T_f,) bool over the video placeholder tokens, in the
    order ``Video3DModel.encode_frames`` lays them out (newline tokens: False)."""
    x = cells.to(torch.float32)[..., None]  # (F, G, G, 1)
    return add_newlines(x, torch.zeros(1), newline)[:, 0] > 0.5


def answer_attention_loss(attention: torch.Tensor, items: list[Item], input_ids: torch.Tensor,
                          labels: torch.Tensor, video_id: int, newline: NewlinePosition,
                          heads: int) -> tuple[torch.Tensor, int]:
    """Answer-attention supervision (our option): −log of the attention mass that the
    first ``heads`` heads put on the video tokens of the objects the answer is about,
    read at the position that predicts the first answer token.

    Why: trained on answers alone, the ``tiny`` decoder learned to answer ScanQA from
    the question text and ignore the video (``video3d-eval --blind`` scores as well as
    seeing; BENCHMARKS.md). ScanQA's annotation names those objects (``object_ids``,
    real ScanQA too), which tells the model where to look.

    Args:
        attention: (B, H, T, T) one layer's attention weights.
        input_ids, labels: (B, T) as padded by :func:`pad_batch`.
    Returns:
        (mean loss over the items with a target, how many there were).
    """
    return _attention_mass_loss(attention, items, [it.answer_cells for it in items], input_ids,
                                labels, video_id, newline, heads)


def _attention_mass_loss(attention: torch.Tensor, items: list[Item],
                         cells: list[torch.Tensor | None], input_ids: torch.Tensor,
                         labels: torch.Tensor, video_id: int, newline: NewlinePosition,
                         heads: int) -> tuple[torch.Tensor, int]:
    """Mean over the items with a target of −log(the first ``heads`` heads' attention mass,
    at the position predicting the first answer token, on the video tokens of ``cells[b]``)."""
    losses = []
    for b, it in enumerate(items):
        if cells[b] is None:
            continue
        found = answer_video_attention(attention[b], it, input_ids[b], labels[b], video_id,
                                       newline, cells[b])
        if found is None:
            continue
        weights, target = found
        mass = weights[:heads, target].sum(-1)  # (h,)
        # + 1e-6, not a clamp: a head that starts with (almost) no mass there still gets a
        # gradient
        losses.append(-torch.log(mass + 1e-6).mean())
    if not losses:
        return attention.new_zeros(()), 0
    return torch.stack(losses).mean(), len(losses)


def subject_attention_loss(attention: torch.Tensor, items: list[Item], input_ids: torch.Tensor,
                           labels: torch.Tensor, video_id: int, newline: NewlinePosition,
                           heads: int) -> tuple[torch.Tensor, int]:
    """Subject-attention supervision (our option): −log of the attention mass that the
    first ``heads`` heads of one layer (the recipe's ``subject_attention_layer``, the first
    by default) put on the video tokens of the objects the *question* names, read at the
    position that predicts the first answer token.

    Why: "what is next to the desk?" takes two steps — find the desk, then read what is
    beside it. The answer-attention loss supervises the second (a late layer onto the
    answer object) and, alone, its head learnt where answers lie in the training rooms
    rather than "beside X" (BENCHMARKS.md). This one supervises the first in an earlier
    layer, so that the position the later layer needs is in the residual stream.

    Args and returns as :func:`answer_attention_loss` (targets: ``item.subject_cells``).
    """
    return _attention_mass_loss(attention, items, [it.subject_cells for it in items], input_ids,
                                labels, video_id, newline, heads)


def named_object_tokens(item: Item, input_ids: torch.Tensor, video_id: int,
                        newline: NewlinePosition, cells: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (N,) of an item's video tokens in ``input_ids`` (T,) and which of them
    (N,) bool see the given objects: ``cells`` (F, G, G), by default ``item.answer_cells``
    (the objects its answer is about; must then be set)."""
    cells = item.answer_cells if cells is None else cells
    target = video_token_targets(cells, newline).to(input_ids.device)  # (N,)
    video_pos = (input_ids == video_id).nonzero().flatten()  # (N,)
    if video_pos.numel() != target.numel():
        raise ValueError(f"{item.sample.file}: sample {item.sample.sample_id!r}: "
                         f"{video_pos.numel()} video tokens but {target.numel()} "
                         "named-object token targets")
    return video_pos, target


def answer_video_attention(attention: torch.Tensor, item: Item, input_ids: torch.Tensor,
                           labels: torch.Tensor, video_id: int, newline: NewlinePosition,
                           cells: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One item's attention from the position predicting its first answer token to its
    video tokens, and which of them see the named objects (``cells``; by default
    ``item.answer_cells``, the objects the answer is about).

    Args:
        attention: (H, T, T) one layer's weights for this item; input_ids, labels: (T,).
    Returns:
        weights (H, N) and target (N,) bool; None without an answer or a target (no cells,
        or the named objects in none of the sampled tokens: no mass to raise).
    """
    cells = item.answer_cells if cells is None else cells
    if cells is None or not bool(cells.any()):
        return None
    video_pos, target = named_object_tokens(item, input_ids, video_id, newline, cells)
    target = target.to(attention.device)
    answer = (labels != IGNORE_INDEX).nonzero().flatten()
    if answer.numel() == 0:
        return None
    return attention[:, int(answer[0]) - 1, video_pos], target


def answer_readout_loss(heads_out: torch.Tensor, o_weight: torch.Tensor, norm_weight: torch.Tensor,
                        norm_eps: float, lm_weight: torch.Tensor, items: list[Item],
                        labels: torch.Tensor, heads: int, head_dim: int,
                        objects: "ObjectValues | None" = None) -> tuple[torch.Tensor, int]:
    """Answer-readout supervision (our option): what the first ``heads`` heads of the last
    layer write into the residual stream at the position predicting the first answer
    token must, on its own, predict that token through the final norm and the LM head
    (a "logit lens" on those heads; norm and LM head get no gradient from this term).

    Why: with the answer-attention loss and the question-first layout the supervised head
    finds the named objects of unseen rooms (37 % of its attention), yet what it outputs
    there carries no more of the asked colour than the majority class
    (``video3d-attention --colour-readout``; BENCHMARKS.md): nothing trains its values and
    output projection to carry what it found. This term does, for the ScanQA items whose
    named objects some video token sees. Measured (BENCHMARKS.md, "Answer-readout
    supervision"): with either source the term falls a little, but on ``tiny`` the
    answers still do not read the colour.

    Args:
        heads_out: (B, T, H·d) input of the last layer's ``o_proj`` (the heads' outputs).
        o_weight: (D, H·d) that projection's weight (no bias in Qwen2).
        norm_weight, norm_eps: the final RMSNorm; lm_weight: (V, D) the LM head.
        labels: (B, T) as padded by :func:`pad_batch`.
        objects: read, instead of what the heads output, what they would output with all
            their attention on the named objects' video tokens (``ReadoutSource.OBJECTS``).
    Returns:
        (mean cross-entropy over the items with a target, how many there were).
    """
    rows, targets = [], []
    for b, it in enumerate(items):
        if it.answer_cells is None or not bool(it.answer_cells.any()):
            continue  # nothing in view to read
        answer = (labels[b] != IGNORE_INDEX).nonzero().flatten()
        if answer.numel() == 0:
            continue
        a = int(answer[0])
        rows.append(heads_out[b, a - 1, :heads * head_dim] if objects is None
                    else objects.mean_at_objects(b, it, heads, head_dim))
        targets.append(labels[b, a])
    if not rows:
        return heads_out.new_zeros(()), 0
    if tuple(o_weight.shape) != (lm_weight.shape[-1], heads_out.shape[-1]):
        raise ValueError(f"answer readout: o_proj weight {tuple(o_weight.shape)} does not match "
                         f"the heads' output ({heads_out.shape[-1]}) and the LM head "
                         f"({lm_weight.shape[-1]}); a sharded (FSDP/ZeRO-3) weight is not supported")
    written = F.linear(torch.stack(rows), o_weight[:, :heads * head_dim])  # (n, D)
    normed = F.rms_norm(written, (written.shape[-1],), norm_weight.detach(), norm_eps)
    logits = F.linear(normed, lm_weight.detach())  # (n, V)
    return F.cross_entropy(logits.float(), torch.stack(targets)), len(rows)


@dataclass
class ObjectValues:
    """The last layer's values and where each item's named objects are among its tokens."""

    values: torch.Tensor  # (B, T, KV·d) output of the last layer's v_proj
    input_ids: torch.Tensor  # (B, T) as padded by :func:`pad_batch`
    video_id: int
    newline: NewlinePosition
    kv_groups: int  # query heads per key/value head (grouped-query attention)

    def mean_at_objects(self, b: int, item: Item, heads: int, head_dim: int) -> torch.Tensor:
        """(heads·d,) each of the first ``heads`` heads' value, averaged over the video
        tokens that see the item's named objects."""
        video_pos, target = named_object_tokens(item, self.input_ids[b], self.video_id,
                                                self.newline)
        at = self.values[b, video_pos[target]].mean(0)  # (KV·d,)
        return torch.cat([at[(h // self.kv_groups) * head_dim:(h // self.kv_groups + 1) * head_dim]
                          for h in range(heads)])


class Video3DForTraining(nn.Module):
    def __init__(self, model: Video3DModel, pad_id: int, ground_loss_scale: float = 1.0,
                 answer_attention_loss_scale: float = 0.0, answer_attention_heads: int = 1,
                 answer_readout_loss_scale: float = 0.0,
                 answer_readout_source: ReadoutSource = ReadoutSource.ATTENDED,
                 subject_attention_loss_scale: float = 0.0, subject_attention_layer: int = 0,
                 subject_attention_heads: int = 1):
        super().__init__()
        self.model = model
        self.pad_id = pad_id
        self.ground_loss_scale = ground_loss_scale
        self.answer_attention_loss_scale = answer_attention_loss_scale
        self.answer_attention_heads = answer_attention_heads
        self.answer_readout_loss_scale = answer_readout_loss_scale
        self.answer_readout_source = ReadoutSource(answer_readout_source)
        if answer_attention_loss_scale > 0 or answer_readout_loss_scale > 0:
            heads = model.config.text.num_heads
            if not 1 <= answer_attention_heads <= heads:
                raise ValueError(f"answer_attention_heads must be in [1, {heads}] (the "
                                 f"decoder's heads), got {answer_attention_heads}")
        self.subject_attention_loss_scale = subject_attention_loss_scale
        self.subject_attention_layer = subject_attention_layer
        self.subject_attention_heads = subject_attention_heads
        layers, heads = model.config.text.num_layers, model.config.text.num_heads
        if not -layers <= subject_attention_layer < layers:
            raise ValueError(f"subject_attention_layer must be in [{-layers}, {layers - 1}] (the "
                             f"decoder has {layers} layers), got {subject_attention_layer}")
        if not 1 <= subject_attention_heads <= heads:
            raise ValueError(f"subject_attention_heads must be in [1, {heads}] (the decoder's "
                             f"heads), got {subject_attention_heads}")
        if answer_attention_loss_scale > 0 or subject_attention_loss_scale > 0:
            # attention weights exist only in the eager implementation (same results)
            model.language_model.set_attn_implementation("eager")

    def forward(self, items: list[Item]) -> StepOutput:
        res = self.terms(items, self.answer_attention_loss_scale > 0,
                         self.answer_readout_loss_scale > 0,
                         self.subject_attention_loss_scale > 0)
        return replace(res, lm_loss=res.lm_loss.detach(), ground_loss=res.ground_loss.detach(),
                       attention_loss=res.attention_loss.detach(),
                       readout_loss=res.readout_loss.detach(),
                       subject_loss=res.subject_loss.detach())

    def terms(self, items: list[Item], attention: bool, readout: bool,
              subject: bool = False) -> StepOutput:
        """The step's output with each term still in the graph (``forward`` detaches them),
        the answer terms computed when asked even at scale 0: per-term gradients
        (``video3d-loss-gradients``) from one forward pass."""
        if (attention or subject) and \
                self.model.language_model.config._attn_implementation != "eager":
            raise ValueError("the attention terms need the eager attention implementation "
                             "(attention weights); load the model with it")
        want_attention = attention and any(it.answer_cells is not None for it in items)
        want_readout = readout and any(it.answer_cells is not None for it in items)
        want_subject = subject and any(it.subject_cells is not None for it in items)
        padded = pad_batch(items, self.pad_id)
        seen: dict[str, torch.Tensor] = {}
        hooks = []
        if want_readout:
            attn = self.model.language_model.model.layers[-1].self_attn
            hooks.append(attn.o_proj.register_forward_pre_hook(
                lambda module, args: seen.__setitem__("heads_out", args[0])))
            if self.answer_readout_source is ReadoutSource.OBJECTS:
                hooks.append(attn.v_proj.register_forward_hook(
                    lambda module, args, output: seen.__setitem__("values", output)))
        try:
            out, scores, answer_scores = self.run(items, with_labels=True,
                                   output_attentions=want_attention or want_subject,
                                   padded=padded)
        finally:
            for h in hooks:
                h.remove()
        ground = [b for b, it in enumerate(items) if it.positives is not None]
        g_loss = out.loss.new_zeros(())
        if ground:
            head = self.model.ground_head
            # ground_answer_object: an item's second <ground> (the answer's object) is one more
            # grounding term of the mean
            terms = ([head.loss(scores[b], items[b].positives) for b in ground]
                     + [head.loss(s, items[b].answer_positives) for b, s in answer_scores.items()])
            g_loss = torch.stack(terms).mean()
        loss = out.loss + self.ground_loss_scale * g_loss
        a_loss, n_att = out.loss.new_zeros(()), 0
        if want_attention:
            ids, labels, _ = padded
            cfg = self.model.config
            a_loss, n_att = answer_attention_loss(
                out.attentions[-1], items, ids.to(a_loss.device), labels.to(a_loss.device),
                cfg.token_ids.video, cfg.video.newline, self.answer_attention_heads)
            loss = loss + self.answer_attention_loss_scale * a_loss
        r_loss, n_read = out.loss.new_zeros(()), 0
        if want_readout:
            lm = self.model.language_model
            cfg = self.model.config
            objects = None
            if self.answer_readout_source is ReadoutSource.OBJECTS:
                objects = ObjectValues(seen["values"], padded[0].to(r_loss.device),
                                       cfg.token_ids.video, cfg.video.newline,
                                       cfg.text.num_heads // cfg.text.num_kv_heads)
            r_loss, n_read = answer_readout_loss(
                seen["heads_out"], lm.model.layers[-1].self_attn.o_proj.weight,
                lm.model.norm.weight, cfg.text.rms_norm_eps, lm.lm_head.weight, items,
                padded[1].to(r_loss.device), self.answer_attention_heads,
                cfg.text.hidden_size // cfg.text.num_heads, objects)
            loss = loss + self.answer_readout_loss_scale * r_loss
        s_loss, n_subj = out.loss.new_zeros(()), 0
        if want_subject:
            ids, labels, _ = padded
            cfg = self.model.config
            s_loss, n_subj = subject_attention_loss(
                out.attentions[self.subject_attention_layer], items, ids.to(s_loss.device),
                labels.to(s_loss.device), cfg.token_ids.video, cfg.video.newline,
                self.subject_attention_heads)
            loss = loss + self.subject_attention_loss_scale * s_loss
        return StepOutput(loss, out.loss, g_loss, len(ground), a_loss, n_att, r_loss, n_read,
                          s_loss, n_subj)

    def run(self, items: list[Item], with_labels: bool, output_attentions: bool = False,
            padded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
        """Model output and, per item with candidates, its (N + 1,) grounding scores at its
        (first) ``<ground>``, and at its second for an item with ``answer_positives``.

        ``padded``: :func:`pad_batch` of ``items`` when the caller already has it."""
        m = self.model
        dev = m.device
        frames = torch.cat([it.pixel_values for it in items]).to(dev)  # (ΣF, 3, S, S)
        points = None
        if items[0].token_points is not None:
            points = torch.cat([it.token_points for it in items]).to(dev)  # (ΣF, G, G, K, 3)
        enc = m.encode_frames(frames, points)
        counts = [it.pixel_values.shape[0] for it in items]
        video = enc.tokens.reshape(-1, enc.tokens.shape[-1])  # (ΣF·T_f, D), batch order
        cfg = m.config
        objects: dict[int, torch.Tensor] = {}  # (N, D) candidate features per grounding item
        if any(it.object_masks is not None for it in items):
            feats = (enc.patch_features if cfg.grounding.object_feature
                     is ObjectFeatureKind.PATCH14 else enc.pooled_features)  # (ΣF, C, C, D)
            for b, (it, f) in enumerate(zip(items, torch.split(feats, counts))):
                if it.object_masks is not None:
                    centres = it.object_centres if cfg.grounding.add_center_encoding else None
                    objects[b] = m.object_features(f, list(it.object_masks), centres,
                                                   it.object_sizes)
        coords = []  # (n, D) per item with <coord>s, in batch order
        for b, it in enumerate(items):
            if it.coord_objects is not None:  # ground_subject_first: those objects' features
                coords.append(objects[b][it.coord_objects])
            if it.answer_positives is not None:  # a second hop: the answer object's box
                # encoding (what a caption's <coord> holds: its size names its category)
                a = slice(it.answer_positives[0], it.answer_positives[0] + 1)
                coords.append(m.encode_boxes(
                    it.object_centres[a].to(dev),
                    None if it.object_sizes is None else it.object_sizes[a].to(dev)))
            elif it.coord_points is not None:
                coords.append(m.encode_boxes(it.coord_points, it.coord_sizes))
        coord_embeds = torch.cat(coords) if coords else None  # (M, D)
        ids, labels, mask = (x.to(dev) for x in padded or pad_batch(items, self.pad_id))
        out = m(ids, video_tokens=video, coord_embeds=coord_embeds, attention_mask=mask,
                labels=labels if with_labels else None, output_attentions=output_attentions)
        scores: dict[int, torch.Tensor] = {}
        answer_scores: dict[int, torch.Tensor] = {}
        gid = cfg.token_ids.ground
        for b, it in enumerate(items):
            if b in objects:
                pos = (ids[b] == gid).nonzero().flatten()
                want = 1 if it.answer_positives is None else 2
                if pos.numel() != want:
                    raise ValueError(f"{it.sample.file}: sample {it.sample.sample_id!r}: "
                                     f"expected {want} <ground> token(s), found {pos.numel()}")
                query = out.last_hidden_state[b, pos]  # (want, D)
                scores[b] = m.ground_scores(query[0], objects[b])  # (N + 1,)
                if want == 2:  # the candidates as seen from the named object
                    seen = m.ground_head.with_anchor(objects[b], it.anchor_relations)
                    answer_scores[b] = m.ground_scores(query[1], seen)
        return out, scores, answer_scores
