"""Every shipped recipe loads, validates and round-trips through YAML."""

import pytest
import yaml

from video3d_train.recipes import (
    DistributedEngine,
    Precision,
    TrainRecipe,
    load_recipe,
    save_recipe,
    shipped_recipes,
)


def test_shipped_recipes_present():
    assert {"paper_7b", "tiny_generated"} <= set(shipped_recipes())


@pytest.mark.parametrize("name", shipped_recipes())
def test_every_shipped_recipe_round_trips(name, tmp_path):
    r = load_recipe(name)
    assert r.name == name
    save_recipe(r, tmp_path / "r.yaml")
    again = load_recipe(tmp_path / "r.yaml")
    assert again == r
    assert yaml.safe_load((tmp_path / "r.yaml").read_text()) == r.to_dict()


def test_a_recipe_with_a_base_writes_only_what_differs(tmp_path):
    """Sections merge key by key; a list or mapping value replaces the base's whole; the
    saved recipe is the resolved one, without ``base``."""
    base = load_recipe("tiny_generated")
    (tmp_path / "ablation.yaml").write_text(
        "base: tiny_generated\nname: ablation\noptim:\n  lr: 5.0e-04\n"
        "data:\n  train_files: [processed/scanqa_train_llava_style.json]\nmax_steps: 10\n")
    r = load_recipe(tmp_path / "ablation.yaml")
    assert (r.name, r.optim.lr, r.max_steps) == ("ablation", 5e-4, 10)
    assert r.optim.vision_lr == base.optim.vision_lr and r.optim.betas == base.optim.betas
    assert r.data.train_files == ["processed/scanqa_train_llava_style.json"]
    assert r.data.val_files == base.data.val_files and r.model == base.model
    save_recipe(r, tmp_path / "saved.yaml")
    assert "base" not in yaml.safe_load((tmp_path / "saved.yaml").read_text())
    assert load_recipe(tmp_path / "saved.yaml") == r
    # a base by path, relative to the file that names it, two levels deep
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deeper.yaml").write_text("base: ../ablation.yaml\nname: deeper\n"
                                                  "optim:\n  weight_decay: 0.1\n")
    d = load_recipe(tmp_path / "sub" / "deeper.yaml")
    assert (d.name, d.optim.lr, d.optim.weight_decay, d.max_steps) == ("deeper", 5e-4, 0.1, 10)


def test_recipe_bases_fail_with_the_file_and_the_reason(tmp_path):
    def write(name, text):
        (tmp_path / name).write_text(text)
        return tmp_path / name

    with pytest.raises(FileNotFoundError, match="base 'tiny_generatd' not found"):
        load_recipe(write("typo.yaml", "base: tiny_generatd\nname: typo\n"))
    with pytest.raises(ValueError, match="must set its own name"):
        load_recipe(write("anon.yaml", "base: tiny_generated\nmax_steps: 3\n"))
    write("a.yaml", "base: b.yaml\nname: a\n")
    with pytest.raises(ValueError, match="cycle: b.yaml -> a.yaml -> b.yaml"):
        load_recipe(write("b.yaml", "base: a.yaml\nname: b\n"))
    with pytest.raises(ValueError, match=r"unknown optim keys: \['lrr'\]") as err:
        load_recipe(write("bad.yaml", "base: tiny_generated\nname: bad\noptim:\n  lrr: 1\n"))
    assert "bad.yaml" in str(err.value)
    with pytest.raises(ValueError, match="base must be a recipe name or path"):
        load_recipe(write("list.yaml", "base: [tiny_generated]\nname: l\n"))


def test_paper_recipe_matches_reference_facts():
    r = load_recipe("paper_7b")
    assert (r.optim.lr, r.optim.vision_lr, r.optim.weight_decay) == (1e-5, 2e-6, 0.0)
    assert r.optim.warmup_ratio == 0.03 and r.optim.schedule.value == "cosine"
    assert r.micro_batch_size * r.grad_accum * 8 == 16  # global batch on 8 GPUs
    assert r.precision is Precision.BF16 and r.gradient_checkpointing
    assert r.distributed is DistributedEngine.DEEPSPEED_ZERO3
    assert r.data.num_frames == 32 and r.epochs == 1 and len(r.data.train_files) == 5


def test_bad_values_are_rejected_with_the_field_name():
    d = load_recipe("tiny_generated").to_dict()
    d["optim"]["lr"] = -1
    with pytest.raises(ValueError, match="optim.lr"):
        TrainRecipe.from_dict(d)
    d = load_recipe("tiny_generated").to_dict()
    d["data"]["sampling"] = "max-coverage-0.90"  # needs a selection file
    with pytest.raises(ValueError, match="selection_file"):
        TrainRecipe.from_dict(d)
    d = load_recipe("tiny_generated").to_dict()
    d["optim"]["lrr"] = 1
    with pytest.raises(ValueError, match="unknown optim keys"):
        TrainRecipe.from_dict(d)
    with pytest.raises(ValueError, match="not one of"):
        load_recipe("tiny_generated").with_overrides(["model.shape=huge"])


def test_overrides_parse_yaml_values():
    r = load_recipe("tiny_generated").with_overrides(["optim.lr=3e-4", "max_steps=7",
                                                      "distributed=fsdp"])
    assert r.optim.lr == 3e-4 and r.max_steps == 7 and r.distributed is DistributedEngine.FSDP
    with pytest.raises(ValueError, match="unknown key"):
        r.with_overrides(["optim.nope=1"])


def test_box_size_is_for_fresh_models_only():
    r = load_recipe("tiny_generated_ground")
    assert r.model.box_size.value == "sinusoidal" and r.model.random_init.value == "fan_in"
    with pytest.raises(ValueError, match="box_size applies to a fresh model"):
        load_recipe("tiny_generated").with_overrides(["model.box_size=sinusoidal"])


def _cpu_runtime_and_embedded_recipe():
    """A CPU fp32 runtime and ``tiny_generated`` starting from the embedded checkpoint."""
    import torch

    from video3d_ros.model.runtime import Runtime
    from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR

    runtime = Runtime(torch.device("cpu"), torch.float32, "sdpa")
    return runtime, load_recipe("tiny_generated").with_overrides(
        [f"model.checkpoint={EMBEDDED_MODEL_DIR}"])


def test_prompt_layout_override_applies_to_a_loaded_checkpoint(tmp_path):
    """``model.prompt_layout`` turns a video-first checkpoint question-first; unset, the
    checkpoint keeps its own; the exported model carries the layout in its config."""
    from video3d_ros.model.checkpoint import load_pretrained, save_pretrained
    from video3d_ros.model.config import PromptLayout
    from video3d_train.train import build_model_and_tokenizer

    runtime, base = _cpu_runtime_and_embedded_recipe()
    assert base.model.prompt_layout is None
    model, _ = build_model_and_tokenizer(base, [], runtime)
    assert model.config.video.prompt_layout is PromptLayout.VIDEO_FIRST
    qf = base.with_overrides(["model.prompt_layout=question_first"])
    assert qf.model.prompt_layout is PromptLayout.QUESTION_FIRST
    save_recipe(qf, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml").model.prompt_layout is PromptLayout.QUESTION_FIRST
    model, tok = build_model_and_tokenizer(qf, [], runtime)
    assert model.config.video.prompt_layout is PromptLayout.QUESTION_FIRST
    save_pretrained(model, tok, tmp_path / "m")
    loaded = load_pretrained(tmp_path / "m")
    assert loaded.model.config.video.prompt_layout is PromptLayout.QUESTION_FIRST
    assert loaded.processor.question_first
    with pytest.raises(ValueError, match="not a valid PromptLayout"):
        base.with_overrides(["model.prompt_layout=sideways"])


def test_pool_stride_override_changes_the_video_tokens_of_a_loaded_checkpoint(tmp_path):
    """``model.pool_stride=1`` feeds every patch of a stride-2 checkpoint to the decoder:
    the processor's grid and the model's video tokens follow, and the export keeps it."""
    import numpy as np
    import torch

    from video3d_ros.model.checkpoint import load_pretrained, save_pretrained
    from video3d_ros.model.processor import Video3DProcessor
    from video3d_train.train import build_model_and_tokenizer

    runtime, base = _cpu_runtime_and_embedded_recipe()
    assert base.model.pool_stride is None
    model, _ = build_model_and_tokenizer(base, [], runtime)
    assert model.config.video.pool_stride == 2
    s1 = base.with_overrides(["model.pool_stride=1"])
    save_recipe(s1, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml").model.pool_stride == 1
    model, tok = build_model_and_tokenizer(s1, [], runtime)
    p = model.config.grid.patches_per_side
    assert model.config.grid.pooled_per_side == p
    proc = Video3DProcessor(tok, model.config)
    size = model.config.vision.image_size_px
    rgb = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    xyz = np.random.default_rng(1).uniform(-2, 2, (size, size, 3)).astype(np.float32)
    fr = proc.prepare_frame(rgb, xyz, np.ones((size, size), bool))
    with torch.no_grad():
        enc = model.encode_frames(fr.pixel_values[None], torch.from_numpy(fr.token_points[None]))
    assert enc.tokens.shape[1] == model.config.tokens_per_frame == p * (p + 1)
    save_pretrained(model, tok, tmp_path / "m")
    assert load_pretrained(tmp_path / "m").model.config.video.pool_stride == 1
    with pytest.raises(ValueError, match="pool_stride must be a positive integer"):
        base.with_overrides(["model.pool_stride=0"])


def test_frame_fit_override_pads_the_frames_of_a_loaded_checkpoint(tmp_path):
    """``model.frame_fit=pad`` trains a centre-crop checkpoint on whole frames; the export
    carries it, and a checkpoint without the key (written before it existed) crops."""
    import json

    from video3d_ros.geometry import FrameFit
    from video3d_ros.model.checkpoint import load_pretrained, save_pretrained
    from video3d_train.train import build_model_and_tokenizer

    runtime, base = _cpu_runtime_and_embedded_recipe()
    assert base.model.frame_fit is None
    model, _ = build_model_and_tokenizer(base, [], runtime)
    assert model.config.video.frame_fit is FrameFit.CENTRE_CROP
    padded = base.with_overrides(["model.frame_fit=pad"])
    save_recipe(padded, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml").model.frame_fit is FrameFit.PAD
    model, tok = build_model_and_tokenizer(padded, [], runtime)
    save_pretrained(model, tok, tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "config.json").read_text())
    assert stored["config"]["video"]["frame_fit"] == "pad"
    assert load_pretrained(tmp_path / "m").model.config.video.frame_fit is FrameFit.PAD
    del stored["config"]["video"]["frame_fit"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(stored))
    assert load_pretrained(tmp_path / "m").model.config.video.frame_fit is FrameFit.CENTRE_CROP
    with pytest.raises(ValueError, match="not a valid FrameFit"):
        base.with_overrides(["model.frame_fit=stretch"])


def test_sharding_engine_on_cpu_says_it_runs_data_parallel(caplog):
    """accelerate applies FSDP/ZeRO-3 to CUDA processes only: on CPU the run must say so."""
    import logging

    import torch

    from video3d_train.train import make_accelerator

    if torch.cuda.is_available():
        pytest.skip("a GPU shards for real")
    with caplog.at_level(logging.WARNING, logger="video3d_train.train"):
        make_accelerator(load_recipe("tiny_generated").with_overrides(["distributed=fsdp"]))
    assert "distributed=fsdp shards only on GPUs" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="video3d_train.train"):
        make_accelerator(load_recipe("tiny_generated"))
    assert "shards only on GPUs" not in caplog.text


def test_scene_cache_options_are_validated():
    r = load_recipe("tiny_generated")
    assert r.data.max_cached_scenes is None and load_recipe("paper_7b").data.max_cached_scenes == 0
    assert r.with_overrides(["data.max_cached_scenes=8"]).data.max_cached_scenes == 8
    with pytest.raises(ValueError, match="max_cached_scenes must be ≥ 0"):
        r.with_overrides(["data.max_cached_scenes=-1"])
    with pytest.raises(ValueError, match="on-disk scene cache is not implemented"):
        r.with_overrides(["data.cache_dir=/tmp/scenes"])


def test_reinit_redraws_only_the_named_parts_of_a_checkpoint(tmp_path):
    """``model.reinit: [text_decoder]`` gives the checkpoint's vision tower, projector and
    token embeddings with a freshly drawn decoder (blocks, final norm, lm_head)."""
    import torch

    from video3d_ros.model.checkpoint import load_pretrained
    from video3d_ros.model.config import ModelPart
    from video3d_ros.model.runtime import Runtime
    from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
    from video3d_train.train import build_model_and_tokenizer

    runtime = Runtime(torch.device("cpu"), torch.float32, "sdpa")
    recipe = load_recipe("tiny_generated").with_overrides(
        [f"model.checkpoint={EMBEDDED_MODEL_DIR}", "model.reinit=[text_decoder]",
         "model.random_init=fan_in"])
    assert recipe.model.reinit == [ModelPart.TEXT_DECODER]
    save_recipe(recipe, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml").model.reinit == [ModelPart.TEXT_DECODER]
    model, _ = build_model_and_tokenizer(recipe, [], runtime)
    with pytest.raises(ValueError, match="vocab_size=500 sizes a fresh model"):
        build_model_and_tokenizer(recipe, [], runtime, vocab_size=500)
    original = load_pretrained(EMBEDDED_MODEL_DIR, runtime).model.state_dict()
    redrawn = {k for k, v in model.state_dict().items() if not torch.equal(v, original[k])}
    assert "language_model.lm_head.weight" in redrawn
    assert "language_model.model.layers.0.self_attn.q_proj.weight" in redrawn
    assert all(k.startswith(ModelPart.TEXT_DECODER.prefixes) for k in redrawn), redrawn
    assert not any(k.startswith(("vision_tower.", "projector.", "ground_head.",
                                 "language_model.model.embed_tokens.")) for k in redrawn)
    # the fresh decoder's norms start at one, as a fresh model's do
    assert torch.all(model.language_model.model.norm.weight == 1.0)
    with pytest.raises(ValueError, match="model.reinit re-draws parts of a loaded checkpoint"):
        load_recipe("tiny_generated_ground").with_overrides(["model.reinit=[projector]"])
    with pytest.raises(ValueError, match="not a valid ModelPart"):
        recipe.with_overrides(["model.reinit=[decoder]"])


def test_train_repeats_are_validated():
    r = load_recipe("tiny_generated")
    qa = "processed/scanqa_train_llava_style.json"
    assert r.with_overrides([f"data.train_repeats={{{qa}: 3}}"]).data.train_repeats == {qa: 3}
    with pytest.raises(ValueError, match="not one of data.train_files"):
        r.with_overrides(["data.train_repeats={processed/other.json: 2}"])
    for bad in ("0", "1.5", "true"):
        with pytest.raises(ValueError, match=r"train_repeats\[.*integer ≥ 1"):
            r.with_overrides([f"data.train_repeats={{{qa}: {bad}}}"])
    with pytest.raises(ValueError, match="must be a mapping"):
        r.with_overrides([f"data.train_repeats=[{qa}]"])


def test_train_repeats_oversample_the_mix_but_not_the_tokenizer(generated_root, tmp_path, caplog):
    """A repeated file's samples enter the training mix that many times, in place; the
    tokenizer of a fresh model still learns each text once."""
    import logging

    from video3d_ros.model.checkpoint import load_tokenizer
    from video3d_ros.model.tokenizer import build_tokenizer
    from video3d_train.train import read_samples, tokenizer_corpus, train

    base = load_recipe("tiny_generated_ground").with_overrides([
        f"data.root={generated_root}", "data.tokenizer_files=[]", "data.num_frames=2",
        "max_steps=1", "micro_batch_size=2", "save_every_steps=1", "model.tokenizer_vocab_size=300"])
    first, second = base.data.train_files[:2]
    r = base.with_overrides([f"data.train_repeats={{{second}: 3}}"])
    a = read_samples(r, [first], False)
    b = read_samples(r, [second], False)
    mixed = read_samples(r, [first, second], False, r.data.train_repeats)
    assert len(b) > 0 and [s.sample_id for s in mixed] == [s.sample_id for s in a + b + b + b]

    with caplog.at_level(logging.INFO, logger="video3d_train.train"):
        run = train(r, tmp_path / "run", progress_bar=False)
    assert f"{second}: {len(b)} samples, repeated 3 times" in caplog.text
    once = build_tokenizer(tokenizer_corpus(read_samples(r, r.data.train_files, False)), 300)
    assert load_tokenizer(run / "tokenizer").get_vocab() == once.get_vocab()


def test_fresh_config_takes_a_larger_vocabulary_but_not_a_smaller_one():
    """The 7B benchmark builds the embedding and LM head at Qwen2's size around a small
    tokenizer; fewer rows than tokens would leave token ids without an embedding."""
    from video3d_ros.model.tokenizer import build_tokenizer
    from video3d_train.train import fresh_config

    tok = build_tokenizer(["the red chair next to the table"] * 20, vocab_size=300)
    recipe = load_recipe("paper_7b")
    assert fresh_config(recipe, tok).text.vocab_size == len(tok)
    assert fresh_config(recipe, tok, vocab_size=152064).text.vocab_size == 152064
    with pytest.raises(ValueError, match=f"smaller than the tokenizer \\({len(tok)} tokens\\)"):
        fresh_config(recipe, tok, vocab_size=len(tok) - 1)
