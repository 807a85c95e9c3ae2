"""``video3d_train.visibility``: which questions' objects the sampled frames show."""

import json

import numpy as np
import pytest

from video3d_train.visibility import main, split_by_visibility, visibility, visible_pixels


def test_visible_pixels_takes_the_best_frame_per_object():
    a = np.array([[1, 1], [0, 3]], np.uint16)  # object 0: 2 px, object 2: 1 px
    b = np.array([[3, 3], [3, 0]], np.uint16)  # object 2: 3 px
    assert visible_pixels([a, b], [0, 2, 5]) == [2, 3, 0]


def test_visibility_of_generated_questions(generated_root):
    ann = json.loads((generated_root / "benchmark/scanqa/ScanQA_v1.0_val.json").read_text())
    everything = visibility(generated_root, ann, num_frames=100, min_pixels=1)
    assert len(everything) == len(ann) and any(everything.values())
    # fewer frames, a stricter threshold: never more questions visible
    fewer = visibility(generated_root, ann, num_frames=1, min_pixels=1)
    assert all(everything[q] for q, v in fewer.items() if v)
    assert not any(visibility(generated_root, ann, num_frames=100, min_pixels=10**6).values())


def test_em_split_by_visibility(generated_root, tmp_path, capsys):
    ann = json.loads((generated_root / "benchmark/scanqa/ScanQA_v1.0_val.json").read_text())
    vis = visibility(generated_root, ann, num_frames=100, min_pixels=1)
    records = [{"id": f"scanqa_{a['question_id']}_0", "ground_truth": a["answers"],
                "prediction": a["answers"][0] if vis[str(a["question_id"])] else "nothing"}
               for a in ann]
    split = split_by_visibility(records, vis)
    assert split["visible"]["em"] == 100.0
    assert split["visible"]["questions"] + split["not visible"]["questions"] == len(ann)
    if split["not visible"]["questions"]:
        assert split["not visible"]["em"] == 0.0
    with pytest.raises(KeyError, match="not in the annotations"):
        split_by_visibility([{**records[0], "id": "scanqa_unknown_0"}], vis)
    res = tmp_path / "scanqa.jsonl"
    res.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["--data-root", str(generated_root), "--annotations",
                 "benchmark/scanqa/ScanQA_v1.0_val.json", "--frames", "100", "--min-pixels", "1",
                 "--results", str(res)]) == 0
    assert "visible:" in capsys.readouterr().out
