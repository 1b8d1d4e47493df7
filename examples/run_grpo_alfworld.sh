#!/usr/bin/env bash
# GRPO (episode-level baseline) on ALFWorld with the published settings (see run_scpo_alfworld.sh). verl's V1
# trainer normalises each session's episode return within its group and gives it to every step of the session.
# Usage: bash examples/run_grpo_alfworld.sh [--cpu] [--dry-run] [hydra overrides]
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe/scpo/launch.sh" \
  algorithm.adv_estimator=grpo \
  algorithm.norm_adv_by_std_in_grpo=true \
  trainer.experiment_name=grpo_alfworld_qwen2.5_1.5b \
  -- "$@"
