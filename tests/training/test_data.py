"""Processed-JSON reader, frame selection, dataset items on generated scenes."""

import json

import numpy as np
import pytest
import torch

from video3d_ros.keyframes import SamplingStrategy
from video3d_ros.model.processor import Video3DProcessor
from video3d_ros.model.shapes import tiny
from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of
from video3d_train.data import (
    DataError,
    SceneStore,
    Video3DDataset,
    parse_sample,
    read_processed,
    read_scene_boxes,
    selected_frame_numbers,
    target_indices,
)
from video3d_train.metrics import Task

GOOD = {"id": 3, "video": "scannet/scene0000_00",
        "conversations": [{"from": "human", "value": "<image>Identify the object.\nThe chair."},
                          {"from": "gpt", "value": "<ground>"}],
        "box": [0, 0, 0, 1, 1, 1], "metadata": {"dataset": "scanrefer", "object_id": "2",
                                                "question_type": "unique"}}


def test_parse_good_sample():
    s = parse_sample(GOOD, "f.json")
    assert s.task is Task.SCANREFER and s.scene_id == "scene0000_00"
    assert s.prompt == "Identify the object.\nThe chair." and s.object_ids == [2]
    assert s.target_boxes.shape == (1, 6)


def test_scanqa_question_type_from_the_wording_unless_given():
    qa = {"id": 5, "video": "scannet/scene0000_00",
          "conversations": [{"from": "human", "value": "<image>\nHow many chairs are there?\n"
                                                         "Answer the question simply."},
                            {"from": "gpt", "value": "2"}],
          "metadata": {"dataset": "scanqa", "question_type": "unknow", "answers": ["2", "two"]}}
    assert parse_sample(qa, "f.json").question_type == "count"  # the published placeholder
    del qa["metadata"]["question_type"]
    assert parse_sample(qa, "f.json").question_type == "count"
    qa["metadata"]["question_type"] = "counting"  # a type the file names is kept
    assert parse_sample(qa, "f.json").question_type == "counting"


@pytest.mark.parametrize("change, message", [
    ({"conversations": [{"from": "human", "value": "no video"}, {"from": "gpt", "value": "x"}]},
     "exactly one <image>"),
    ({"box": [0, 0, 0, 1, 1]}, "6 numbers"),
    ({"metadata": {"dataset": "scanrefr"}}, "unknown task"),
    ({"conversations": [{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": "a"}]},
     "grounding answers must be <ground>"),
    ({"box": [0, 0, 0, 1, 1, -1]}, "6 numbers"),
])
def test_bad_sample_names_file_and_id(change, message):
    with pytest.raises(DataError, match=rf"data/f.json: sample 3: .*{message}"):
        parse_sample({**GOOD, **change}, "data/f.json")


def test_read_processed_raises_or_counts_bad(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps([GOOD, {**GOOD, "id": 9, "box": "oops"}, GOOD]))
    with pytest.raises(DataError, match="x.json: sample 9"):
        read_processed(p)
    samples, bad = read_processed(p, skip_bad=True)
    assert (len(samples), bad) == (2, 1)
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(DataError, match="y.json: cannot read"):
        read_processed(tmp_path / "y.json")


def test_max_coverage_ratio_cut():
    rec = {"video_id": "scannet/s", "frame_files": ["color/00030.jpg", "color/00010.jpg",
                                                     "color/00020.jpg", "color/00000.jpg"],
           "voxel_nums": [50, 30, 15, 5], "num_all_voxels": 100}
    # cumulative gains 50, 80, 95, 100: 0.90 needs three picks, sorted by time
    assert selected_frame_numbers(rec, SamplingStrategy.MAX_COVERAGE_RATIO90, 32) == [10, 20, 30]
    assert selected_frame_numbers(rec, SamplingStrategy.MAX_COVERAGE_RATIO95, 32) == [10, 20, 30]
    assert selected_frame_numbers(rec, SamplingStrategy.MAX_COVERAGE, 2) == [10, 30]


@pytest.fixture(scope="module")
def processor(generated_root):
    texts = [json.dumps(json.loads(p.read_text())) for p in
             (generated_root / "processed").glob("*train*.json")]
    tok = build_tokenizer(texts, vocab_size=300)
    return Video3DProcessor(tok, tiny(len(tok), token_ids_of(tok)))


def test_dataset_items_on_generated_scenes(generated_root, processor):
    store = SceneStore(generated_root, processor, num_frames=3)
    files = {t: read_processed(generated_root / "processed" / f"{t}_train_llava_style.json")[0]
             for t in ("scanrefer_vg", "multi3drefer", "scan2cap", "sqa3d")}
    ds = Video3DDataset([s for v in files.values() for s in v], store, max_length=4096)
    cfg = processor.config
    g = cfg.grid.pooled_per_side
    seen = set()
    for s in ds.samples:
        if s.task in seen:
            continue
        seen.add(s.task)
        it = ds.item(s)
        assert it.pixel_values.shape == (3, 3, cfg.vision.image_size_px, cfg.vision.image_size_px)
        assert it.token_points.shape[:3] == (3, g, g)
        n_video = int((it.input_ids == cfg.token_ids.video).sum())
        assert n_video == 3 * cfg.tokens_per_frame
        answer = it.labels[it.labels != -100]
        assert processor.decode(answer.tolist()) == s.answer.strip()
        if s.task.is_grounding:
            objs = read_scene_boxes(generated_root, s.scene_id)
            # positives point at boxes equal to the sample's target boxes
            np.testing.assert_allclose(objs.boxes[it.positives], s.target_boxes, atol=1e-6)
            assert it.object_masks.shape[0] == len(objs.boxes)
            assert it.object_masks.any()  # some object is seen by some patch
        if s.task is Task.SCAN2CAP:
            assert it.coord_points.shape[0] == 1
    assert seen == {Task.SCANREFER, Task.MULTI3DREFER, Task.SCAN2CAP, Task.SQA3D}


def test_scene_masks_equal_the_per_box_pixel_test(generated_root, processor):
    """SceneStore's cell masks (truth boxes at load, proposals at evaluation) are exactly
    what testing every pixel of every box gives."""
    from video3d_ros.geometry import Box3D
    from video3d_ros.model.config import ObjectFeatureKind
    from video3d_ros.model.object_features import inside_cells

    store = SceneStore(generated_root, processor, num_frames=4)
    g = processor.config.grounding
    cell, per = store.mask_cells()
    assert (cell, per) == ((processor.config.grid.patch_size_px, processor.config.grid.patches_per_side)
                           if g.object_feature is ObjectFeatureKind.PATCH14
                           else (processor.config.grid.cell_px, processor.config.grid.pooled_per_side))
    rng = np.random.default_rng(0)
    checked = 0
    for scene_dir in sorted((generated_root / "scannet" / "posed_images").iterdir()):
        scene = store.load(scene_dir.name)
        boxes = scene.objects.boxes
        jittered = boxes + np.concatenate([rng.normal(0, 0.1, (len(boxes), 3)),
                                           rng.uniform(0, 0.3, (len(boxes), 3))], axis=1)
        for candidates, masks in ((boxes, scene.object_masks),
                                  (jittered, store.masks_for(scene.xyz_m, scene.valid, jittered))):
            for b, m in zip(candidates, masks):
                expected = inside_cells(scene.xyz_m, scene.valid, Box3D(b[:3], b[3:]), cell, per,
                                        g.inside_fraction)
                assert np.array_equal(m, expected)
                checked += int(expected.any())
    assert checked > 10  # boxes that cover some cell were compared, not only empty masks
    assert store.masks_for(scene.xyz_m, scene.valid, np.zeros((0, 6))).shape == (0, 4, per, per)


def test_target_not_in_scene_is_an_error(generated_root, processor):
    s = read_processed(generated_root / "processed" / "scanrefer_vg_train_llava_style.json")[0][0]
    s.object_ids = None
    s.target_boxes = np.array([[99.0, 99, 99, 1, 1, 1]])
    with pytest.raises(DataError, match=f"sample '{s.sample_id}': target box"):
        target_indices(s, read_scene_boxes(generated_root, s.scene_id))


def test_missing_scene_names_the_path(generated_root, processor):
    store = SceneStore(generated_root, processor, num_frames=2)
    with pytest.raises(DataError, match="scene9999_00"):
        store.load("scene9999_00")


def test_scene_cache_keeps_the_most_recently_used(generated_root, processor):
    rooms = sorted(p.name for p in (generated_root / "scannet/posed_images").iterdir())[:3]
    store = SceneStore(generated_root, processor, num_frames=2, max_scenes=2)
    a = store.load(rooms[0])
    store.load(rooms[1])
    assert store.load(rooms[0]) is a  # cached: the very same tensors
    store.load(rooms[2])  # evicts rooms[1], the least recently used
    assert list(store._cache) == [rooms[0], rooms[2]]
    none = SceneStore(generated_root, processor, num_frames=2, max_scenes=0)
    first = none.load(rooms[0])
    assert none.load(rooms[0]) is not first  # decoded again
    torch.testing.assert_close(none.load(rooms[0]).pixel_values, first.pixel_values)
