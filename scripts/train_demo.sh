#!/usr/bin/env bash
# Train the shipped demo model from scratch on the CPU (the `demo` preset, synthetic people at 64x44) and
# assemble it into src/pcdms/assets/demo/model. Reproducible: fixed seeds throughout.
# Usage: scripts/train_demo.sh [WORK_DIR]   (about three and a quarter hours on 2 idle CPU cores, two of them stage 2;
# a GPU makes it minutes). Each step resumes where it stopped when the script is run again.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
PCDMS=${PCDMS:-.venv/bin/pcdms}
export HF_HUB_OFFLINE=1
DATA=$WORK/data
[ -f "$DATA/synth-pairs-train.csv" ] || $PCDMS data synth --out "$DATA" --train-ids 160 --test-ids 8 --poses 4 \
    --height 64 --width 44 --seed 0 --preview
$PCDMS train --stage prior --config demo data.root="$DATA" train.max_steps=2000 --out "$WORK/prior" --resume
# stage 2 on recoloured pairs (issue #31): with p=0.8 a pair's garments get new colours, the same in source and
# target, so the clothes can only come from the source half of the canvas, never from memory of the training outfits
$PCDMS train --stage inpaint --config demo data.root="$DATA" data.recolor_prob=0.8 train.max_steps=6000 \
    --out "$WORK/inpaint" --resume
# stage 3 trains on coarse images made as generation makes them: the prior's embedding, not the target's own
$PCDMS export-coarse --config demo data.root="$DATA" --inpaint "$WORK/inpaint/model" --prior "$WORK/prior/model" \
    --out "$WORK/coarse" --batch-size 64 sample.num_inference_steps=5
$PCDMS train --stage refine --config demo data.root="$DATA" data.coarse_dir="$WORK/coarse" train.max_steps=6500 \
    --out "$WORK/refine" --resume
$PCDMS assemble --config demo --prior "$WORK/prior/model" --inpaint "$WORK/inpaint/model" \
    --refine "$WORK/refine/model" --out src/pcdms/assets/demo/model
