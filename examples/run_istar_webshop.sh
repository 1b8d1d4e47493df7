#!/usr/bin/env bash
# iStar on WebShop with the released settings (arXiv 2509.19199, Qwen2.5-7B-Instruct): 16 tasks x group 8,
# max 10 steps, policy lr 5e-7 without KL loss; implicit PRM initialised from the policy, beta 0.05, batch-max
# normalisation, lr 1e-6, grad clip 10, no weight decay; A = RLOO(episode) + 1.0 * RLOO(step rewards).
# The PRM is trained (the released code's PRM never was: add algorithm.istar.freeze_prm=true to reproduce it).
# Usage: bash examples/run_istar_webshop.sh [--cpu] [--dry-run] [hydra overrides]
# Data: verl-agent-ext prepare-data --env webshop --out ~/data/verl-agent-ext/webshop (or set VAE_DATA_DIR).
set -euo pipefail
DATA_DIR="${VAE_DATA_DIR:-$HOME/data/verl-agent-ext/webshop}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe/scpo/launch.sh" \
  algorithm.adv_estimator=istar \
  algorithm.istar.step_advantage_w=1.0 \
  algorithm.istar.beta=0.05 \
  algorithm.istar.normalize=batch_max \
  algorithm.istar.prm_lr=1e-6 \
  algorithm.istar.prm_grad_clip=10.0 \
  algorithm.istar.invalid_action_penalty=0.1 \
  actor_rollout_ref.model.path=Qwen/Qwen2.5-7B-Instruct \
  actor_rollout_ref.actor.optim.lr=5e-7 \
  actor_rollout_ref.actor.use_kl_loss=false \
  env.name=webshop \
  env.max_steps=10 \
  "+env.env_kwargs.webshop={}" \
  data.max_prompt_length=4096 \
  data.train_batch_size=16 \
  actor_rollout_ref.rollout.n=8 \
  "data.train_files=$DATA_DIR/train.parquet" \
  "data.val_files=$DATA_DIR/val.parquet" \
  trainer.experiment_name=istar_webshop_qwen2.5_7b \
  -- "$@"
