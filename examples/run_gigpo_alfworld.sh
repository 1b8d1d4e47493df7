#!/usr/bin/env bash
# GiGPO on ALFWorld with the published settings (see run_scpo_alfworld.sh); step groups by exact anchor
# observation, mean_norm ("GiGPO w/o std"; algorithm.gigpo.mode=mean_std_norm gives the "w/ std" row).
# Usage: bash examples/run_gigpo_alfworld.sh [--cpu] [--dry-run] [hydra overrides]
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe/scpo/launch.sh" \
  algorithm.adv_estimator=gigpo \
  algorithm.gigpo.mode=mean_norm \
  algorithm.gigpo.step_advantage_w=1.0 \
  algorithm.gigpo.similarity=exact \
  trainer.experiment_name=gigpo_alfworld_qwen2.5_1.5b \
  -- "$@"
