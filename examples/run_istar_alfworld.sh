#!/usr/bin/env bash
# iStar on ALFWorld. The paper has no ALFWorld run: environment, model and policy settings are the recipe's
# published ALFWorld ones (Qwen2.5-1.5B-Instruct, 16 tasks x group 8, max 50 steps, lr 1e-6, KL 0.01, see
# run_scpo_alfworld.sh); the iStar parts are the released WebShop ones (beta 0.05, batch-max normalisation,
# PRM lr 1e-6, grad clip 10, step weight 1.0). Add algorithm.istar.freeze_prm=true for the released behaviour.
# Memory: the PRM (a second 1.5B model, offloaded when idle: algorithm.istar.prm_offload) trains with the actor's
# micro-batch while the actor's states stay on the GPU: micro-batches of 8 rows keep that phase near 51 GB per
# 80 GB GPU (16 rows: 78 GB; docs/istar.md). The micro-batch size does not change the update's result.
# Usage: bash examples/run_istar_alfworld.sh [--cpu] [--dry-run] [hydra overrides]
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe/scpo/launch.sh" \
  algorithm.adv_estimator=istar \
  algorithm.istar.step_advantage_w=1.0 \
  algorithm.istar.beta=0.05 \
  algorithm.istar.normalize=batch_max \
  algorithm.istar.prm_lr=1e-6 \
  algorithm.istar.prm_grad_clip=10.0 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8 \
  trainer.experiment_name=istar_alfworld_qwen2.5_1.5b \
  -- "$@"
