#!/usr/bin/env bash
# Train (or continue training) masktok's default tokenizer: a masktok-s HiMTok model on the packed
# real masks (scripts/pack_training_masks.py) mixed with synthetic masks, on one GPU.
# Settings can be overridden by environment variables: BATCH, LR, NUM_PARTIAL, SYNTHETIC, CROP,
# MODEL, INIT_FROM (start from a tokenizer folder), PROBE_STEPS, TOTAL_MINUTES.
#
#   scripts/train_default_tokenizer.sh PACK_DIR RUN_DIR MINUTES [STEPS]
#
# PACK_DIR holds train_masks.npz and val_coco_val2014_100.npz. The run stops (with a checkpoint)
# after MINUTES of wall time or at STEPS; rerunning the same command resumes from RUN_DIR's newest
# checkpoint. Without STEPS, a 60-step probe measures the step time and STEPS is set so that the
# whole schedule fills TOTAL_MINUTES (default 15) of training; the chosen value is written to
# RUN_DIR/steps.txt and reused when resuming.
set -euo pipefail
pack=${1:?PACK_DIR}; run=${2:?RUN_DIR}; minutes=${3:?MINUTES}; steps=${4:-}
total_minutes=${TOTAL_MINUTES:-15}
batch=${BATCH:-128}
init=(); if [ -n "${INIT_FROM:-}" ]; then init=(--init-from "$INIT_FROM"); fi
model=${MODEL:-masktok-s}
probe_steps=${PROBE_STEPS:-60}
mkdir -p "$run"
if command -v masktok >/dev/null; then mt=(masktok); else mt=(python -c "from masktok.cli import main; main()"); fi
common=(--family himtok --model "$model" --packed "$pack/train_masks.npz" "${init[@]}"
        --synthetic-fraction "${SYNTHETIC:-0.3}" --crop-prob "${CROP:-0.4}" --batch-size "$batch" --lr "${LR:-8e-4}"
        --warmup-fraction 0.02 --num-partial "${NUM_PARTIAL:-1}" --seed 0
        --checkpoint-part-mb 15 --checkpoint-optimizer-dtype bfloat16 --keep-checkpoints 1
        --log-every 25 --export-dtype float16 --no-progress)
if [ -z "$steps" ]; then
  if [ -f "$run/steps.txt" ]; then
    steps=$(cat "$run/steps.txt")
  else
    "${mt[@]}" train tokenizer "${common[@]}" --steps 100000 --stop-at-step "$probe_steps" --log-every 10 \
      --checkpoint-every 0 --run-dir "$run/probe"
    # Mean step time of the probe's last 20 steps (the earlier ones include warm-up).
    steps=$(python - "$run/probe/metrics.csv" "$total_minutes" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r.get("step_time_s")]
t = sum(float(r["step_time_s"]) for r in rows[-2:]) / 2
print(int(float(sys.argv[2]) * 60 / t))
PY
)
    rm -rf "$run/probe"
  fi
fi
echo "$steps" > "$run/steps.txt"
resume=()
if ls "$run"/checkpoints/step-*.pt* >/dev/null 2>&1; then resume=(--resume); fi
"${mt[@]}" train tokenizer "${common[@]}" --steps "$steps" --checkpoint-every 500 \
  --time-limit-min "$minutes" --val-packed "$pack/val_coco_val2014_100.npz" --val-prefix-lengths 1,2,4,8,16,32 \
  --run-dir "$run" "${resume[@]}"
# A run stopped by the time limit before its last step still yields a tokenizer (its newest checkpoint).
if [ ! -d "$run/final" ]; then "${mt[@]}" train export "$run" "$run/final" --dtype float16; fi
