#!/usr/bin/env bash
# The ablation table of the README (paper Table 3 at demo scale): B1, B2, B3 and full over the whole synthetic test
# split, each with two seeds, scored by `pcdms evaluate` (ssim_pidm, l1, fid_tf and the garment colour error with its
# baselines, at 176x256).
# Usage: scripts/eval_demo.sh [WORK_DIR] [MODEL]   (WORK_DIR as given to scripts/train_demo.sh; its data/ is made
# here when missing; about 10 minutes on 2 idle CPU cores). Rerunning skips finished images and reports.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
MODEL=${2:-src/pcdms/assets/demo/model}
PCDMS=${PCDMS:-.venv/bin/pcdms}
PYTHON=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1
DATA=$WORK/data
[ -f "$DATA/synth-pairs-test.csv" ] || $PCDMS data synth --out "$DATA" --train-ids 160 --test-ids 8 --poses 4 \
    --height 64 --width 44 --seed 0 --preview
for seed in 0 1; do
    for stages in B1 B2 B3 full; do
        out=$WORK/eval/seed$seed/$stages
        $PCDMS generate --model "$MODEL" --dataset "$DATA" --split test --stages $stages --seed $seed \
            --batch-size 32 --no-progress --out "$out"
        [ -f "$out-metrics/report.json" ] || $PCDMS evaluate --pred "$out" --gt "$DATA/test" --size 176x256 \
            --pairs "$DATA/synth-pairs-test.csv" --garment-baselines --skip lpips --skip fid_gfla --no-progress \
            --out "$out-metrics"
    done
done
$PYTHON benchmarks/ablation_table.py "$WORK/eval"
