#!/usr/bin/env bash
# The CPU quickstart: SCPO training of SmolLM2-135M-Instruct on generated ALFWorld games, in one process.
# It starts from the warm-start adapter shipped with the package (`alfworld-pick-smollm2-135m`: supervised LoRA on
# the searching planner's demonstrations, made by the `warm-start` command in docs/cpu_training.md), so episodes
# are won from the first iteration and SCPO has successful siblings to credit failed steps against.
# Sized for a 2-core laptop/CI runner: the pick_and_place_simple games that the searcher wins within 8 steps (8 of
# 24: on the others no episode of <= 8 steps can win, so their groups teach nothing), 2 tasks x group 4, <= 8 steps
# per episode, 16-token answers prefilled with '<action>', temperature 1.0, 3 iterations; the prompt settings are
# the adapter's (no history turn, up to 40 listed actions). The same command trains on one GPU with larger
# settings (e.g. --groups-per-iter 16 --group-size 8 --max-steps 50 --solvable-within 0 --response-length 256
# --model <HF model> --init-adapter "").
#
#   bash examples/quickstart_cpu.sh [--out DIR] [more train-local options]
#
# Prints one table row per iteration (success rate, invalid-action rate, SCPO credit, time split) and writes
# DIR/metrics.jsonl, DIR/learning_curve.png and DIR/checkpoint/ (run again to resume).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh" all

started=$(date +%s)
verl-agent-ext train-local \
  --estimator scpo \
  --init-adapter alfworld-pick-smollm2-135m \
  --task-types pick_and_place_simple \
  --games-per-type 24 \
  --solvable-within 8 \
  --history-length 0 \
  --max-actions 40 \
  --iterations 3 \
  --groups-per-iter 2 \
  --group-size 4 \
  --max-steps 8 \
  --temperature 1.0 \
  --response-length 16 \
  --out "$ROOT/runs/quickstart_cpu" \
  "$@"
echo "[quickstart] training took $(( $(date +%s) - started )) s"
