#!/usr/bin/env bash
# The CUDA paths of the trainer and the evaluator, for a machine with a GPU (CI has none).
#
#   bash scripts/gpu_check.sh DATA_ROOT [OUT_DIR]
#
# DATA_ROOT: a generated dataset (video3d-scenes; two rooms are enough). In a fresh run
# directory under OUT_DIR (default: runs/gpu_check) it
#   1. trains a fresh tiny model 12 steps on CUDA with bf16 autocast, checkpoints at 6 and 12;
#   2. resumes it to step 14;
#   3. evaluates the embedded default model on ScanRefer, Multi3DRefer and SQA3D (40
#      questions each) on CUDA and on the CPU, in one pass and in 2 keyframe groups (the
#      node's grouped reading), and compares the devices answer by answer.
# Exit status: the first step that failed (the comparison fails if more than a tenth of a
# task's answers differ — for grounding, the best-scored proposal: bf16 on the GPU moves
# scores by ~1e-2, which can reorder near ties).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${1:?usage: gpu_check.sh DATA_ROOT [OUT_DIR]}"
OUT="${2:-runs/gpu_check}"
[ -f "$ROOT/.build/env.sh" ] && . "$ROOT/.build/env.sh"
# VIDEO3D_CHECK_DEVICE=cpu runs the same steps without a GPU (to check this script)
DEVICE="${VIDEO3D_CHECK_DEVICE:-cuda}"
if [ "$DEVICE" = cuda ]; then
    python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
        || { echo "[gpu_check] torch sees no CUDA device" >&2; exit 2; }
fi
rm -rf "$OUT" && mkdir -p "$OUT"
FILES=(processed/scanrefer_vg_train_llava_style.json processed/multi3drefer_train_llava_style.json
       processed/sqa3d_train_llava_style.json)
TRAIN=(--recipe tiny_generated --set "data.root=$DATA" --set model.init=random
       --set model.checkpoint=null --set 'data.val_files=[]' --set micro_batch_size=4
       --set precision=bf16 --set save_every_steps=6 --output-dir "$OUT/run" --no-progress)
step() { echo "[gpu_check] $1"; shift; "$@" || { echo "[gpu_check] failed: $*" >&2; exit 1; }; }
step "train 12 steps (bf16)" python -m video3d_train.train "${TRAIN[@]}" --set max_steps=12
step "resume to 14" python -m video3d_train.train "${TRAIN[@]}" --set max_steps=14 --resume
MODEL="$ROOT/ros2_ws/src/video3d_ros/video3d_ros/default_model"
for groups in 1 2; do
    for dev in "$DEVICE" cpu; do
        step "evaluate the embedded model on $dev, $groups keyframe group(s)" python -m video3d_train.evaluate \
            --checkpoint "$MODEL" --data-root "$DATA" --limit 40 --no-meteor --device "$dev" \
            --keyframe-groups "$groups" --out "$OUT/eval_${dev}_g$groups" --files "${FILES[@]}"
    done
done
for groups in 1 2; do
step "compare ($groups group(s))" python - "$OUT/eval_${DEVICE}_g$groups" "$OUT/eval_cpu_g$groups" <<'EOF'
import json, sys
from pathlib import Path

gpu, cpu = Path(sys.argv[1]), Path(sys.argv[2])
bad = False
for f in sorted(cpu.glob("*.jsonl")):
    a = [json.loads(x) for x in f.read_text().splitlines()]
    b = [json.loads(x) for x in (gpu / f.name).read_text().splitlines()]
    grounding = "proposal_scores" in a[0]

    def answer(row):  # grounding rows carry scores, not a text prediction
        s = row.get("proposal_scores") or [0.0]
        return max(range(len(s)), key=s.__getitem__) if grounding else row["prediction"]

    same = sum(answer(x) == answer(y) for x, y in zip(a, b))
    diff = max((abs(p - q) for x, y in zip(a, b)
                for p, q in zip(x.get("proposal_scores", []), y.get("proposal_scores", []))),
               default=0.0)
    what = "best proposals" if grounding else "answers"
    print(f"{f.stem}: {same}/{len(a)} {what} the same on GPU and CPU; "
          f"largest proposal-score difference {diff:.4f}")
    bad |= len(a) != len(b) or same < 0.9 * len(a)
sys.exit(bad)
EOF
done
echo "[gpu_check] ok"
