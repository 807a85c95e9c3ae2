"""Where the answer looks: attention mass on the objects a ScanQA (or generated SQA3D)
question is about.

For each question whose named objects (``metadata.object_id``) are seen by some video
token, the last decoder layer's attention at the position that predicts the first
answer token is summed over those objects' tokens, per head. Next to it: the share of
the video tokens that are the objects' (what attention spread evenly over the video
would give), the share of attention that goes to the video at all, and how often the
most-attended video token is one of the objects'.

    python -m video3d_train.attention --checkpoint runs/x/final --data-root data/gen250 \
        --file processed/scanqa_val_llava_style.json --limit 200

A decoder that answers from the question text alone puts less on the objects than the
even share; :func:`video3d_train.step.answer_attention_loss` trains it to look.
``--subject-layer L`` adds the same figures for layer L's attention on the objects the
question names (``metadata.subject_object_id``, our generator's; for *"what is next to the
desk?"* the desk), which :func:`video3d_train.step.subject_attention_loss` trains.

``--probe category`` / ``--probe colour`` add whether the video tokens say what they show:
a linear classifier, fitted on training rooms and scored on validation rooms, predicts
the category (or the colour) of the one object a token sees (tokens of several objects
or none are left out) from the pooled features, from the decoder's input (position
encoding added) and from every decoder layer's output but the last — the inputs the
later layers' keys and values are computed from. A token that cannot be found by its
category cannot be attended to by name; one whose colour is gone cannot be read. Generated
rooms only (labels from ``scans/<scene>/<scene>_objects.json``). ``--category-probe`` is
``--probe category``.
"""

from __future__ import annotations

import argparse
import enum
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from video3d_ros.model.checkpoint import LoadedModel, load_pretrained
from video3d_ros.model.modeling import IGNORE_INDEX
from video3d_ros.model.runtime import Runtime
from video3d_ros.scenes.vocab import Colour

from .cli import run_command
from .data import Item, SceneStore, Video3DDataset, pool_cells, read_object_labels, read_processed
from .metrics import scanqa_question_kind
from .recipes import ANSWER_LOSS_TASKS
from .step import Video3DForTraining, answer_video_attention, pad_batch, video_token_targets


def load_for_diagnostics(checkpoint: str | Path, data_root: str | Path,
                         num_frames: int | None = None) -> tuple[LoadedModel, SceneStore]:
    """The checkpoint with eager attention (weights readable) and a scene store over
    ``data_root`` at its trained frame count; shared by the report and the probe."""
    loaded = load_pretrained(checkpoint, Runtime(torch.device("cpu"), torch.float32, "eager"))
    loaded.model.eval()
    return loaded, SceneStore(data_root, loaded.processor,
                              num_frames or loaded.trained_frames or 8)


def one_per_question(samples: list, keep=lambda s: True) -> list:
    """The first sample of each question that ``keep`` accepts (a processed ScanQA file
    repeats a question once per answer, ids ``<question id>_<answer index>``)."""
    by_question: dict[str, object] = {}
    for s in samples:
        if keep(s):
            by_question.setdefault(s.sample_id.rsplit("_", 1)[0], s)
    return list(by_question.values())


def iter_answer_attention(loaded: LoadedModel, ds: Video3DDataset, batch: int, desc: str,
                          progress: bool, layer: int = -1, subject: bool = False
                          ) -> Iterator[tuple[int, Item, torch.Tensor, torch.Tensor, tuple | None]]:
    """Runs ``ds`` in batches with attention weights; yields, per item, its index in the
    batch, the item, its padded ids and labels, and :func:`answer_video_attention` of
    ``layer`` (default the last) onto the objects the answer is about, or with ``subject``
    onto those the question names (None: no target or answer). Forward hooks see the
    current batch."""
    cfg = loaded.model.config
    step = Video3DForTraining(loaded.model, loaded.tokenizer.pad_token_id)
    with torch.no_grad():
        for i in tqdm(range(0, len(ds), batch), desc=desc, disable=not progress):
            items = [ds[j] for j in range(i, min(i + batch, len(ds)))]
            ids, labels, mask = pad_batch(items, loaded.tokenizer.pad_token_id)
            out, _, _ = step.run(items, with_labels=True, output_attentions=True,
                              padded=(ids, labels, mask))
            for b, it in enumerate(items):
                if subject and it.subject_cells is None:
                    yield b, it, ids[b], labels[b], None
                    continue
                yield b, it, ids[b], labels[b], answer_video_attention(
                    out.attentions[layer][b], it, ids[b], labels[b], cfg.token_ids.video,
                    cfg.video.newline, it.subject_cells if subject else None)


def answer_attention(loaded: LoadedModel, store: SceneStore, file: str,
                     limit: int | None = None, batch: int = 16, progress: bool = True,
                     layer: int = -1, subject: bool = False) -> dict:
    """Mean per-head attention mass of ``layer`` (default the last) on the named objects'
    tokens (see the module doc); with ``subject`` on the objects the question names
    (``metadata.subject_object_id``: the target of the subject-attention loss)."""
    samples = one_per_question(read_processed(store.root / file)[0])[:limit]
    ds = Video3DDataset(samples, store, max_length=loaded.model.config.text.max_position_embeddings,
                        answer_tasks=ANSWER_LOSS_TASKS)
    on_objects, top_on_object, share, on_video, unseen = [], [], [], [], 0
    for _, _, _, _, found in iter_answer_attention(loaded, ds, batch, "attention", progress,
                                                   layer, subject):
        if found is None:
            unseen += 1
            continue
        weights, target = found  # (H, N), (N,)
        on_objects.append(weights[:, target].sum(-1).numpy())
        top_on_object.append(target[weights.argmax(-1)].numpy())
        on_video.append(weights.sum(-1).numpy())
        share.append(float(target.sum()) / target.numel())
    if not on_objects:
        raise ValueError(f"{file}: no question sees its named objects in the sampled frames")
    return {"questions": len(ds), "objects_not_in_view": unseen,
            "mass_on_objects_per_head": [round(float(x), 4) for x in np.mean(on_objects, 0)],
            "mass_on_video_per_head": [round(float(x), 4) for x in np.mean(on_video, 0)],
            # share of questions whose most-attended video token is one of the objects'
            "argmax_on_objects_per_head": [round(float(x), 4)
                                           for x in np.mean(top_on_object, 0)],
            "objects_share_of_video_tokens": round(float(np.mean(share)), 4)}


READOUT_FEATURES = ("head0_output", "perfect_head0_output", "last_layer_input", "final_hidden")
_COLOUR_NAMES = frozenset(c.value for c in Colour)


class ReadoutQuestions(enum.Enum):
    """Which ScanQA questions :func:`answer_readout` probes (the value is their
    :func:`scanqa_question_kind`), and for what label."""

    COLOUR = "colour"  # "what colour is X": the label is the answer's colour (its first word)
    RELATION = "relation"  # "what is next to X": the label is the answer's category


def _colour_label(answer: str) -> str:
    return answer.split()[0].lower()


def _category_label(answer: str) -> str:
    """"a brown window" / "brown window" / "window" → "window"."""
    words = answer.lower().split()
    if words[:1] in (["a"], ["an"]):
        words = words[1:]
    if words[:1] and words[0] in _COLOUR_NAMES:
        words = words[1:]
    return " ".join(words)


# the label each readout probes, from the answer
_READOUT_LABELS = {ReadoutQuestions.COLOUR: _colour_label,
                   ReadoutQuestions.RELATION: _category_label}


def answer_readout(loaded: LoadedModel, store: SceneStore, file: str, limit: int | None = None,
                   batch: int = 16, test_every: int = 5, progress: bool = True,
                   questions: ReadoutQuestions = ReadoutQuestions.COLOUR) -> dict:
    """Can the answer read what it needs from the object a ScanQA question names?

    ``questions`` COLOUR: colour questions, the label is the named object's colour (the
    answer's first word). RELATION: "what is next to X" questions, whose named object is
    the answer, the label is its category. For each such question whose named objects some
    video token sees, four features, each probed linearly for the label (fitted on the
    questions of most rooms, scored on those of every ``test_every``-th room):

    - ``head0_output``: what the last layer's head 0 (the one the answer-attention loss
      trains) outputs at the position predicting the first answer token;
    - ``perfect_head0_output``: what it would output if all its attention were on the
      objects' tokens (the mean of their head-0 values);
    - ``last_layer_input``: the mean over the objects' tokens of the last layer's input;
    - ``final_hidden``: the final hidden state at that position (what the LM head reads).
    """
    model, cfg = loaded.model, loaded.model.config
    label_of = _READOUT_LABELS[questions]
    samples = one_per_question(read_processed(store.root / file)[0],
                               keep=lambda s: scanqa_question_kind(s.prompt) == questions.value
                               and bool(s.answer.split()))
    ds = Video3DDataset(samples[:limit], store, max_length=cfg.text.max_position_embeddings)
    last = model.language_model.model.layers[-1]
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, from_input: bool):
        def hook(module, args, kwargs, output):
            seen[name] = (args[0] if args else kwargs["hidden_states"]) if from_input else output
        return hook

    head_dim = cfg.text.hidden_size // cfg.text.num_heads
    feats: dict[str, list[torch.Tensor]] = {k: [] for k in READOUT_FEATURES}
    truth, rooms = [], []
    hooks = [last.register_forward_hook(keep("layer_in", True), with_kwargs=True),
             last.self_attn.o_proj.register_forward_hook(keep("heads_out", True), with_kwargs=True),
             last.self_attn.v_proj.register_forward_hook(keep("values", False), with_kwargs=True),
             model.language_model.model.norm.register_forward_hook(keep("final", False),
                                                                  with_kwargs=True)]
    try:
        for b, it, ids, labels, found in iter_answer_attention(loaded, ds, batch, "readout",
                                                               progress):
            if found is None or not bool(found[1].any()):
                continue
            q = int((labels != IGNORE_INDEX).nonzero()[0]) - 1
            obj = (ids == cfg.token_ids.video).nonzero().flatten()[found[1]]
            feats["head0_output"].append(seen["heads_out"][b, q, :head_dim])
            feats["perfect_head0_output"].append(seen["values"][b, obj, :head_dim].mean(0))
            feats["last_layer_input"].append(seen["layer_in"][b, obj].mean(0))
            feats["final_hidden"].append(seen["final"][b, q])
            truth.append(label_of(it.sample.answer))
            rooms.append(it.sample.scene_id)
    finally:
        for h in hooks:
            h.remove()
    scenes = sorted(set(rooms))
    train = torch.tensor([scenes.index(r) % test_every != 0 for r in rooms], dtype=torch.bool)
    if not truth or bool(train.all()) or not bool(train.any()):
        raise ValueError(f"{file}: the {questions.value} readout needs {questions.value} "
                         f"questions with their objects "
                         f"in view in at least two rooms (found {len(truth)} in "
                         f"{len(scenes)} rooms)")
    classes = sorted(set(truth))
    y = torch.tensor([classes.index(c) for c in truth])
    majority = max(float((y[~train] == c).float().mean()) for c in range(len(classes)))
    acc = {k: round(linear_probe_accuracy(torch.stack(v)[train], y[train], torch.stack(v)[~train],
                                          y[~train], len(classes)), 1)
           for k, v in feats.items()}
    return {"questions": len(truth), "test_questions": int((~train).sum()),
            "majority_share": round(100 * majority, 1), "accuracy": acc, "classes": classes}


class ProbeLabel(str, enum.Enum):
    """What the token probe predicts; the value is the :class:`ObjectLabel` field it reads."""

    CATEGORY = "category"
    COLOUR = "colour"

    @classmethod
    def from_name(cls, name: str) -> "ProbeLabel":
        names = {"category": cls.CATEGORY, "colour": cls.COLOUR, "color": cls.COLOUR}
        if name not in names:
            raise ValueError(f"unknown probe label {name!r}; expected one of {sorted(names)}")
        return names[name]


def probe_features(num_layers: int) -> tuple[str, ...]:
    """Where the probe reads tokens: the pooled features, the decoder's input and the
    output of every decoder layer but the last (``layer1_output`` … ``layer{L-1}_output``)."""
    return ("pooled", "decoder_input") + tuple(f"layer{i}_output" for i in range(1, num_layers))


def token_labels(store: SceneStore, scene_id: str,
                 label: ProbeLabel = ProbeLabel.CATEGORY) -> np.ndarray:
    """(F·G·G,) the ``label`` (category or colour) of the one object each pooled token
    sees ('' for none/several)."""
    values = {o.object_id: getattr(o, label.value)
              for o in read_object_labels(store.root, scene_id)}
    scene = store.load(scene_id)
    pooled = pool_cells(scene.object_masks, store.config.grid.pooled_per_side)  # (N, F, G, G)
    one = pooled.sum(axis=0) == 1
    labels = np.full(one.shape, "", dtype=object)
    for i, oid in enumerate(scene.objects.object_ids):
        labels[pooled[i] & one] = values[int(oid)]
    return labels.reshape(-1)


def token_features(loaded, scene) -> dict[str, torch.Tensor]:
    """Per pooled token (F·G·G, D), newlines dropped: the features of :func:`probe_features`."""
    model, cfg = loaded.model, loaded.model.config
    with torch.no_grad():
        enc = model.encode_frames(scene.pixel_values, scene.token_points)
        # no question: a question-first model's tokens are probed after an empty task text
        ids = torch.tensor([loaded.processor.prefix_ids(scene.pixel_values.shape[0], "")])
        video = enc.tokens.reshape(-1, enc.tokens.shape[-1])
        out = model.language_model.model(inputs_embeds=model.embed(ids, video),
                                         output_hidden_states=True)
    pos = (ids[0] == cfg.token_ids.video).nonzero().flatten()
    g = cfg.grid.pooled_per_side
    cells = video_token_targets(torch.ones(scene.pixel_values.shape[0], g, g, dtype=torch.bool),
                                cfg.video.newline)  # drops the newline tokens
    names = probe_features(cfg.text.num_layers)
    # hidden_states: the input, then each layer's output; the last layer's is not probed.
    layers = {name: out.hidden_states[i][0, pos][cells] for i, name in enumerate(names[1:])}
    return {"pooled": enc.pooled_features.reshape(-1, video.shape[-1]), **layers}


def linear_probe_accuracy(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                          y_val: torch.Tensor, n_classes: int, steps: int = 600,
                          seed: int = 0) -> float:
    """Share (%) of ``y_val`` a softmax classifier on standardised features gets right."""
    torch.manual_seed(seed)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mu) / sd, (x_val - mu) / sd
    head = torch.nn.Linear(a.shape[1], n_classes)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(a), y_train) + 1e-4 * head.weight.square().sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return 100.0 * float((head(b).argmax(1) == y_val).float().mean())


def token_probe(loaded: LoadedModel, store: SceneStore, train_scenes: list[str],
                val_scenes: list[str], label: ProbeLabel = ProbeLabel.CATEGORY,
                progress: bool = True) -> dict:
    """Linear-probe accuracy of the token's object ``label`` at each of :func:`probe_features`."""

    def collect(scenes: list[str]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        feats: dict[str, list[torch.Tensor]] = {}
        labels = []
        for sid in tqdm(scenes, desc=f"tokens ({label.name.lower()})", disable=not progress):
            lab = token_labels(store, sid, label)
            keep = torch.from_numpy(lab != "")
            for k, v in token_features(loaded, store.load(sid)).items():
                feats.setdefault(k, []).append(v[keep])
            labels.append(lab[lab != ""])
        return {k: torch.cat(v) for k, v in feats.items()}, np.concatenate(labels)

    (x_tr, y_tr), (x_va, y_va) = collect(train_scenes), collect(val_scenes)
    classes = sorted(set(y_tr) | set(y_va))
    index = {c: i for i, c in enumerate(classes)}
    t_tr = torch.tensor([index[c] for c in y_tr])
    t_va = torch.tensor([index[c] for c in y_va])
    res = {k: round(linear_probe_accuracy(x_tr[k], t_tr, x_va[k], t_va, len(classes)), 1)
           for k in x_tr}
    majority = max(float((t_va == i).float().mean()) for i in range(len(classes)))
    return {"label": label.name.lower(), "accuracy": res, "majority_share": round(100 * majority, 1),
            "train_tokens": len(y_tr), "val_tokens": len(y_va), "classes": classes}


def print_report(res: dict, out: Path | None) -> None:
    """A diagnostic's result as indented JSON on stdout and, with ``out``, in that file."""
    text = json.dumps(res, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-attention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model directory (our format)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--file", default="processed/scanqa_val_llava_style.json",
                   help="processed ScanQA file with metadata.object_id (under --data-root)")
    p.add_argument("--limit", type=int, default=None, help="at most N questions")
    p.add_argument("--num-frames", type=int, default=None, help="default: the model's")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    p.add_argument("--probe", action="append", default=[], choices=["category", "colour"],
                   help="also fit a token probe of this label (generated rooms; repeatable)")
    p.add_argument("--category-probe", action="store_true", help="the same as --probe category")
    p.add_argument("--readout", action="append", default=[],
                   choices=[q.value for q in ReadoutQuestions],
                   help="also probe whether the answer can read the named object's colour "
                        "(colour questions of --file) or category (relation questions, whose "
                        "named object is the answer); see answer_readout (repeatable)")
    p.add_argument("--colour-readout", action="store_true", help="the same as --readout colour")
    p.add_argument("--probe-train-rooms", type=int, default=60,
                   help="training rooms for the probe (every k-th of the train split)")
    p.add_argument("--probe-val-rooms", type=int, default=50, help="validation rooms")
    p.add_argument("--subject-layer", type=int, default=None,
                   help="also report this decoder layer's attention at the answer on the objects "
                        "the question names (metadata.subject_object_id; -1: the last layer)")
    args = p.parse_args(argv)
    return run_command("video3d-attention", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded, store = load_for_diagnostics(args.checkpoint, args.data_root, args.num_frames)
    res = answer_attention(loaded, store, args.file, args.limit)
    if args.subject_layer is not None:
        res[f"subject_attention_layer{args.subject_layer}"] = answer_attention(
            loaded, store, args.file, args.limit, layer=args.subject_layer, subject=True)
    for name in dict.fromkeys(args.readout + (["colour"] if args.colour_readout else [])):
        kind = ReadoutQuestions(name)
        res[f"{name}_readout"] = answer_readout(loaded, store, args.file, args.limit,
                                                questions=kind)
    labels = [ProbeLabel.from_name(n) for n in dict.fromkeys(
        args.probe + (["category"] if args.category_probe else []))]
    if labels:
        from .vision_pretrain import scene_ids

        root = Path(args.data_root)
        train = scene_ids(root, "train")
        train = train[::max(1, len(train) // args.probe_train_rooms)][:args.probe_train_rooms]
        val = scene_ids(root, "val")[:args.probe_val_rooms]
        for label in labels:
            res[f"token_{label.name.lower()}_probe"] = token_probe(loaded, store, train, val, label)
    print_report(res, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
