"""The multi-task training objective as one module (so FSDP/ZeRO-3 see one forward).

    loss = CE(answer tokens) + ground_loss_scale · mean over grounding samples of
           InfoNCE/BCE(<ground> hidden state vs. candidate object features)

A micro-batch is a list of :class:`~video3d_train.data.Item`. All its frames go
through the vision tower together; the texts are right-padded into one batch
for the language model; every grounding item then scores its candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from video3d_ros.model.config import ObjectFeatureKind
from video3d_ros.model.modeling import IGNORE_INDEX, Video3DModel

from .data import Item


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar: lm_loss + scale · ground_loss
    lm_loss: torch.Tensor  # scalar: mean CE over the answer tokens of the micro-batch
    ground_loss: torch.Tensor  # scalar: mean grounding loss (0 when no grounding item)
    n_ground: int  # grounding items in the micro-batch


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


class Video3DForTraining(nn.Module):
    def __init__(self, model: Video3DModel, pad_id: int, ground_loss_scale: float = 1.0):
        super().__init__()
        self.model = model
        self.pad_id = pad_id
        self.ground_loss_scale = ground_loss_scale

    def forward(self, items: list[Item]) -> StepOutput:
        out, scores = self.run(items, with_labels=True)
        ground = [b for b, it in enumerate(items) if it.positives is not None]
        g_loss = out.loss.new_zeros(())
        if ground:
            head = self.model.ground_head
            g_loss = torch.stack([head.loss(scores[b], items[b].positives) for b in ground]).mean()
        loss = out.loss + self.ground_loss_scale * g_loss
        return StepOutput(loss, out.loss.detach(), g_loss.detach(), len(ground))

    def run(self, items: list[Item], with_labels: bool):
        """Model output and, per item with candidates, its (N + 1,) grounding scores."""
        m = self.model
        dev = m.device
        frames = torch.cat([it.pixel_values for it in items]).to(dev)  # (ΣF, 3, S, S)
        points = None
        if items[0].token_points is not None:
            points = torch.cat([it.token_points for it in items]).to(dev)  # (ΣF, G, G, K, 3)
        enc = m.encode_frames(frames, points)
        counts = [it.pixel_values.shape[0] for it in items]
        video = enc.tokens.reshape(-1, enc.tokens.shape[-1])  # (ΣF·T_f, D), batch order
        coord_items = [it for it in items if it.coord_points is not None]
        coord_embeds = None
        if coord_items:
            sizes = [it.coord_sizes for it in coord_items]
            coord_embeds = m.encode_boxes(  # (M, D)
                torch.cat([it.coord_points for it in coord_items]),
                None if any(x is None for x in sizes) else torch.cat(sizes))
        ids, labels, mask = (x.to(dev) for x in pad_batch(items, self.pad_id))
        out = m(ids, video_tokens=video, coord_embeds=coord_embeds, attention_mask=mask,
                labels=labels if with_labels else None)
        scores: dict[int, torch.Tensor] = {}
        cfg = m.config
        if any(it.object_masks is not None for it in items):
            feats = (enc.patch_features if cfg.grounding.object_feature
                     is ObjectFeatureKind.PATCH14 else enc.pooled_features)  # (ΣF, C, C, D)
            per_item = torch.split(feats, counts)
            gid = cfg.token_ids.ground
            for b, it in enumerate(items):
                if it.object_masks is None:
                    continue
                pos = (ids[b] == gid).nonzero().flatten()
                if pos.numel() != 1:
                    raise ValueError(f"{it.sample.file}: sample {it.sample.sample_id!r}: "
                                     f"expected one <ground> token, found {pos.numel()}")
                query = out.last_hidden_state[b, pos[0]]  # (D,)
                centres = it.object_centres if cfg.grounding.add_center_encoding else None
                objs = m.object_features(per_item[b], list(it.object_masks), centres,
                                         it.object_sizes)  # (N, D)
                scores[b] = m.ground_scores(query, objs)  # (N + 1,)
        return out, scores
