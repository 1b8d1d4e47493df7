"""Advantages of a batch of step rows from any estimator in verl's registry, plus diagnostics for the metrics.

The step-level estimators (`verl_agent_ext.estimators.REGISTERED_NAMES`) get the step metadata (`non_tensor_batch`)
through `compute_step_advantage`, which also returns their diagnostics; any other registered estimator (`grpo`, `rloo`,
...) is called with verl's standard arguments, as verl's `compute_advantage` does, and sees each step row's episode
return as its outcome; one whose signature has `non_tensor_batch` also gets the rows' metadata (as the plugin's hook
does in verl).
"""

from __future__ import annotations

import torch

from verl_agent_ext.credit.contract import check_outcome_rewards
from verl_agent_ext.estimators import (
    REGISTERED_NAMES,
    compute_step_advantage,
    estimator_taking_metadata,
    register_estimators,
)
from verl_agent_ext.local.batch import StepRows

ZERO_ADVANTAGE = 1e-6  # |A| at or below this is float noise of an all-equal group


def estimator_fn(name: str):
    """verl's registered estimator `name` (this package's included); unknown names list the valid ones."""
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, get_adv_estimator_fn

    register_estimators()

    if name not in ADV_ESTIMATOR_REGISTRY:
        raise ValueError(f"unknown advantage estimator {name!r}; registered: {sorted(ADV_ESTIMATOR_REGISTRY)}")
    return get_adv_estimator_fn(name)


def compute_advantages(name: str, rows: StepRows, algorithm) -> tuple[torch.Tensor, dict[str, float]]:
    """(rows, R) advantages of estimator `name` with verl's `algorithm` config section, and metrics."""
    diagnostics: dict[str, float] = {}
    if name in REGISTERED_NAMES:
        advantages, _, diagnostics = compute_step_advantage(
            name,
            rows.token_level_rewards,
            rows.response_mask,
            index=rows.non_tensor_batch["uid"],
            config=algorithm,
            non_tensor_batch=rows.non_tensor_batch,
        )
    else:
        fn = estimator_fn(name)
        rewards = rows.token_level_rewards
        check_outcome_rewards(name, rewards, rows.non_tensor_batch.get("traj_uid"))
        # An estimator registered later (empg, sspo, ...) that declares `non_tensor_batch` gets the step metadata,
        # as the plugin's verl hook gives it.
        extra = {"non_tensor_batch": rows.non_tensor_batch} if estimator_taking_metadata(name) is not None else {}
        advantages, _ = fn(
            token_level_rewards=rewards if rewards.is_floating_point() else rewards.float(),  # int rewards: float A
            response_mask=rows.response_mask,
            config=algorithm,
            index=rows.non_tensor_batch["uid"],
            **extra,
        )
    per_row = (advantages * rows.response_mask).sum(-1) / rows.response_mask.sum(-1).clamp(min=1)
    metrics = {f"credit/{key}": float(value) for key, value in diagnostics.items()}
    metrics["credit/advantage_mean"] = float(per_row.mean())
    metrics["credit/advantage_abs_mean"] = float(per_row.abs().mean())
    metrics["credit/nonzero_share"] = float((per_row.abs() > ZERO_ADVANTAGE).float().mean())
    return advantages, metrics
