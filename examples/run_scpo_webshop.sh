#!/usr/bin/env bash
# SCPO on WebShop with the published settings: max 15 steps, prompt 4096, GiGPO mode mean_norm,
# 16 tasks x group 8, mini-batch 64 x 8 = 512 step rows per optimizer step; the rest as on ALFWorld (Qwen2.5-1.5B-Instruct, lr 1e-6, KL 0.01, gamma 0.95, 150 iterations).
# Prompts of 4,096 tokens: micro-batches of 8 rows (fp32 logits of 8 x 4,608 tokens x 151,936 = 22 GB; 32 rows
# would take 90 GB), entropy chunked (recipe); `--dry-run` prints the per-GPU plan.
# Usage: bash examples/run_scpo_webshop.sh [--cpu] [--dry-run] [hydra overrides]
# Data: verl-agent-ext prepare-data --env webshop --out ~/data/verl-agent-ext/webshop (or set VAE_DATA_DIR).
set -euo pipefail
DATA_DIR="${VAE_DATA_DIR:-$HOME/data/verl-agent-ext/webshop}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe/scpo/launch.sh" \
  algorithm.adv_estimator=scpo \
  algorithm.gigpo.mode=mean_norm \
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
  trainer.experiment_name=scpo_webshop_qwen2.5_1.5b \
  -- "$@"
