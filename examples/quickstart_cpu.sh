#!/usr/bin/env bash
# The CPU quickstart: SCPO training of SmolLM2-135M-Instruct on generated ALFWorld games, in one process, starting
# from the shipped warm-start adapter `alfworld-sft` (LoRA trained on planner-expert demonstrations by
# `verl-agent-ext warm-start`; how it was made: verl_agent_ext/local/adapters/alfworld-sft/warm_start.json).
# Sized for a 2-core laptop/CI runner: pick_and_place_simple games, 2 tasks x group 4, <= 8 steps per episode,
# 16-token answers prefilled with '<action>', temperature 1.0, 4 iterations. The same command trains on one GPU
# with larger settings (e.g. --groups-per-iter 16 --group-size 8 --max-steps 50 --response-length 256
# --model <HF model> --init-adapter "" for a fresh LoRA).
#
#   bash examples/quickstart_cpu.sh [--out DIR] [more train-local options]
#
# Prints one table row per iteration (success rate, invalid-action rate, SCPO credit: share of failed steps
# credited, mean credit, groups with a successful reference; time split) and writes DIR/metrics.jsonl,
# DIR/learning_curve.png and DIR/checkpoint/ (run again to resume).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh" all

started=$(date +%s)
verl-agent-ext train-local \
  --estimator scpo \
  --init-adapter alfworld-sft \
  --task-types pick_and_place_simple \
  --games-per-type 12 \
  --iterations 4 \
  --groups-per-iter 2 \
  --group-size 4 \
  --max-steps 8 \
  --temperature 1.0 \
  --response-length 16 \
  --out "$ROOT/runs/quickstart_cpu" \
  "$@"
echo "[quickstart] training took $(( $(date +%s) - started )) s"
