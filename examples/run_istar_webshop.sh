#!/usr/bin/env bash
# iStar on WebShop with the released settings (arXiv 2509.19199, Qwen2.5-7B-Instruct): 16 tasks x group 8,
# max 10 steps, policy lr 5e-7 without KL loss; implicit PRM initialised from the policy, beta 0.05, batch-max
# normalisation, lr 1e-6, grad clip 10, no weight decay; A = RLOO(episode) + 1.0 * RLOO(step rewards).
# The PRM is trained (the released code's PRM never was: add algorithm.istar.freeze_prm=true to reproduce it).
# Memory on 2 x 80 GB (docs/istar.md has the budget): the 7B actor's fp32 parameters, gradients and AdamW states
# are 61 GB per GPU, and so are the PRM's; both are offloaded to host memory outside their own phase (the PRM by
# algorithm.istar.prm_offload, the default), vLLM gets 0.5 of the GPU, micro-batches of 2 (update) and 4 (log-prob)
# rows of up to 4,608 tokens: about 74 GB at the peak (either update). More GPUs give headroom
# (trainer.n_gpus_per_node=4). Mini-batch 64 x 8 = 512 step rows: an iteration has at most 16 x 8 x 10 = 1,280.
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
  actor_rollout_ref.actor.ppo_mini_batch_size=64 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2 \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4 \
  actor_rollout_ref.actor.fsdp_config.param_offload=true \
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=true \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.5 \
  "data.train_files=$DATA_DIR/train.parquet" \
  "data.val_files=$DATA_DIR/val.parquet" \
  trainer.experiment_name=istar_webshop_qwen2.5_7b \
  -- "$@"
