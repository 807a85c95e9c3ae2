"""Pure parts: config validation, 3D encodings, pooling/newlines, grounding maths,
object cells, runtime choice, processor layout, the multimodal splice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from video3d_ros.geometry import Aggregation, Box3D
from video3d_ros.model.config import (
    CoordMode,
    GroundingConfig,
    GroundLossKind,
    MultiObjectSelection,
    NewlinePosition,
    PoolMode,
    PositionEncodingConfig,
    PromptLayout,
    Video3DConfig,
    VideoConfig,
    VisionTowerConfig,
)
from video3d_ros.model.grounding import grounding_loss, select_above, select_multiple, select_objects
from video3d_ros.model.layers import add_newlines, pool_2d
from video3d_ros.model.object_features import inside_cells, mean_features
from video3d_ros.model.position_encoding import prepare_coords, sincos_3d
from video3d_ros.model.processor import Video3DProcessor
from video3d_ros.model.runtime import select_runtime
from video3d_ros.model.shapes import paper_7b


def _sincos_reference(point, dim, temperature=10000.0, k=1):
    """Straight from the definition, one number at a time."""
    f = dim // (3 * k)
    out = []
    for p in np.asarray(point, dtype=np.float64).reshape(k, 3):
        for axis in range(3):
            vals = []
            for i in range(f):
                arg = p[axis] / temperature ** (2 * (i // 2) / f)
                vals.append(math.sin(arg) if i % 2 == 0 else math.cos(arg))
            out += vals
    return np.array(out + [0.0] * (dim - len(out)))


@pytest.mark.parametrize("dim", [96, 100, 3584, 30])  # F even, F odd (33), paper, F odd (5)
def test_sincos_matches_definition(dim):
    pt = np.array([123.0, 45.0, 7.0])
    got = sincos_3d(torch.tensor(pt, dtype=torch.float32)[None], dim).numpy()
    np.testing.assert_allclose(got, _sincos_reference(pt, dim), atol=2e-5)


def test_sincos_two_points_concatenated():
    pts = np.array([[1.0, 2.0, 3.0], [40.0, 50.0, 60.0]])
    got = sincos_3d(torch.tensor(pts, dtype=torch.float32), 64).numpy()
    np.testing.assert_allclose(got, _sincos_reference(pts, 64, k=2), atol=2e-5)


def test_prepare_coords_discretises_like_reference():
    cfg = PositionEncodingConfig()
    got = prepare_coords(np.array([[0.0, 0.0, 0.0], [-20.0, 1.23, 9.0]]), cfg)
    np.testing.assert_array_equal(got[:, 0], [[150, 150, 50], [0, 162, 100]])
    cont = prepare_coords(np.array([[0.5, 1.5, 2.5]]),
                          PositionEncodingConfig(coords=CoordMode.CONTINUOUS))
    np.testing.assert_allclose(cont[0, 0], [0.5, 1.5, 2.5])
    mm = prepare_coords(np.zeros((2, 2, 6)), PositionEncodingConfig(aggregation=Aggregation.MIN_MAX))
    assert mm.shape == (2, 2, 2, 3)


@pytest.mark.parametrize("mode", list(PoolMode))
def test_pool_27_to_14(mode):
    x = torch.randn(2, 27, 27, 8)
    assert pool_2d(x, mode, 2).shape == (2, 14, 14, 8)


def test_average_pool_is_block_mean():
    x = torch.randn(1, 4, 4, 3)
    got = pool_2d(x, PoolMode.AVERAGE, 2)
    assert torch.allclose(got[0, 1, 0], x[0, 2:4, 0:2].mean((0, 1)))
    assert torch.allclose(pool_2d(x, PoolMode.MAX, 2)[0, 0, 1], x[0, 0:2, 2:4].amax((0, 1)))


def test_newline_after_each_row():
    g, d = 3, 2
    tok = torch.arange(2 * g * g * d, dtype=torch.float32).view(2, g, g, d)
    nl = torch.tensor([-1.0, -1.0])
    seq = add_newlines(tok, nl, NewlinePosition.GRID)
    assert seq.shape == (2 * g * (g + 1), d)
    rows = seq.view(2, g, g + 1, d)
    assert torch.equal(rows[:, :, g], nl.expand(2, g, d))
    assert torch.equal(rows[:, :, :g], tok)
    assert add_newlines(tok, None, NewlinePosition.NONE).shape == (2 * g * g, d)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="pool_stride"):
        VideoConfig(pool_stride=0)
    with pytest.raises(ValueError, match="num_heads"):
        VisionTowerConfig(hidden_size=65, num_heads=4)
    with pytest.raises(ValueError, match="divisible"):
        Video3DConfig(vision=VisionTowerConfig(image_size_px=100, patch_size_px=10),
                      video=VideoConfig(pool_stride=4))
    with pytest.raises(ValueError):
        VideoConfig(pool_mode="avg")  # only the enum's values


def test_config_round_trip_and_paper_numbers():
    cfg = paper_7b()
    assert Video3DConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.tokens_per_frame == 210
    assert (cfg.grid.patches_per_side, cfg.grid.pooled_per_side, cfg.grid.cell_px) == (27, 14, 27)


def test_infonce_loss_by_hand():
    s = torch.tensor([0.2, 0.9, -0.1, 0.3])  # 3 objects + zero target
    e = torch.exp(s.double() / 0.07)
    loss = grounding_loss(s, [0, 1], GroundLossKind.INFONCE, 0.07)
    assert loss.item() == pytest.approx(-math.log((e[0] + e[1]) / e.sum()), abs=1e-5)
    none = grounding_loss(s, [], GroundLossKind.INFONCE, 0.07)
    assert none.item() == pytest.approx(-math.log(e[3] / e.sum()), abs=1e-5)


def test_bce_loss_weights_positives():
    s = torch.tensor([0.2, 0.9, -0.1, 0.3])
    x = s / 0.07
    t = torch.tensor([0.0, 1.0, 0.0, 0.0])
    w = torch.tensor([1.0, 3.0, 1.0, 1.0])  # #neg/#pos = 3
    ref = (torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none") * w).mean()
    assert grounding_loss(s, [1], GroundLossKind.BCE, 0.07).item() == pytest.approx(ref.item(), abs=1e-6)


def test_multi_object_decoding():
    assert select_multiple(torch.tensor([0.1, 0.2, 0.9]), 0.07, 0.4) == []  # zero target on top
    s = torch.tensor([0.50, 0.49, 0.10, 0.0])
    p = torch.softmax(s[:3] / 0.07, 0)
    assert p[0] < 0.6
    assert select_multiple(s, 0.07, 0.4) == [0]
    assert select_multiple(s, 0.07, 0.9) == [0, 1]
    assert select_multiple(s, 0.07, 0.25) == [0]


def test_multi_object_decoding_by_score():
    assert select_above(torch.tensor([0.1, 0.2, 0.9]), 0.5) == []  # zero target on top
    s = torch.tensor([0.50, 0.49, 0.10, 0.0])  # the paper's rule at 0.4 keeps only [0]
    assert select_above(s, 0.45) == [0, 1]
    assert select_above(s, 0.05) == [0, 1, 2]
    assert select_above(s, 0.6) == [0]  # none above: still the best
    assert select_above(torch.tensor([0.2, 0.7, 0.65, 0.1]), 0.5) == [1, 2]  # best first
    assert select_above(torch.tensor([0.3]), 0.5) == []  # no objects


def test_multi_object_selection_is_the_configs():
    s = torch.tensor([0.50, 0.49, 0.10, 0.0])
    assert select_objects(s, MultiObjectSelection.CUMULATIVE_PROBABILITY, 0.07, 0.4) == [0]
    assert select_objects(s, MultiObjectSelection.SCORE_THRESHOLD, 0.07, 0.4) == [0, 1]
    g = GroundingConfig(multi_object_selection="score_threshold", multi_object_threshold=0.5)
    assert g.multi_object_selection is MultiObjectSelection.SCORE_THRESHOLD
    assert GroundingConfig().multi_object_selection is MultiObjectSelection.CUMULATIVE_PROBABILITY
    with pytest.raises(ValueError, match="not a cosine score"):
        GroundingConfig(multi_object_selection="score_threshold", multi_object_threshold=1.0)
    with pytest.raises(ValueError, match="not a cumulative probability"):
        GroundingConfig(multi_object_threshold=0.0)
    with pytest.raises(ValueError):
        GroundingConfig(multi_object_selection="top_k")


def test_inside_cells_threshold():
    # 1 frame, 4×4 pixels, cells of 2 px: x = column index, y = row index, z = 0
    v, u = np.mgrid[0:4, 0:4].astype(np.float32)
    xyz = np.stack([u, v, np.zeros_like(u)], -1)[None]
    valid = np.ones((1, 4, 4), bool)
    box = Box3D.from_min_max([-0.5, -0.5, -1], [2.5, 0.5, 1])  # columns 0..2 of row 0
    half = inside_cells(xyz, valid, box, 2, 2, 0.5)
    np.testing.assert_array_equal(half[0], [[True, False], [False, False]])
    quarter = inside_cells(xyz, valid, box, 2, 2, 0.25)
    np.testing.assert_array_equal(quarter[0], [[True, True], [False, False]])
    valid[0, 0, :2] = False
    assert not inside_cells(xyz, valid, box, 2, 2, 0.5)[0, 0, 0]


def test_mean_features_zero_when_empty():
    f = torch.arange(8, dtype=torch.float32).view(1, 2, 2, 2)
    m = [np.array([[[True, False], [False, True]]]), np.zeros((1, 2, 2), bool)]
    out = mean_features(f, m)
    assert torch.equal(out[0], (f[0, 0, 0] + f[0, 1, 1]) / 2)
    assert torch.equal(out[1], torch.zeros(2))


@pytest.mark.parametrize("cuda,flash,want", [
    (False, False, ("cpu", torch.float32, "sdpa")),
    (False, True, ("cpu", torch.float32, "sdpa")),
    (True, False, ("cuda", torch.bfloat16, "sdpa")),
    (True, True, ("cuda", torch.bfloat16, "flash_attention_2")),
])
def test_runtime_selection(cuda, flash, want):
    r = select_runtime(cuda, flash)
    assert (r.device.type, r.dtype, r.attn_implementation) == want


def test_runtime_refuses_missing_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_runtime(False, False, "cuda")
    assert select_runtime(True, True, "cpu").dtype == torch.float32


def test_prompt_layout(processor, tiny_config):
    enc = processor.encode(3, " What is this? Answer the question simply.", answer="a chair")
    ids = enc.input_ids.tolist()
    vid = processor.token_ids.video
    assert ids.count(vid) == 3 * tiny_config.tokens_per_frame
    assert ids[enc.prefix_len - 1] == vid and vid not in ids[enc.prefix_len:]
    text = processor.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                           "<|im_start|>user\n<image>")
    assert "spatial relationships in the video" in text
    assert text.endswith("<|im_start|>assistant\na chair<|im_end|>")
    labelled = enc.labels[enc.labels != -100].tolist()
    assert processor.tokenizer.decode(labelled) == "a chair<|im_end|>"


def test_question_first_prompt_layout(tokenizer, tiny_config):
    cfg = Video3DConfig.from_dict({**tiny_config.to_dict(),
                                   "video": {**tiny_config.to_dict()["video"],
                                             "prompt_layout": "question_first"}})
    assert cfg.video.prompt_layout is PromptLayout.QUESTION_FIRST
    assert Video3DConfig.from_dict(cfg.to_dict()).video.prompt_layout is PromptLayout.QUESTION_FIRST
    proc = Video3DProcessor(tokenizer, cfg)
    task = " What is this? Answer the question simply."
    enc = proc.encode(2, task, answer="a chair")
    ids = enc.input_ids.tolist()
    vid = proc.token_ids.video
    first = ids.index(vid)
    assert ids.count(vid) == 2 * cfg.tokens_per_frame
    assert ids[enc.prefix_len - 1] == vid and vid not in ids[enc.prefix_len:]
    before, after = tokenizer.decode(ids[:first]), tokenizer.decode(ids[enc.prefix_len:])
    assert before.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                             "<|im_start|>user\n")
    assert "spatial relationships in the video" in before and "What is this?" in before
    assert after == "<|im_end|>\n<|im_start|>assistant\na chair<|im_end|>"
    labelled = enc.labels[enc.labels != -100].tolist()
    assert tokenizer.decode(labelled) == "a chair<|im_end|>"
    assert enc.input_ids.tolist() == proc.prefix_ids(2, task) + proc.suffix_ids(task, "a chair")[0]
    with pytest.raises(ValueError, match="pass task_text"):
        proc.prefix_ids(2)
    with pytest.raises(ValueError, match="must not contain <image>"):
        proc.prefix_ids(2, "<image> where?")
    # the paper's layout: the prefix is the same whatever the question (the engine caches it)
    video_first = Video3DProcessor(tokenizer, tiny_config)
    assert tiny_config.video.prompt_layout is PromptLayout.VIDEO_FIRST
    assert video_first.prefix_ids(2) == video_first.prefix_ids(2, task)
    # a config written before the field existed reads as the paper's layout
    old = tiny_config.to_dict()
    del old["video"]["prompt_layout"]
    assert Video3DConfig.from_dict(old).video.prompt_layout is PromptLayout.VIDEO_FIRST


def test_splice_checks_counts_and_places_features(tiny_model, processor):
    enc = processor.encode(2, " Where? Answer the question simply.")
    ids = enc.input_ids[None]
    n = int((ids == processor.token_ids.video).sum())
    with pytest.raises(ValueError, match=rf"\({n}\) != video features given \({n - 1}\)"):
        tiny_model.embed(ids, torch.zeros(n - 1, tiny_model.config.text.hidden_size))
    feats = torch.randn(n, tiny_model.config.text.hidden_size)
    emb = tiny_model.embed(ids, feats)
    mask = ids[0] == processor.token_ids.video
    assert torch.equal(emb[0, mask], feats)
    table = tiny_model.language_model.get_input_embeddings().weight
    assert torch.equal(emb[0, ~mask], table[ids[0, ~mask]])


def test_training_loss_only_on_answer(tiny_model, processor, frames):
    prepared = [processor.prepare_frame(*f) for f in frames[:2]]
    pv = torch.stack([p.pixel_values for p in prepared])
    pts = torch.from_numpy(np.stack([p.token_points for p in prepared]))
    enc = processor.encode(2, " How many? Answer the question simply.", answer="two")
    fe = tiny_model.encode_frames(pv, pts)
    out = tiny_model(enc.input_ids[None], video_tokens=fe.tokens.flatten(0, 1),
                     labels=enc.labels[None])
    with torch.no_grad():  # every position's logits, as without labels
        full = tiny_model(enc.input_ids[None], video_tokens=fe.tokens.flatten(0, 1)).logits
    logp = torch.log_softmax(full[0, :-1].float(), -1)
    tgt = enc.labels[1:]
    keep = tgt != -100
    assert int(keep.sum()) >= 2  # the answer's tokens and the end of the turn
    ref = -logp[keep].gather(1, tgt[keep][:, None]).mean()
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    # with labels, logits exist at the labelled positions only (not (1, T, V))
    assert out.logits.shape == (int(keep.sum()), full.shape[-1])
    torch.testing.assert_close(out.logits.detach(), full[0, :-1][keep], atol=1e-5, rtol=1e-5)
    out.loss.backward()
    assert tiny_model.projector[0].weight.grad is not None
    assert tiny_model.vision_tower.embeddings.patch_embedding.weight.grad is not None


def test_position_encoding_changes_tokens(tiny_model, processor, frames):
    p = processor.prepare_frame(*frames[0])
    pts = torch.from_numpy(p.token_points)[None]
    with torch.no_grad():
        a = tiny_model.encode_frames(p.pixel_values[None], pts)
        b = tiny_model.encode_frames(p.pixel_values[None], pts + 10)
    g = tiny_model.config.grid.pooled_per_side
    diff = (a.tokens - b.tokens).view(g, g + 1, -1).abs().amax(-1)
    assert torch.all(diff[:, :g] > 0) and torch.all(diff[:, g] == 0)  # newlines carry no PE


def test_padded_frames_keep_the_whole_frame_and_mark_the_padding(tokenizer):
    """frame_fit=pad: a mark at the frame's left edge, which the paper's crop drops, is
    in the tower's input; padding is grey (0 normalised) and invalid."""
    from video3d_ros.geometry import FrameFit
    from video3d_ros.model.shapes import tiny
    from video3d_ros.model.tokenizer import token_ids_of

    rgb = np.full((60, 120, 3), 255, np.uint8)
    rgb[:, :10] = (255, 0, 0)  # a red strip on the left twelfth of a 2:1 frame
    xyz = np.dstack([*np.meshgrid(np.arange(120.0), np.arange(60.0)), np.ones((60, 120))])
    valid = np.ones((60, 120), bool)
    config = tiny(len(tokenizer), token_ids_of(tokenizer))
    crop = Video3DProcessor(tokenizer, config).prepare_frame(rgb, xyz, valid)
    config.video.frame_fit = FrameFit.PAD
    pad = Video3DProcessor(tokenizer, config).prepare_frame(rgb, xyz, valid)
    s = config.vision.image_size_px  # 112: the frame becomes 56 × 112, rows 28–83
    red = lambda px: (px[0] > 0.9) & (px[1] < -0.9)  # noqa: E731 — normalised red
    assert not red(crop.pixel_values).any()
    assert red(pad.pixel_values)[28:84, :8].all() and not red(pad.pixel_values)[:, 12:].any()
    assert torch.all(pad.pixel_values[:, :28] == 0) and torch.all(pad.pixel_values[:, 84:] == 0)
    assert pad.valid[28:84].all() and not pad.valid[:28].any() and not pad.valid[84:].any()
    # every source column is seen; the crop keeps the middle half
    assert pad.xyz_m[28:84, :, 0].min() == 0 and pad.xyz_m[28:84, :, 0].max() >= 118
    assert crop.xyz_m[..., 0].min() >= 29 and crop.xyz_m[..., 0].max() <= 90
    assert pad.pixel_values.shape == crop.pixel_values.shape == (3, s, s)
    assert np.isfinite(pad.token_points).all()


def test_cell_index_equals_pixelwise_inside_cells():
    """The bounds-pruned index gives exactly the pixel-by-pixel answer, for many boxes."""
    from video3d_ros.model.object_features import CellIndex

    rng = np.random.default_rng(3)
    f, c, k = 3, 6, 4
    s = c * k + 2  # crop larger than the used area, like 384 vs 378
    xyz = rng.uniform(-2, 2, (f, s, s, 3)).astype(np.float32)
    xyz[1] = np.cumsum(rng.uniform(0, 0.05, (s, s, 3)), axis=0).astype(np.float32)  # smooth surface
    valid = rng.random((f, s, s)) > 0.2
    valid[2, :k, :k] = False  # a cell with no valid pixel
    index = CellIndex(xyz, valid, k, c)
    for i in range(60):
        lo = rng.uniform(-2, 1.5, 3)
        box = Box3D.from_min_max(lo, lo + rng.uniform(0.05, 3.0, 3))
        for fraction in (0.0, 0.25, 0.5, 1.0):
            expected = inside_cells(xyz, valid, box, k, c, fraction)
            assert np.array_equal(index.inside(box, fraction), expected), (i, fraction)


def test_activation_checkpointing_gives_the_same_gradients(tiny_model, processor, frames):
    """The trainer's activation checkpointing (both towers) recomputes, it does not change
    the gradients."""
    from video3d_train.train import enable_activation_checkpointing

    prepared = [processor.prepare_frame(*f) for f in frames[:2]]
    pv = torch.stack([p.pixel_values for p in prepared])
    pts = torch.from_numpy(np.stack([p.token_points for p in prepared]))
    enc = processor.encode(2, " How many? Answer the question simply.", answer="two")
    tiny_model.train()

    def grads():
        tiny_model.zero_grad(set_to_none=True)
        fe = tiny_model.encode_frames(pv, pts)
        tiny_model(enc.input_ids[None], video_tokens=fe.tokens.flatten(0, 1),
                   labels=enc.labels[None]).loss.backward()
        return {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}

    plain = grads()
    enable_activation_checkpointing(tiny_model)
    assert tiny_model.language_model.is_activation_checkpointing
    assert tiny_model.vision_tower.is_activation_checkpointing
    again = grads()
    assert plain.keys() == again.keys() and len(plain) > 10
    for n in plain:
        torch.testing.assert_close(again[n], plain[n], atol=1e-6, rtol=1e-5, msg=n)
