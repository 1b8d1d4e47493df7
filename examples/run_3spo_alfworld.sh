#!/usr/bin/env bash
# 3SPO on ALFWorld with the published defaults: alpha 50, xi 10, zeta 0.1, omega_k 0.1, G_max 8, group 8
# (rollout.n), branching rollout on (caps: 32 trajectories and 8 x 50 env steps per group); the rest as the recipe
# (Qwen2.5-1.5B-Instruct, 16 tasks, max 50 steps, lr 1e-6, KL 0.01, gamma 0.95; docs/3spo.md).
# The checkpoint callback saves the state-score table with every checkpoint and restores it on resume.
# Usage: bash examples/run_3spo_alfworld.sh [--dry-run] [hydra overrides, e.g. algorithm.sspo.branching=false]
# Data: verl-agent-ext prepare-data --env alfworld --out ~/data/verl-agent-ext/alfworld (or set VAE_DATA_DIR).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe/scpo/launch.sh" \
  algorithm.adv_estimator=sspo \
  algorithm.sspo.alpha=50 \
  algorithm.sspo.xi=10 \
  algorithm.sspo.zeta=0.1 \
  algorithm.sspo.omega_k=0.1 \
  algorithm.sspo.g_max=8 \
  algorithm.sspo.branching=true \
  actor_rollout_ref.rollout.n=8 \
  trainer.checkpoint_callback_class=verl_agent_ext.verl_plugin.sspo.SSPOCheckpointCallback \
  trainer.experiment_name=3spo_alfworld_qwen2.5_1.5b \
  -- "$@"
