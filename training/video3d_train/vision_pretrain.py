"""Dense pretraining of the vision tower on generated rooms: what is in each patch.

The paper's vision tower comes pretrained (SigLIP): its patch features already say what
they show, and the LLM learns to read them. Ours (``tiny``/``small``) starts from scratch,
and the multi-task losses alone never taught it to tell a door from a cabinet by a few
14-px patches (see ``Video3DModel.encode_boxes``): grounding leans on box sizes, and text
answers that need to find an object in the video (its colour, what stands beside it) stay
near the answer prior. Generated rooms come with per-pixel instance masks, so each patch
has a label — the category and colour of the object covering most of it, or "no object" —
and a linear head on the tower's output learns to predict both (cross-entropy).

    python -m video3d_train.vision_pretrain --checkpoint runs/phase5/final \
        --data-root data/gen250 --out runs/vision_pretrained --steps 3000

writes the checkpoint with the retrained tower (everything else unchanged; the head is
dropped) and prints patch accuracy on the validation rooms before and after. Continue
multi-task training from it (``model.init: checkpoint``) so the LLM learns to read the new
features. Needs ``posed_images/<scene>/instance/`` masks and ``scans/<scene>/<scene>_objects.json``
(written by ``video3d-scenes``); ScanNet scans have neither.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from video3d_ros.geometry.tokens import FrameFit, resize_crop_nearest, resize_crop_params
from video3d_ros.model.checkpoint import LoadedModel, load_pretrained, save_pretrained
from video3d_ros.model.runtime import Runtime
from video3d_ros.scenes.vocab import Colour

from .cli import run_command
from .data import DataError, ObjectLabel, SceneStore, read_object_labels

log = logging.getLogger(__name__)

IGNORE = -100  # label of a patch whose colour is not scored (no object covers it)
NO_OBJECT = 0  # category index of a patch that no object covers (walls, floor, mixed)
COLOURS = [c.value for c in Colour]


class PatchHeadKind(enum.Enum):
    """What the patch classifiers read, and what their class vectors are."""

    LINEAR = "linear"  # tower output → learned linear classifiers (trains the tower)
    # projector output (what the LLM reads) → cosine with the LLM's own embedding of the
    # category / colour words, frozen: trains tower and projector so that a bookshelf's
    # visual tokens point where the word "bookshelf" does (as LLaVA's first stage aligns
    # visual tokens with word embeddings, here with labels instead of captions)
    WORDS = "words"


def patch_labels(instance: np.ndarray, object_of_instance: dict[int, tuple[int, int]],
                 size_px: int, patch_px: int, min_cover: float = 0.5,
                 fit: FrameFit = FrameFit.CENTRE_CROP) -> tuple[np.ndarray, np.ndarray]:
    """Category and colour index of every patch of one frame.

    Args:
        instance: (H, W) uint16 instance mask (object_id + 1; 0 = no object).
        object_of_instance: instance value → (category index ≥ 1, colour index).
        size_px: the model's input size (the mask is resized and cropped like the image,
            with ``fit``; padding is no object).
        patch_px: patch side in pixels.
        min_cover: fraction of a patch the majority object must cover to label it.

    Returns: (P, P) category indices (``NO_OBJECT`` where no object covers ``min_cover``)
    and (P, P) colour indices (``IGNORE`` there).
    """
    crop = resize_crop_nearest(instance, resize_crop_params(*instance.shape, size_px, fit), fill=0)
    p = size_px // patch_px
    cells = crop[: p * patch_px, : p * patch_px].reshape(p, patch_px, p, patch_px)
    cells = cells.transpose(0, 2, 1, 3).reshape(p * p, patch_px * patch_px).astype(np.int64)
    # pixel count of every instance value in every patch, in one bincount
    n_values = int(cells.max()) + 1
    counts = np.bincount((np.arange(p * p)[:, None] * n_values + cells).ravel(),
                         minlength=p * p * n_values).reshape(p * p, n_values)
    top = counts.argmax(1)
    covered = counts[np.arange(p * p), top] >= min_cover * cells.shape[1]
    table = np.array([object_of_instance.get(v, (NO_OBJECT, IGNORE)) for v in range(n_values)],
                     np.int64).reshape(n_values, 2)
    table[0] = (NO_OBJECT, IGNORE)  # 0: no object hit
    labels = np.where(covered[:, None], table[top], (NO_OBJECT, IGNORE))
    return labels[:, 0].reshape(p, p), labels[:, 1].reshape(p, p)


@dataclass
class PatchSet:
    pixel_values: torch.Tensor  # (N, 3, S, S)
    category: torch.Tensor  # (N, P, P) int64
    colour: torch.Tensor  # (N, P, P) int64 (IGNORE where no object)


def scene_ids(root: Path, split: str) -> list[str]:
    folder = root / "scannet" / "pcd_with_object_aabbs" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist (is {root} a generated-rooms root?)")
    return sorted(p.stem for p in folder.glob("*.npz"))


def all_scene_ids(root: Path) -> list[str]:
    """Every room of ``root``, whichever split it belongs to."""
    ids = [sid for split in ("train", "val")
           if (root / "scannet" / "pcd_with_object_aabbs" / split).is_dir()
           for sid in scene_ids(root, split)]
    if not ids:
        raise FileNotFoundError(f"{root} has no generated rooms (scannet/pcd_with_object_aabbs/"
                                "train or val)")
    return ids


def load_patch_set(store: SceneStore, objects: dict[str, list[ObjectLabel]],
                   categories: dict[str, int], progress: bool = True) -> PatchSet:
    """Every stored frame of the rooms of ``objects`` (room → its objects, from
    :func:`read_object_labels`), as the model sees it, with its patch labels."""
    size = store.config.vision.image_size_px
    patch = store.config.vision.patch_size_px
    pix, cats, cols = [], [], []
    for sid, labels in tqdm(objects.items(), desc="frames", disable=not progress):
        lookup = {1 + o.object_id: (categories[o.category], COLOURS.index(o.colour))
                  for o in labels}
        for n, (rgb, xyz, valid) in zip(store.frame_numbers(sid), store.raw_frames(sid)):
            mask_path = store.scan_dir(sid) / "instance" / f"{n:05d}.png"
            try:
                with Image.open(mask_path) as im:
                    mask = np.asarray(im)
            except OSError as e:
                raise DataError(f"{mask_path}: {e}") from e
            pix.append(store.processor.prepare_frame(rgb, xyz, valid).pixel_values)
            c, k = patch_labels(mask, lookup, size, patch, fit=store.config.video.frame_fit)
            cats.append(torch.from_numpy(c))
            cols.append(torch.from_numpy(k))
    return PatchSet(torch.stack(pix), torch.stack(cats), torch.stack(cols))


class PatchHead(torch.nn.Module):
    """Category + colour classifiers on patch features (see :class:`PatchHeadKind`)."""

    def __init__(self, kind: PatchHeadKind, width: int, n_categories: int, n_colours: int,
                 category_words: torch.Tensor | None = None,
                 colour_words: torch.Tensor | None = None, temperature: float = 0.1):
        super().__init__()
        self.kind = kind
        if kind is PatchHeadKind.LINEAR:
            self.category = torch.nn.Linear(width, n_categories)
            self.colour = torch.nn.Linear(width, n_colours)
            return
        if category_words is None or colour_words is None:
            raise ValueError("the 'words' head needs the category and colour word embeddings")
        if category_words.shape != (n_categories - 1, width) or colour_words.shape != (n_colours, width):
            raise ValueError(f"word embeddings {tuple(category_words.shape)} / "
                             f"{tuple(colour_words.shape)} do not match {n_categories - 1} "
                             f"categories / {n_colours} colours of width {width}")
        self.register_buffer("category_words", F.normalize(category_words.float(), dim=-1))
        self.register_buffer("colour_words", F.normalize(colour_words.float(), dim=-1))
        self.no_object = torch.nn.Parameter(torch.randn(width) / width ** 0.5)
        self.temperature = temperature

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, P², W) → category logits (N, P², C) and colour logits (N, P², K)."""
        if self.kind is PatchHeadKind.LINEAR:
            return self.category(feats), self.colour(feats)
        f = F.normalize(feats.float(), dim=-1)
        cats = torch.cat([F.normalize(self.no_object, dim=-1)[None], self.category_words])
        return f @ cats.T / self.temperature, f @ self.colour_words.T / self.temperature


def word_embeddings(loaded: LoadedModel, words: list[str]) -> torch.Tensor:
    """(len(words), D): the LLM's input embedding of each word (mean over its tokens, with
    the leading space it has inside a sentence)."""
    table = loaded.model.language_model.get_input_embeddings().weight.detach()
    rows = []
    for w in words:
        ids = loaded.tokenizer(" " + w, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"the tokenizer turns {w!r} into no tokens")
        rows.append(table[ids].mean(0))
    return torch.stack(rows)


def patch_features(loaded: LoadedModel, pixel_values: torch.Tensor,
                   kind: PatchHeadKind = PatchHeadKind.LINEAR) -> torch.Tensor:
    """(N, 3, S, S) → (N, P², Dv) tower output (what the projector reads), or for the
    ``words`` head (N, P², D) projector output (what the LLM reads, before pooling)."""
    h = loaded.model.tower_features(pixel_values)
    return loaded.model.projector(h) if kind is PatchHeadKind.WORDS else h


def losses(loaded: LoadedModel, head: PatchHead, batch: PatchSet) -> tuple[torch.Tensor, ...]:
    feats = patch_features(loaded, batch.pixel_values, head.kind)
    cat_logits, col_logits = head(feats)
    cat_t, col_t = batch.category.flatten(1), batch.colour.flatten(1)
    cat_loss = F.cross_entropy(cat_logits.flatten(0, 1), cat_t.flatten())
    col_loss = F.cross_entropy(col_logits.flatten(0, 1), col_t.flatten(), ignore_index=IGNORE)
    return cat_loss, col_loss, cat_logits.argmax(-1), col_logits.argmax(-1)


@torch.no_grad()
def accuracy(loaded: LoadedModel, head: PatchHead, data: PatchSet, batch: int = 256
             ) -> dict[str, float]:
    """Patch accuracy on ``data``: category over object patches, colour over object patches."""
    hit_cat = hit_col = n_obj = 0
    for s in range(0, len(data.pixel_values), batch):
        part = PatchSet(*(t[s:s + batch] for t in (data.pixel_values, data.category, data.colour)))
        _, _, cat_pred, col_pred = losses(loaded, head, part)
        obj = part.category.flatten(1) != NO_OBJECT
        hit_cat += int((cat_pred == part.category.flatten(1))[obj].sum())
        hit_col += int((col_pred == part.colour.flatten(1))[obj].sum())
        n_obj += int(obj.sum())
    return {"category": 100.0 * hit_cat / max(n_obj, 1), "colour": 100.0 * hit_col / max(n_obj, 1),
            "object_patches": n_obj}


def fit_head(loaded: LoadedModel, head: PatchHead, data: PatchSet, steps: int, lr: float,
             batch: int, seed: int, train_tower: bool, progress: bool) -> None:
    """AdamW on the head (and the tower when ``train_tower``), constant ``lr``."""
    params = list(head.parameters())
    tower = loaded.model.vision_tower
    trained = [tower] + ([loaded.model.projector] if head.kind is PatchHeadKind.WORDS else [])
    for m in trained:
        m.requires_grad_(train_tower)
        if train_tower:
            params += list(m.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(range(steps), desc="tower" if train_tower else "probe", disable=not progress)
    for _ in bar:
        idx = torch.randint(len(data.pixel_values), (batch,), generator=gen)
        part = PatchSet(data.pixel_values[idx], data.category[idx], data.colour[idx])
        cat_loss, col_loss, _, _ = losses(loaded, head, part)
        opt.zero_grad(set_to_none=True)
        (cat_loss + col_loss).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        bar.set_postfix(category=f"{cat_loss.item():.3f}", colour=f"{col_loss.item():.3f}")
    for m in trained:
        m.requires_grad_(True)


def _concat(parts: list[PatchSet]) -> PatchSet:
    return PatchSet(*(torch.cat([getattr(p, f) for p in parts])
                      for f in ("pixel_values", "category", "colour")))


def pretrain(checkpoint: str | Path, data_root: str | Path, out: str | Path, steps: int,
             lr: float, batch: int, seed: int = 0, probe_steps: int = 500,
             limit_scenes: int | None = None, progress: bool = True,
             head_kind: PatchHeadKind = PatchHeadKind.LINEAR,
             extra_roots: list[str | Path] = ()) -> dict[str, dict]:
    """Retrain ``checkpoint``'s vision tower (and, for the ``words`` head, its projector) on
    patch labels; write the checkpoint to ``out``.

    Training frames: the train split of ``data_root`` plus every room of ``extra_roots``
    (more generated rooms; their questions are not used). Returns patch accuracies on the
    validation rooms of ``data_root`` (and, under ``training_frames``, on the training
    frames): a linear probe of the original tower (``probe_steps`` head-only steps) and the
    retrained model with its head.
    """
    head_kind = PatchHeadKind(head_kind)
    torch.manual_seed(seed)
    root = Path(data_root)
    loaded = load_pretrained(checkpoint, Runtime(torch.device("cpu"), torch.float32, "sdpa"))
    train_ids, val_ids = scene_ids(root, "train"), scene_ids(root, "val")
    extras = [(Path(r), all_scene_ids(Path(r))) for r in extra_roots]
    if limit_scenes:
        train_ids, val_ids = train_ids[:limit_scenes], val_ids[:limit_scenes]
        extras = [(r, ids[:limit_scenes]) for r, ids in extras]
    # each room's objects, read once: the category list needs all of them before any frame
    sources = [(r, {sid: read_object_labels(r, sid) for sid in ids})
               for r, ids in [(root, train_ids)] + extras]
    val_objects = {sid: read_object_labels(root, sid) for sid in val_ids}
    names = sorted({o.category for _, objs in sources + [(root, val_objects)]
                    for labels in objs.values() for o in labels})
    categories = {n: i + 1 for i, n in enumerate(names)}  # 0: no object
    t0 = time.perf_counter()
    train = _concat([load_patch_set(SceneStore(r, loaded.processor, num_frames=1 << 20,
                                               max_scenes=0), objs, categories, progress)
                     for r, objs in sources])  # every stored frame
    val = load_patch_set(SceneStore(root, loaded.processor, num_frames=1 << 20, max_scenes=0),
                         val_objects, categories, progress)
    log.info("%d training / %d validation frames in %.1f s", len(train.pixel_values),
             len(val.pixel_values), time.perf_counter() - t0)
    vision_width = loaded.model.config.vision.hidden_size
    model = loaded.model.train()
    probe = PatchHead(PatchHeadKind.LINEAR, vision_width, len(names) + 1, len(COLOURS))
    fit_head(loaded, probe, train, probe_steps, 1e-2, batch, seed, False, progress)
    before, before_train = accuracy(loaded, probe, val), accuracy(loaded, probe, train)
    if head_kind is PatchHeadKind.LINEAR:
        head = PatchHead(head_kind, vision_width, len(names) + 1, len(COLOURS))
        head.load_state_dict(probe.state_dict())
    else:
        head = PatchHead(head_kind, loaded.model.config.text.hidden_size, len(names) + 1,
                         len(COLOURS), word_embeddings(loaded, names),
                         word_embeddings(loaded, COLOURS))
    t0 = time.perf_counter()
    fit_head(loaded, head, train, steps, lr, batch, seed, True, progress)
    seconds = time.perf_counter() - t0
    after, after_train = accuracy(loaded, head, val), accuracy(loaded, head, train)
    save_pretrained(model.eval(), loaded.tokenizer, out, trained_frames=loaded.trained_frames)
    result = {"linear_probe_of_original_tower": before, "retrained_tower": after,
              "training_frames": {"linear_probe_of_original_tower": before_train,
                                  "retrained_tower": after_train},
              "head": head_kind.value, "steps": steps, "train_seconds": round(seconds, 1),
              "training_frame_count": len(train.pixel_values),
              "categories": names, "colours": COLOURS}
    (Path(out) / "vision_pretrain.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-vision-pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (our format)")
    p.add_argument("--data-root", required=True, help="generated rooms (video3d-scenes --out)")
    p.add_argument("--out", required=True, help="directory to write the checkpoint to")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=64, help="frames per step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-steps", type=int, default=500,
                   help="head-only steps measuring the original tower (linear probe)")
    p.add_argument("--limit-scenes", type=int, default=None, help="first N train/val rooms")
    p.add_argument("--head", choices=[k.value for k in PatchHeadKind], default="linear",
                   help="linear: classifiers on the tower output; words: projector output "
                        "against the LLM's embeddings of the label words (trains the projector too)")
    p.add_argument("--extra-rooms", action="append", default=[], metavar="ROOT",
                   help="more generated rooms (all of them) for training frames; repeatable")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    return run_command("video3d-vision-pretrain", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    res = pretrain(args.checkpoint, args.data_root, args.out, args.steps, args.lr, args.batch,
                   args.seed, args.probe_steps, args.limit_scenes, not args.no_progress,
                   PatchHeadKind(args.head), args.extra_rooms)
    for k in ("linear_probe_of_original_tower", "retrained_tower"):
        r = res[k]
        print(f"{k}: category {r['category']:.1f} %, colour {r['colour']:.1f} % "
              f"of {r['object_patches']} object patches (validation rooms)")
    print(f"{res['steps']} steps in {res['train_seconds']} s → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
