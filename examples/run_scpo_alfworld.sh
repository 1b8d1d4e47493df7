#!/usr/bin/env bash
# SCPO on ALFWorld with the published settings: Qwen2.5-1.5B-Instruct, 16 tasks x group 8, max 50 steps,
# prompt 2048 / response 512, mini-batch 256 x 8 = 2,048 step rows per optimizer step, lr 1e-6, KL loss 0.01
# (low_var_kl), gamma 0.95, invalid-action penalty 0.1, 150 iterations, validation every 5 iterations at
# temperature 0.4 (recipe/scpo/config/scpo_trainer.yaml).
# Usage: bash examples/run_scpo_alfworld.sh [--cpu] [--dry-run] [hydra overrides, e.g. trainer.n_gpus_per_node=8]
# Data: verl-agent-ext prepare-data --env alfworld --out ~/data/verl-agent-ext/alfworld (or set VAE_DATA_DIR).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe/scpo/launch.sh" \
  algorithm.adv_estimator=scpo \
  algorithm.gigpo.mode=mean_norm \
  trainer.experiment_name=scpo_alfworld_qwen2.5_1.5b \
  -- "$@"
