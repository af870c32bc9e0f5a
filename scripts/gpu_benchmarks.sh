#!/usr/bin/env bash
# Every GPU figure of issue 16 in one command, on one CUDA GPU, with random weights (nothing is downloaded):
#
#   scripts/gpu_benchmarks.sh [OUT]            # default OUT: gpu-benchmarks/
#   PRESETS="deepfashion-512" CONFIGS="bf16 bf16+compile" scripts/gpu_benchmarks.sh   # a shorter run
#   SMOKE=1 scripts/gpu_benchmarks.sh OUT      # the same steps at smoke size on the CPU (a test runs this)
#
# Steps, each writing OUT/<step>.txt (the printed table), OUT/<step>.json and OUT/<step>.err:
#   paper_scale-<preset>  benchmarks/paper_scale.py: s/image per stage at batch 1 and 8, network calls, peak
#                         memory, time outside the networks, for each of CONFIGS (default: every configuration:
#                         fp32, classic attention, fp16, bf16, channels-last, compiled), for each of PRESETS
#                         (default: deepfashion-512 deepfashion-256 authors-512);
#   train_speed           benchmarks/train_speed.py --preset deepfashion-512: steps/s, images/s, data wait,
#                         peak memory, FLOPs and MFU per stage (the preset's bf16, batch 4);
#   train_memory          benchmarks/train_memory.py --preset deepfashion-512 --optimizer --batch 4: memory of
#                         the forward, backward and AdamW step per stage, gradient checkpointing off and on.
# A failed step is reported and the others still run; the exit status says whether any failed.
# OUT/gpu.txt records the GPU (nvidia-smi) and the torch build.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-benchmarks}
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
failed=()

step() {  # step NAME COMMAND...: run it in benchmarks/, keep its table, its errors and its status
    local name=$1
    shift
    echo "== $name: $*"
    if ! (cd benchmarks && "$@" 2>"$OUT/$name.err" | tee "$OUT/$name.txt"); then
        failed+=("$name")
        echo "!! $name failed: $(tail -n 1 "$OUT/$name.err")"
    fi
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"; } >"$OUT/gpu.txt"
cat "$OUT/gpu.txt"

if [ -n "${SMOKE:-}" ]; then
    step paper_scale-smoke "$PYTHON" paper_scale.py --smoke --configs fp32 --batches 1 --json "$OUT/paper_scale-smoke.json"
    step train_speed "$PYTHON" train_speed.py --preset tiny --steps 4 --stages refine --json "$OUT/train_speed.json"
    step train_memory "$PYTHON" train_memory.py --preset tiny --stages prior --json "$OUT/train_memory.json"
else
    for preset in ${PRESETS:-deepfashion-512 deepfashion-256 authors-512}; do
        # shellcheck disable=SC2086  # CONFIGS is a list of words
        step "paper_scale-$preset" "$PYTHON" paper_scale.py --preset "$preset" --device cuda \
            ${CONFIGS:+--configs $CONFIGS} --json "$OUT/paper_scale-$preset.json"
    done
    step train_speed "$PYTHON" train_speed.py --preset deepfashion-512 --steps 30 --json "$OUT/train_speed.json"
    step train_memory "$PYTHON" train_memory.py --preset deepfashion-512 --device cuda --optimizer --batch 4 \
        --json "$OUT/train_memory.json"
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]} (their errors: $OUT/<step>.err)"
    exit 1
fi
echo "all figures in $OUT"
