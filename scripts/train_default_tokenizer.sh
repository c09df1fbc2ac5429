#!/usr/bin/env bash
# Train (or continue training) masktok's default tokenizer: a box-first HiMTok model (masktok-box)
# on the packed real masks (scripts/pack_training_masks.py) mixed with synthetic masks.
#
#   scripts/train_default_tokenizer.sh PACK_DIR RUN_DIR MINUTES [STEPS]
#
# PACK_DIR holds train_masks.npz and val_coco_val2014_100.npz. STEPS (default 4400) sets the
# cosine schedule; the run stops with a checkpoint after MINUTES of wall time or at STEPS, and
# rerunning the same command resumes from RUN_DIR's newest checkpoint. The model is exported to
# RUN_DIR/final (float16) either way. Runs on the GPU when there is one, else on the CPU (the
# shipped model: 4400 steps on 2 CPU cores, see src/masktok/assets/default_tokenizer/MODEL_CARD.md).
# Overrides: BATCH, LR, NUM_PARTIAL, SYNTHETIC, MODEL, INIT_FROM (start from a tokenizer folder).
set -euo pipefail
pack=${1:?PACK_DIR}; run=${2:?RUN_DIR}; minutes=${3:?MINUTES}; steps=${4:-4400}
init=(); if [ -n "${INIT_FROM:-}" ]; then init=(--init-from "$INIT_FROM"); fi
mkdir -p "$run"
if command -v masktok >/dev/null; then mt=(masktok); else mt=(python -c "from masktok.cli import main; main()"); fi
resume=()
if ls "$run"/checkpoints/step-*.pt* >/dev/null 2>&1; then resume=(--resume); fi
"${mt[@]}" train tokenizer --family himtok --model "${MODEL:-masktok-box}" "${init[@]}" \
  --packed "$pack/train_masks.npz" --val-packed "$pack/val_coco_val2014_100.npz" \
  --val-prefix-lengths 1,2,4,8,16,32 --val-every 1000 --steps "$steps" --warmup-fraction 0.02 \
  --batch-size "${BATCH:-32}" --lr "${LR:-8e-4}" --num-partial "${NUM_PARTIAL:-1}" \
  --synthetic-fraction "${SYNTHETIC:-0.3}" --seed 0 --checkpoint-every 500 --keep-checkpoints 1 \
  --log-every 50 --time-limit-min "$minutes" --export-dtype float16 --no-progress \
  --run-dir "$run" "${resume[@]}"
# A run stopped by the time limit before its last step still yields a tokenizer (its newest checkpoint).
if [ ! -d "$run/final" ]; then "${mt[@]}" train export "$run" "$run/final" --dtype float16; fi
