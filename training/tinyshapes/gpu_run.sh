#!/usr/bin/env bash
# One GPU call: fine-tune the shipped tinyshapes model on CUDA for a fixed budget, evaluate it, and leave
# the weights (one tarball) and the figures in $OUT (at most 8 files, flat).
#
#   OUT=/some/dir bash training/tinyshapes/gpu_run.sh [--max-minutes 4] [--device cuda] [--per-bucket 12000]
#       [--eval-minutes 1.5] [--smoke] [-- TRAIN_FLAGS...]
#
# Flags after `--` go to training.tinyshapes.train as they are, e.g. `-- --pyramid-noise 0.7 --layout-weight 30`.
#
# Needs only python3 with torch, diffusers, transformers, numpy and PIL (no bot/, no network). --smoke is
# the CPU rehearsal: tiny data, a few steps, a few evaluation prompts.
set -euo pipefail
cd "$(dirname "$0")/../.."
MAX_MINUTES=4 DEVICE=cuda PER_BUCKET=12000 EVAL_MINUTES=1.5 SMOKE=0 EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --max-minutes) MAX_MINUTES=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        --per-bucket) PER_BUCKET=$2; shift 2 ;;
        --eval-minutes) EVAL_MINUTES=$2; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
: "${OUT:?set OUT to the folder the results go to}"
WORK=${WORK:-/tmp/tinyshapes-gpu}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
PY=${PYTHON:-python3}
$PY -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"

if [ "$SMOKE" = 1 ]; then
    TRAIN=(--per-bucket 250 --batch 8 --decoder-steps 2 --unet-steps 4 --export-minutes 100)
    EVAL=(--limit 6 --aspects 1:1,16:9 --quick)
    FRAME=(--renders 4 --aspects 1:1)
else
    # Batch 256 at 64x64 area; the decoder learns a clean border (weight 4 on its outer 3 px) first.
    TRAIN=(--per-bucket "$PER_BUCKET" --batch 256 --decoder-minutes 0.5 --decoder-lr 1e-4 --export-minutes 1)
    EVAL=()
    FRAME=(--renders 48)
fi
started=$(date +%s)
# A failure still leaves the last export (every minute) and the log in $OUT.
if ! $PY -m training.tinyshapes.train --device "$DEVICE" --threads 8 --work "$WORK" --target "$WORK/weights" \
    --finetune-from generation/tinyshapes/weights --stages latents,decoder,unet --decoder-border 4 \
    --lr 5e-4 --ema-decay 0.998 --max-minutes "$MAX_MINUTES" "${TRAIN[@]}" "${EXTRA[@]}" 2>&1 | grep --line-buffered -v torchvision | tee "$OUT/train.log"
then
    echo "TRAINING FAILED: see train.log; packing the last export, if any"
fi
trained=$(date +%s)
[ -d "$WORK/weights" ] || { echo "no weights were exported"; exit 1; }
tar -czf "$OUT/tinyshapes-weights.tar.gz" -C "$WORK" weights
ls -l "$OUT/tinyshapes-weights.tar.gz"

# Evaluation: the per-aspect table first (it matters most), then the rest; each under a time limit so a
# slow step cannot eat the call. Partial output still lands in $OUT.
EVAL_SECONDS=$(awk "BEGIN {print int($EVAL_MINUTES * 60)}")
timeout "$EVAL_SECONDS" $PY -m training.tinyshapes.evaluate --weights "$WORK/weights" --device "$DEVICE" \
    --grid "$OUT/grid.png" "${EVAL[@]}" 2>&1 | grep -v "torchvision\|Loading\|it/s" > "$OUT/evaluate.txt" || echo "evaluate stopped (limit ${EVAL_SECONDS}s)"
timeout 45 $PY -m training.tinyshapes.frame --weights "$WORK/weights" --device "$DEVICE" --crops "$OUT/frame-crops.png" \
    "${FRAME[@]}" 2>&1 | grep -v "torchvision\|Loading\|it/s" > "$OUT/frame.txt" || echo "frame stopped (limit 45s)"

{
    echo "trained in $((trained - started)) s, evaluated in $(($(date +%s) - trained)) s"
    grep -E "unet done|exported step|UNet budget|decoder done|latents std" "$OUT/train.log" | tail -5
    grep -A 10 "renders per aspect ratio" "$OUT/evaluate.txt" || tail -5 "$OUT/evaluate.txt"
    grep -E "guidance 1|negative prompt|seed determinism" "$OUT/evaluate.txt" || true
    cat "$OUT/frame.txt"
} | tee "$OUT/summary.txt"
