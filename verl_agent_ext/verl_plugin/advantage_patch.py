"""Patch of `verl.trainer.ppo.v1.utils.compute_advantage`: estimators that accept it get `non_tensor_batch`.

verl 0.9's `compute_advantage` calls a registered estimator with `token_level_rewards, response_mask, index,
config` only. For an estimator whose signature has a `non_tensor_batch` parameter (`estimator_taking_metadata`),
the wrapper calls it with `non_tensor_batch` = the batch's columns plus the step metadata that the trainer patch
(`trainer_patch`) put into `STEP_METADATA` for the duration of the call, on the real rows only (verl's padding rows
get zero advantages); every other estimator goes to verl's function unchanged. The upstream change in `upstream/`
makes verl do this itself.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from verl_agent_ext.estimators import estimator_taking_metadata

PADDING_COLUMN = "is_padding"
"""Hook-internal (bs,) bool column: verl's synthetic padding rows, left out of the estimator call."""

STEP_METADATA: contextvars.ContextVar[dict[str, np.ndarray] | None] = contextvars.ContextVar(
    "verl_agent_ext_step_metadata", default=None
)
"""The (bs,) step-metadata columns (plus PADDING_COLUMN) of the batch whose advantage is being computed."""


def pending_step_metadata() -> dict[str, np.ndarray] | None:
    """The (bs,) step-metadata columns of the batch whose advantage is being computed, else None.

    A wrapper of `PPOTrainer._compute_advantage` installed before this hook runs inside it and may add columns
    (iStar's PRM adds `prm_step_reward`); they reach the estimator's `non_tensor_batch`.
    """
    return STEP_METADATA.get()


def compute_advantage_passing_metadata(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap verl's `compute_advantage(data, adv_estimator, gamma, lam, num_repeat, norm_adv_by_std_in_grpo, config)`."""

    @functools.wraps(original)
    def compute_advantage(data: Any, adv_estimator: Any, *args: Any, **kwargs: Any) -> Any:
        fn = estimator_taking_metadata(adv_estimator)
        if fn is None:
            return original(data, adv_estimator, *args, **kwargs)
        bound = inspect.signature(original).bind(data, adv_estimator, *args, **kwargs)
        bound.apply_defaults()
        non_tensor_batch = dict(data.non_tensor_batch)
        pending = dict(STEP_METADATA.get() or {})
        padding = np.asarray(pending.pop(PADDING_COLUMN, np.zeros(len(data), dtype=bool)), dtype=bool)
        if pending:
            rows = {len(column) for column in pending.values()} | {len(padding)}
            if rows != {len(data)}:
                raise RuntimeError(f"step metadata has {rows} rows but the advantage batch has {len(data)}")
            non_tensor_batch.update(pending)
        if "response_mask" not in data.batch.keys():
            from verl.trainer.ppo.ray_trainer import compute_response_mask

            data.batch["response_mask"] = compute_response_mask(data)
        # verl's padding rows take no part in the estimator's groups or diagnostics; their advantage is 0
        real = np.flatnonzero(~padding)
        token_level_rewards = data.batch["token_level_rewards"]
        take = torch.as_tensor(real, dtype=torch.long, device=token_level_rewards.device)
        real_non_tensor_batch = {key: np.asarray(column)[real] for key, column in non_tensor_batch.items()}
        estimator_kwargs: dict[str, Any] = {
            "token_level_rewards": token_level_rewards[take],
            "response_mask": data.batch["response_mask"][take],
            "config": bound.arguments["config"],
            "non_tensor_batch": real_non_tensor_batch,
        }
        if "uid" in real_non_tensor_batch:
            estimator_kwargs["index"] = real_non_tensor_batch["uid"]
        real_advantages, real_returns = fn(**estimator_kwargs)
        advantages = real_advantages.new_zeros(token_level_rewards.shape)
        returns = real_returns.new_zeros(token_level_rewards.shape)
        advantages[take], returns[take] = real_advantages, real_returns
        data.batch["advantages"] = advantages
        data.batch["returns"] = returns
        return data

    compute_advantage.__verl_agent_ext_patch__ = True
    return compute_advantage
