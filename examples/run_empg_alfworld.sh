#!/usr/bin/env bash
# EMPG on ALFWorld with the published settings (see run_scpo_alfworld.sh): the GRPO outcome advantage modulated by
# each step's policy entropy (k = k' = 1, zeta = 0.1; docs/credit.md, EMPG section). The entropy comes from verl's
# old-log-prob pass: keep algorithm.rollout_correction.bypass_mode off (the start-up check refuses it).
# Usage: bash examples/run_empg_alfworld.sh [--dry-run] [hydra overrides, e.g. algorithm.empg.base=gigpo]
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe/scpo/launch.sh" \
  algorithm.adv_estimator=empg \
  algorithm.empg.base=grpo \
  algorithm.empg.k=1.0 \
  algorithm.empg.k_next=1.0 \
  algorithm.empg.zeta=0.1 \
  trainer.experiment_name=empg_alfworld_qwen2.5_1.5b \
  "$@"
