"""Dense vision-tower pretraining on generated rooms (``video3d_train.vision_pretrain``)."""

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from video3d_ros.model.config import Video3DConfig
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
from video3d_train.vision_pretrain import IGNORE, NO_OBJECT, main, patch_labels, pretrain


def test_patch_labels_take_the_object_covering_most_of_each_patch():
    # 4×4 px "image", 2-px patches, model size 4 (no resize): four patches
    mask = np.array([[3, 3, 0, 0],
                     [3, 0, 0, 0],
                     [5, 5, 5, 3],
                     [5, 5, 3, 3]], np.uint16)
    lookup = {3: (2, 7), 5: (4, 1)}  # instance → (category, colour)
    cat, col = patch_labels(mask, lookup, size_px=4, patch_px=2)
    # top-left: 3 of 4 px instance 3; top-right: nothing; bottom-left: all 5;
    # bottom-right: 5 ×1 and 3 ×3 → 3
    assert cat.tolist() == [[2, NO_OBJECT], [4, 2]]
    assert col.tolist() == [[7, IGNORE], [1, 7]]
    # an object must cover min_cover of the patch: 3 of 4 px is below 0.8
    cat, col = patch_labels(mask, lookup, size_px=4, patch_px=2, min_cover=0.8)
    assert cat.tolist() == [[NO_OBJECT, NO_OBJECT], [4, NO_OBJECT]]
    # padded (frame_fit=pad): a 2 × 4 mask becomes the middle rows of the 4 × 4 input;
    # the padding rows are no object, not the edge row repeated
    from video3d_ros.geometry import FrameFit
    cat, _ = patch_labels(mask[2:], lookup, size_px=4, patch_px=1, fit=FrameFit.PAD)
    assert cat.tolist() == [[NO_OBJECT] * 4, [4, 4, 4, 2], [4, 4, 2, 2], [NO_OBJECT] * 4]
    # an instance the scene's objects do not list is "no object"
    cat, _ = patch_labels(mask, {5: (4, 1)}, size_px=4, patch_px=2)
    assert cat.tolist() == [[NO_OBJECT, NO_OBJECT], [4, NO_OBJECT]]


def test_pretraining_changes_only_the_tower_and_learns_categories(generated_root, tmp_path):
    out = tmp_path / "vp"
    res = pretrain(EMBEDDED_MODEL_DIR, generated_root, out, steps=150, lr=2e-3, batch=16,
                   probe_steps=150, progress=False)
    # the tower fits its training frames (three small rooms are too few to measure
    # transfer; BENCHMARKS.md has the validation figures of the real run)
    after = res["training_frames"]["retrained_tower"]
    assert after["object_patches"] > 50
    assert after["category"] >= 90.0 and after["colour"] >= 90.0, res
    assert 0.0 <= res["retrained_tower"]["category"] <= 100.0
    old = load_file(str(EMBEDDED_MODEL_DIR / "model.safetensors"))
    new = load_file(str(out / "model.safetensors"))
    assert old.keys() == new.keys()
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert changed and all(k.startswith("vision_tower.") for k in changed), sorted(changed)[:5]
    # the same model config (compared parsed: a file written before a field with a
    # default existed lacks it) and the same metadata
    meta = json.loads((out / "config.json").read_text())
    original = json.loads((EMBEDDED_MODEL_DIR / "config.json").read_text())
    assert Video3DConfig.from_dict(meta.pop("config")) == Video3DConfig.from_dict(original.pop("config"))
    assert meta == original
    assert json.loads((out / "vision_pretrain.json").read_text())["steps"] == 150


def test_words_head_aligns_the_projector_with_the_label_words(generated_root, tmp_path):
    """``--head words`` trains tower and projector (nothing else) so that patch tokens point
    at the LLM's embedding of their category / colour word."""
    out = tmp_path / "vp_words"
    assert main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--data-root", str(generated_root),
                 "--out", str(out), "--steps", "150", "--probe-steps", "5", "--batch", "16",
                 "--lr", "3e-3", "--head", "words", "--extra-rooms", str(generated_root),
                 "--no-progress"]) == 0
    res = json.loads((out / "vision_pretrain.json").read_text())
    assert res["head"] == "words"
    fit = res["training_frames"]["retrained_tower"]
    assert fit["category"] >= 60.0 and fit["colour"] >= 80.0, res  # measured: 70, 98
    # every room of the extra root (here the same three rooms) adds its frames
    assert res["training_frame_count"] > len(list((generated_root / "scannet" / "posed_images")
                                                   .glob("*/color/*.jpg"))) * 2 // 3
    old = load_file(str(EMBEDDED_MODEL_DIR / "model.safetensors"))
    new = load_file(str(out / "model.safetensors"))
    changed = {k.split(".")[0] for k in old if not torch.equal(old[k], new[k])}
    assert changed == {"vision_tower", "projector"}


def test_patch_labels_line_up_with_the_pixels(generated_root):
    """The mask is cropped like the image: a labelled patch's mean colour is nearest to
    the palette colour of its label (rendered shading aside): 72 % of them in these rooms;
    47 % with the mask mirrored left-right."""
    from video3d_ros.model.checkpoint import load_pretrained
    from video3d_ros.scenes.vocab import Colour
    from video3d_train.data import SceneStore, read_object_labels
    from video3d_train.vision_pretrain import COLOURS, load_patch_set, scene_ids

    loaded = load_pretrained(EMBEDDED_MODEL_DIR)
    store = SceneStore(generated_root, loaded.processor, num_frames=1 << 20, max_scenes=0)
    objects = {sid: read_object_labels(generated_root, sid)
               for sid in scene_ids(generated_root, "train")}
    names = sorted({o.category for labels in objects.values() for o in labels})
    data = load_patch_set(store, objects, {n: i + 1 for i, n in enumerate(names)},
                          progress=False)
    p = data.category.shape[-1]
    s = data.pixel_values.shape[-1] // p
    rgb = (data.pixel_values * 0.5 + 0.5).unfold(2, s, s).unfold(3, s, s).mean((-1, -2))
    rgb = rgb.permute(0, 2, 3, 1)  # (N, P, P, 3) mean colour of each patch, 0..1
    palette = torch.tensor([Colour(c).rgb for c in COLOURS])
    labelled = data.colour != IGNORE
    seen = rgb[labelled]
    # compare hues: each colour scaled to unit brightness (shading scales all channels)
    unit = lambda x: x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # noqa: E731
    nearest = (unit(seen)[:, None] - unit(palette)[None]).norm(dim=-1).argmin(-1)
    agree = (nearest == data.colour[labelled]).float().mean().item()
    assert labelled.sum() > 50
    assert agree > 0.6, f"only {agree:.0%} of labelled patches look like their label's colour"


def test_missing_instance_mask_is_named(generated_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "rooms"
    shutil.copytree(generated_root, root)
    victim = sorted((root / "scannet" / "posed_images").iterdir())[0] / "instance" / "00000.png"
    victim.unlink()
    assert main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--data-root", str(root),
                 "--out", str(tmp_path / "x"), "--steps", "1", "--probe-steps", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "instance/00000.png" in err and "Traceback" not in err


@pytest.mark.parametrize("text,reason", [
    ('{"objects": [{"object_id": 0, "obj', "JSONDecodeError"),  # cut short
    ('{"objects": [{"object_id": 0, "object_name": "chair"}]}', "KeyError: 'colour'"),  # field missing
])
def test_corrupt_objects_file_is_named(generated_root, tmp_path, text, reason, capsys):
    import shutil

    root = tmp_path / "rooms"
    shutil.copytree(generated_root, root)
    sid = sorted((root / "scannet" / "posed_images").iterdir())[0].name
    victim = root / "scannet" / "scans" / sid / f"{sid}_objects.json"
    victim.write_text(text)
    assert main(["--checkpoint", str(EMBEDDED_MODEL_DIR), "--data-root", str(root),
                 "--out", str(tmp_path / "x"), "--steps", "1", "--probe-steps", "1",
                 "--no-progress"]) == 2
    assert re.search(f"video3d-vision-pretrain: error: .*{sid}_objects.json.*{reason}",
                     capsys.readouterr().err)
