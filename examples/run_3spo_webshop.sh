#!/usr/bin/env bash
# 3SPO on WebShop with the published defaults: alpha 50, xi 10, zeta 0.1, omega_k 0.1, G_max 8, group 8,
# max 15 steps, prompt 4096, 16 tasks; branching rollout on (caps: 32 trajectories, 8 x 15 env steps per group);
# the rest as on ALFWorld (Qwen2.5-1.5B-Instruct, lr 1e-6, KL 0.01, gamma 0.95; docs/3spo.md).
# Prompts of 4,096 tokens: micro-batches of 8 rows (fp32 logits of 8 x 4,608 tokens x 151,936 = 22 GB; 32 rows
# would take 90 GB), entropy chunked (recipe); `--dry-run` prints the per-GPU plan.
# Usage: bash examples/run_3spo_webshop.sh [--dry-run] [hydra overrides]
# Data: verl-agent-ext prepare-data --env webshop --out ~/data/verl-agent-ext/webshop (or set VAE_DATA_DIR).
set -euo pipefail
DATA_DIR="${VAE_DATA_DIR:-$HOME/data/verl-agent-ext/webshop}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe/scpo/launch.sh" \
  algorithm.adv_estimator=sspo \
  algorithm.sspo.alpha=50 \
  algorithm.sspo.xi=10 \
  algorithm.sspo.zeta=0.1 \
  algorithm.sspo.omega_k=0.1 \
  algorithm.sspo.g_max=8 \
  algorithm.sspo.branching=true \
  env.name=webshop \
  env.max_steps=15 \
  "+env.env_kwargs.webshop={}" \
  data.max_prompt_length=4096 \
  data.train_batch_size=16 \
  actor_rollout_ref.rollout.n=8 \
  actor_rollout_ref.actor.ppo_mini_batch_size=64 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8 \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8 \
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8 \
  "data.train_files=$DATA_DIR/train.parquet" \
  "data.val_files=$DATA_DIR/val.parquet" \
  trainer.checkpoint_callback_class=verl_agent_ext.verl_plugin.sspo.SSPOCheckpointCallback \
  trainer.experiment_name=3spo_webshop_qwen2.5_1.5b \
  -- "$@"
