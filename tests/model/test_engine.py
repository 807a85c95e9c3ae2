"""Engine: KV-prefix reuse gives the same numbers as the uncached path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from video3d_ros.geometry import Box3D
from video3d_ros.model.config import PromptLayout, Video3DConfig
from video3d_ros.model.engine import Video3DEngine
from video3d_ros.model.errors import ModelError
from video3d_ros.model.modeling import Video3DModel
from video3d_ros.model.processor import (
    Video3DProcessor,
    caption_prompt,
    grounding_prompt,
    qa_prompt,
)


QUESTIONS = ["How many chairs are there?", "What is left of the bed?", "Where is the lamp?"]


def _fill(engine, frames):
    for i, (rgb, xyz, valid) in enumerate(frames):
        engine.add_keyframe(i, rgb, xyz, valid, stamp_s=float(i))


def test_cached_and_uncached_logits_match(engine, frames):
    _fill(engine, frames)
    for q in QUESTIONS:
        cached = engine.next_token_logits(qa_prompt(q), use_cache=True)
        uncached = engine.next_token_logits(qa_prompt(q), use_cache=False)
        assert torch.allclose(cached, uncached, atol=1e-4, rtol=0), (cached - uncached).abs().max()
    # the prefix is reused, not recomputed, and stays at its own length
    (prefix,) = engine._prefixes.values()
    assert prefix.cache.get_seq_length() == prefix.length


def test_question_first_engine_runs_the_training_layout(tiny_config, tokenizer, engine, frames):
    """Question-first: the engine's logits equal one forward pass over the ids the
    training data gets (processor.encode), nothing is cached, and the video tokens now
    see the question, so the same weights give other logits than video-first."""
    cfg = Video3DConfig.from_dict(tiny_config.to_dict())
    cfg.video.prompt_layout = PromptLayout.QUESTION_FIRST
    torch.manual_seed(0)  # the same draw as the tiny_model fixture: equal weights
    model = Video3DModel(cfg).eval()
    qf = Video3DEngine(model, Video3DProcessor(tokenizer, cfg), max_new_tokens=6)
    _fill(qf, frames[:3])
    _fill(engine, frames[:3])
    for q in QUESTIONS[:2]:
        text = qa_prompt(q)
        logits = qf.next_token_logits(text)  # use_cache=True is ignored: never cached
        with torch.inference_mode():
            full = model(qf.processor.encode(3, text).input_ids[None],
                         video_tokens=qf._video_tokens(qf._ordered())).logits[0, -1]
        assert torch.allclose(logits, full, atol=1e-4, rtol=0), (logits - full).abs().max()
        assert not torch.allclose(logits, engine.next_token_logits(text), atol=1e-3)
    assert not qf._prefixes
    qf.prepare()  # its prefix holds the question: nothing to pre-fill ahead of one
    assert not qf._prefixes
    assert qf.ask(QUESTIONS[2]).token_ids == qf.ask(QUESTIONS[2], use_cache=False).token_ids
    box = Box3D(center_m=np.array([1.0, 1.0, 1.0]), size_m=np.array([0.5, 0.5, 0.5]))
    assert isinstance(qf.caption(box).text, str)
    assert qf.ground("the chair", [box, box]).scores.shape == (2,)


def test_prepare_fills_the_caches_a_query_then_uses(engine, frames):
    """prepare(): the visual prefix and the proposals' pooled features are computed ahead;
    the answers after it equal those of an engine that did not prepare."""
    boxes = [Box3D(np.array([0.5, 0.5, 1.3]), np.array([0.6, 0.6, 1.0])),
             Box3D(np.array([1.5, 1.5, 1.3]), np.array([0.8, 0.8, 1.0]))]
    _fill(engine, frames[:3])
    expected = (engine.next_token_logits(qa_prompt(QUESTIONS[0])),
                engine.ground("the lamp", boxes).scores)
    engine._prefixes, engine._objects = {}, None  # as after a keyframe change
    engine.prepare(boxes)
    (prefix,), objects = engine._prefixes.values(), engine._objects
    assert objects is not None
    logits = engine.next_token_logits(qa_prompt(QUESTIONS[0]))
    scores = engine.ground("the lamp", boxes).scores
    assert list(engine._prefixes.values()) == [prefix] and engine._objects is objects  # used, not rebuilt
    assert torch.allclose(logits, expected[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(scores, expected[1], atol=1e-6)


def test_cached_logits_follow_keyframe_changes(engine, frames):
    _fill(engine, frames[:4])
    before = engine.next_token_logits(qa_prompt(QUESTIONS[0]))
    engine.add_keyframe(10, *frames[5], stamp_s=1.5)  # inserted between keyframes 1 and 2
    engine.remove_keyframe(0)
    assert engine.keyframe_ids == (1, 10, 2, 3)
    cached = engine.next_token_logits(qa_prompt(QUESTIONS[0]))
    uncached = engine.next_token_logits(qa_prompt(QUESTIONS[0]), use_cache=False)
    assert torch.allclose(cached, uncached, atol=1e-4, rtol=0)
    assert not torch.allclose(before, cached, atol=1e-3)


def test_generation_same_with_and_without_cache(engine, frames):
    _fill(engine, frames[:3])
    a = engine.ask(QUESTIONS[1], max_new_tokens=6, use_cache=True)
    b = engine.ask(QUESTIONS[1], max_new_tokens=6, use_cache=False)
    assert a.token_ids == b.token_ids
    assert len(a.token_ids) <= 6
    assert engine.processor.token_ids.video not in a.token_ids
    again = engine.ask(QUESTIONS[1], max_new_tokens=6)
    assert again.token_ids == a.token_ids  # the cache was cropped back after the first query


def test_generation_stops_at_eos(engine, frames):
    _fill(engine, frames[:2])
    eos = engine.processor.token_ids.eos[0]
    head = engine.model.language_model.lm_head
    bias = torch.zeros(head.out_features)
    bias[eos] = 1e4  # EOS wins at the first step whatever the hidden state
    head.bias = torch.nn.Parameter(bias)
    assert engine.ask("Is there a bed?").token_ids == []
    bias[eos] = 0.0
    other = engine.ask("Is there a bed?", max_new_tokens=3)
    assert len(other.token_ids) == 3 or eos not in other.token_ids


def test_ground_scores_and_multi_object(engine, frames):
    _fill(engine, frames[:4])
    boxes = [Box3D(np.array([0.5, 0.5, 1.3]), np.array([0.6, 0.6, 1.0])),
             Box3D(np.array([1.5, 1.5, 1.3]), np.array([0.4, 0.4, 1.0])),
             Box3D(np.array([50.0, 50.0, 50.0]), np.array([0.1, 0.1, 0.1]))]
    res = engine.ground("the red chair near the wall", boxes)
    assert res.scores.shape == (3,)
    assert np.all(np.abs(res.scores) <= 1 + 1e-5)
    assert res.best_index == int(np.argmax(res.scores))
    assert res.best_box is boxes[res.best_index]
    uncached = engine.ground("the red chair near the wall", boxes, use_cache=False)
    np.testing.assert_allclose(res.scores, uncached.scores, atol=1e-4)
    # multi-object decoding agrees with its definition on these scores
    allscores = np.append(res.scores, res.no_target_score)
    if np.argmax(allscores) == 3:
        assert res.selected == []
    else:
        p = np.exp(res.scores / 0.07) / np.exp(res.scores / 0.07).sum()
        order = np.argsort(-p)
        k = int(np.searchsorted(np.cumsum(p[order]), 0.4)) + 1
        assert res.selected == order[:k].tolist()


def test_ground_matches_direct_model_computation(engine, frames, processor):
    _fill(engine, frames[:2])
    box = Box3D(np.array([0.5, 0.5, 1.3]), np.array([0.6, 0.6, 1.0]))
    res = engine.ground("the lamp", [box])
    # independent path: whole prompt through the model, features averaged by hand
    model, cfg = engine.model, engine.config
    prepared = [processor.prepare_frame(*f) for f in frames[:2]]
    pv = torch.stack([p.pixel_values for p in prepared])
    pts = torch.from_numpy(np.stack([p.token_points for p in prepared]))
    with torch.no_grad():
        enc = model.encode_frames(pv, pts)
        ids = processor.prefix_ids(2) + processor.suffix_ids(grounding_prompt("the lamp"))[0]
        ids = torch.tensor([ids + [processor.token_ids.ground]])
        hidden = model(ids, video_tokens=enc.tokens.flatten(0, 1)).last_hidden_state[0, -1]
        p = cfg.grid.patches_per_side
        ps = cfg.grid.patch_size_px
        feats = []
        for fr, f in zip(prepared, enc.patch_features):
            xyz = fr.xyz_m[: p * ps, : p * ps]
            inside = np.all((xyz >= box.min_m) & (xyz <= box.max_m), -1) & fr.valid[: p * ps, : p * ps]
            frac = inside.reshape(p, ps, p, ps).sum((1, 3))
            sel = torch.from_numpy(frac >= int(ps * ps * 0.5))
            feats.append(f[sel])
        feats = torch.cat(feats)
        assert feats.shape[0] > 0
        obj = feats.mean(0)
        disc = np.round((np.clip(box.center_m, (-15, -15, -5), (15, 15, 5)) + (15, 15, 5)) / 0.1)
        obj = obj + model.encode_points(torch.tensor(disc, dtype=torch.float32)[None, None])[0]
        scores = model.ground_scores(hidden, obj[None])
    np.testing.assert_allclose(res.scores, scores[:1].numpy(), atol=1e-4)
    assert res.no_target_score == pytest.approx(float(scores[1]), abs=1e-4)


def test_caption_uses_the_box_centre(engine, frames):
    _fill(engine, frames[:2])
    a = Box3D(np.array([0.5, 0.5, 1.3]), np.array([0.5, 0.5, 0.5]))
    b = Box3D(np.array([3.0, -2.0, 0.2]), np.array([0.5, 0.5, 0.5]))
    la = engine.next_token_logits(caption_prompt(), coord_box=a)
    lb = engine.next_token_logits(caption_prompt(), coord_box=b)
    assert not torch.allclose(la, lb, atol=1e-4)
    ua = engine.next_token_logits(caption_prompt(), coord_box=a, use_cache=False)
    assert torch.allclose(la, ua, atol=1e-4, rtol=0)
    text = engine.caption(a, max_new_tokens=4)
    assert isinstance(text.text, str) and len(text.token_ids) <= 4


def test_model_error_leaves_engine_usable(engine, frames, monkeypatch):
    _fill(engine, frames[:2])
    expected = engine.next_token_logits(qa_prompt(QUESTIONS[0]))
    lm = engine.model.language_model.model
    original = lm.forward
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(lm, "forward", failing)
    with pytest.raises(ModelError, match="out of memory"):
        engine.ask(QUESTIONS[0])
    assert calls["n"] == 1
    monkeypatch.setattr(lm, "forward", original)
    after = engine.next_token_logits(qa_prompt(QUESTIONS[0]))
    assert torch.allclose(after, expected, atol=1e-5)


@dataclass(frozen=True)
class _KF:
    frame_id: int
    stamp_s: float
    rgb: np.ndarray
    xyz_m: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class _Snapshot:
    keyframes: tuple
    version: int


def test_sync_adds_and_removes_the_difference(engine, frame_factory):
    make_frame = frame_factory
    kfs = [_KF(i, float(i), *make_frame(i)) for i in range(4)]
    r = engine.sync(_Snapshot(tuple(kfs[:3]), 1))
    assert r.added == (0, 1, 2) and r.removed == ()
    r = engine.sync(_Snapshot((kfs[1], kfs[2], kfs[3]), 2))
    assert r.added == (3,) and r.removed == (0,)
    assert engine.keyframe_ids == (1, 2, 3)


def test_sync_encodes_another_recordings_frames_that_share_ids(engine, tiny_model, processor,
                                                              frame_factory):
    """Two recordings both number their frames from 0: syncing the second must not keep the
    first one's encodings for ids that happen to be cached (the engine's state then equals
    a fresh engine's on the second), while a snapshot with the same keyframe objects
    encodes nothing."""
    first = _Snapshot(tuple(_KF(i, float(i), *frame_factory(i)) for i in range(3)), 1)
    second = _Snapshot(tuple(_KF(i, float(i), *frame_factory(10 + i)) for i in range(3)), 1)
    assert engine.sync(first).added == (0, 1, 2)
    assert engine.sync(_Snapshot(first.keyframes, 2)).added == ()  # same objects: cached
    assert engine.sync(second).added == (0, 1, 2)
    fresh = Video3DEngine(tiny_model, processor, max_new_tokens=8)
    fresh.sync(second)
    prompt = qa_prompt(QUESTIONS[0])
    torch.testing.assert_close(engine.next_token_logits(prompt), fresh.next_token_logits(prompt),
                               atol=1e-5, rtol=0)


def test_the_keyframe_cache_does_not_keep_evicted_images_alive(engine, frame_factory):
    """The engine tells a cached keyframe by its arrays' identity, through weak references:
    once a keyframe leaves every snapshot and its owner drops it, its images are freed."""
    import gc
    import weakref

    kfs = [_KF(i, float(i), *frame_factory(i)) for i in range(2)]
    engine.sync(_Snapshot(tuple(kfs), 1))
    rgb = weakref.ref(kfs[0].rgb)
    del kfs[0]
    gc.collect()
    assert rgb() is None
    assert engine.sync(_Snapshot(tuple(kfs), 2)).added == ()  # the survivor is still cached


def test_a_threshold_outside_the_models_units_is_refused(engine, frames):
    """A cumulative probability must be in (0, 1]: an override of 0 is named, not run."""
    _fill(engine, frames[:2])
    box = [Box3D(np.array([0.5, 0.5, 1.3]), np.array([0.6, 0.6, 1.0]))]
    assert engine.config.grounding.multi_object_selection.value == "cumulative_probability"
    with pytest.raises(ValueError, match="not a cumulative probability"):
        engine.ground("the chair", box, threshold=0.0)
    with pytest.raises(ValueError, match="not a cumulative probability"):
        Video3DEngine(engine.model, engine.processor, multi_object_threshold=1.5)


def test_sync_with_rolling_buffer_snapshot(engine, frame_factory):
    make_frame = frame_factory
    from video3d_ros.keyframes.buffer import BufferSnapshot, Frame

    frames = tuple(Frame(i, float(i), *make_frame(i), np.eye(4)) for i in range(3))
    r = engine.sync(BufferSnapshot(keyframes=frames, covered_voxels=0, version=3))
    assert r.added == (0, 1, 2)
    assert engine.keyframe_ids == (0, 1, 2)


def test_rgb_and_depth_of_different_size(engine, frame_factory):
    make_frame = frame_factory
    rgb, xyz, valid = make_frame(0, 240, 320)
    _, xyz_small, valid_small = make_frame(0, 120, 160)
    engine.add_keyframe(0, rgb, xyz_small, valid_small)
    with pytest.raises(ValueError, match="aspect ratio"):
        engine.add_keyframe(1, rgb[:, :200], xyz_small, valid_small)


def test_object_feature_cache_follows_keyframe_and_proposal_changes(engine, frames, processor):
    boxes = [Box3D(np.array([0.5, 0.5, 1.3]), np.array([0.6, 0.6, 1.0])),
             Box3D(np.array([1.5, 1.5, 1.3]), np.array([0.8, 0.8, 1.0]))]
    _fill(engine, frames[:3])
    first = engine.ground("the lamp", boxes).scores
    np.testing.assert_array_equal(engine.ground("the lamp", boxes).scores, first)  # cached features
    engine.remove_keyframe(engine.keyframe_ids[0])
    fresh = Video3DEngine(engine.model, processor, max_new_tokens=8)
    _fill(fresh, frames[1:3])
    np.testing.assert_allclose(engine.ground("the lamp", boxes).scores,
                               fresh.ground("the lamp", boxes).scores, atol=1e-5)
    np.testing.assert_allclose(engine.ground("the lamp", boxes[::-1]).scores,
                               fresh.ground("the lamp", boxes).scores[::-1], atol=1e-5)


def test_caches_follow_frames_that_reuse_keyframe_ids(engine, frames, processor):
    """A caller may number another scene's frames 0…F−1 again (the evaluator does) or
    replace a keyframe under its id: every cache must follow the frames, not the ids."""
    boxes = [Box3D(np.array([0.5, 0.5, 1.3]), np.array([0.6, 0.6, 1.0]))]
    _fill(engine, frames[:3])
    first = engine.next_token_logits(qa_prompt(QUESTIONS[0]))
    first_scores = engine.ground("the lamp", boxes).scores
    for k in engine.keyframe_ids:
        engine.remove_keyframe(k)
    _fill(engine, frames[3:6])  # ids 0, 1, 2 again, other frames
    fresh = Video3DEngine(engine.model, processor, max_new_tokens=8)
    _fill(fresh, frames[3:6])
    want = fresh.next_token_logits(qa_prompt(QUESTIONS[0]), use_cache=False)
    got = engine.next_token_logits(qa_prompt(QUESTIONS[0]))
    assert not torch.allclose(first, want, atol=1e-3)  # the two frame sets do differ
    assert torch.allclose(got, want, atol=1e-4, rtol=0), (got - want).abs().max()
    scores = engine.ground("the lamp", boxes).scores
    assert not np.allclose(scores, first_scores, atol=1e-4)
    np.testing.assert_allclose(scores, fresh.ground("the lamp", boxes).scores, atol=1e-5)
    # replacing one keyframe under its id
    engine.add_keyframe(1, *frames[0], stamp_s=1.0)
    fresh.add_keyframe(1, *frames[0], stamp_s=1.0)
    assert torch.allclose(engine.next_token_logits(qa_prompt(QUESTIONS[0])),
                          fresh.next_token_logits(qa_prompt(QUESTIONS[0]), use_cache=False),
                          atol=1e-4, rtol=0)


def test_decoder_calls_run_without_cudnn_attention(engine, frames):
    """Every decoder call of the engine (question, each decoded token, grounding) runs with
    cuDNN's SDPA kernel excluded: it plans per new shape, 56 ms a token of the 7B shape on an
    H200 (runtime.ENGINE_SDPA_BACKENDS). ``sdpa_backends=None`` leaves torch's choice."""
    _fill(engine, frames)
    seen: list[bool] = []
    attn = engine.model.language_model.model.layers[0].self_attn
    hook = attn.register_forward_pre_hook(
        lambda *_: seen.append(torch.backends.cuda.cudnn_sdp_enabled()))
    try:
        engine.ask(QUESTIONS[0])
        calls = len(seen)
        engine.ground("the lamp", [Box3D(np.array([0.0, 0.0, 2.0]), np.array([0.5, 0.5, 0.5]))])
        assert calls >= 2 and len(seen) > calls  # the question, decoded tokens, grounding
        assert not any(seen)
        assert torch.backends.cuda.cudnn_sdp_enabled()  # the process's setting is left alone
        engine.sdpa_backends = None
        seen.clear()
        engine.ask(QUESTIONS[0])
        assert seen and all(seen)
    finally:
        hook.remove()


def _engine_of(engine, frames, keep):
    """Another engine on the same model holding only the keyframes ``keep`` (same stamps)."""
    other = Video3DEngine(engine.model, engine.processor, max_new_tokens=engine.max_new_tokens)
    for i in keep:
        other.add_keyframe(i, *frames[i], stamp_s=float(i))
    return other


def test_groups_average_the_log_probabilities_of_interleaved_keyframe_groups(engine, frames):
    """groups=2 over keyframes 0-3: the mean of the log-probabilities of one engine reading
    keyframes 0, 2 and one reading 1, 3 — cached or not; generation follows those scores."""
    _fill(engine, frames[:4])
    text = qa_prompt(QUESTIONS[0])
    parts = [_engine_of(engine, frames, keep) for keep in ((0, 2), (1, 3))]
    expected = torch.stack([torch.log_softmax(p.next_token_logits(text), -1) for p in parts]).mean(0)
    for use_cache in (True, False):
        got = engine.next_token_logits(text, use_cache=use_cache, groups=2)
        assert torch.allclose(got, expected, atol=1e-4, rtol=0), (got - expected).abs().max()
    assert sorted(len(k) for k in engine._prefixes) == [2, 2]  # one cached prefix per group
    assert not torch.allclose(engine.next_token_logits(text, groups=1).log_softmax(-1), expected, atol=1e-3)
    assert [len(k) for k in engine._prefixes] == [4]  # one grouping's prefixes are kept
    a = engine.ask(QUESTIONS[1], max_new_tokens=6, groups=2)
    b = engine.ask(QUESTIONS[1], max_new_tokens=6, groups=2, use_cache=False)
    assert a.token_ids == b.token_ids and len(a.token_ids) <= 6
    # greedy over the combined scores, token by token
    ids, want = engine.processor.token_ids, []
    for _ in range(len(a.token_ids)):
        prompt = qa_prompt(QUESTIONS[1])
        scores = torch.stack([torch.log_softmax(_continued(p, prompt, want), -1) for p in parts]).mean(0)
        scores[ids.video] = float("-inf")
        want.append(int(torch.argmax(scores)))
    assert a.token_ids == want


def _continued(engine, prompt, tokens):
    """Next-token logits after ``prompt`` and the answer tokens so far (uncached path)."""
    with torch.inference_mode(), engine._session(False, prompt, engine._ordered()) as run:
        out = run(engine._suffix(prompt), None)
        for t in tokens:
            out = run([t], None)
        return out.logits[0, -1].float()


def test_grounding_in_groups_averages_the_groups_scores(engine, frames):
    """The groups' scores, each from its own ``<ground>`` state against object features
    pooled from all keyframes, are averaged; prepare() fills one prefix per group."""
    _fill(engine, frames[:4])
    boxes = [Box3D(np.array([0.5, 0.5, 1.3]), np.array([0.6, 0.6, 1.0])),
             Box3D(np.array([1.5, 1.5, 1.3]), np.array([0.8, 0.8, 1.0]))]
    engine.prepare(boxes, groups=2)
    prefixes = dict(engine._prefixes)
    assert len(prefixes) == 2 and sorted(len(k) for k in prefixes) == [2, 2]
    res = engine.ground("the lamp", boxes, groups=2)
    assert engine._prefixes == prefixes  # the prepared prefixes were used
    objects = engine._object_features(boxes)  # from all four keyframes
    text = grounding_prompt("the lamp")
    expected = []
    for keep in ((0, 2), (1, 3)):
        part = _engine_of(engine, frames, keep)
        with torch.inference_mode(), part._session(True, text, part._ordered()) as run:
            hidden = run(part._suffix(text) + [engine.processor.token_ids.ground], None).last_hidden_state[0, -1]
            expected.append(engine.model.ground_scores(hidden, objects))
    expected = torch.stack(expected).mean(0).numpy()
    np.testing.assert_allclose(res.scores, expected[:2], atol=1e-5)
    assert res.no_target_score == pytest.approx(float(expected[2]), abs=1e-5)
    assert not np.allclose(res.scores, engine.ground("the lamp", boxes).scores, atol=1e-4)


def test_groups_follow_the_keyframes(engine, frames):
    """More groups than keyframes reads each keyframe alone; a removed keyframe's prefixes
    are dropped; groups < 1 is refused."""
    _fill(engine, frames[:3])
    text = qa_prompt(QUESTIONS[0])
    np.testing.assert_allclose(engine.next_token_logits(text, groups=5),
                               engine.next_token_logits(text, groups=3), atol=1e-6)
    assert len(engine._prefixes) == 3
    engine.remove_keyframe(1)
    engine.next_token_logits(text, groups=2)
    live = {f.order[1] for f in engine._frames.values()}
    assert len(engine._prefixes) == 2 and all(set(k) <= live for k in engine._prefixes)
    with pytest.raises(ValueError, match="groups must be >= 1, got 0"):
        engine.ask(QUESTIONS[0], groups=0)
