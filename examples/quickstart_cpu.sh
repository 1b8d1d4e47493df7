#!/usr/bin/env bash
# The CPU quickstart: SCPO training of SmolLM2-135M-Instruct on generated ALFWorld games, in one process.
# Sized for a 2-core laptop/CI runner (about 7 minutes of training): 2 tasks x group 4, <= 5 steps per episode,
# 24-token answers prefilled with '<action>', temperature 1.0, LoRA rank 8, 4 iterations. The same command trains
# on one GPU with larger settings (e.g. --groups-per-iter 16 --group-size 8 --max-steps 50 --response-length 256
# --model <HF model>).
#
#   bash examples/quickstart_cpu.sh [--out DIR] [more train-local options]
#
# Prints one table row per iteration (success rate, invalid-action rate, credit diagnostics, time split) and
# writes DIR/metrics.jsonl, DIR/learning_curve.png and DIR/checkpoint/ (run again to resume).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh" all

started=$(date +%s)
verl-agent-ext train-local \
  --estimator scpo \
  --iterations 4 \
  --groups-per-iter 2 \
  --group-size 4 \
  --max-steps 5 \
  --temperature 1.0 \
  --response-length 24 \
  --out "$ROOT/runs/quickstart_cpu" \
  "$@"
echo "[quickstart] training took $(( $(date +%s) - started )) s"
