"""The estimator contract: every step-level estimator's settings reader, and the checks run before any estimator.

`estimator_settings(name, algorithm)` reads and validates one estimator's settings from verl's `algorithm` section
(train-local, credit-eval, the verl start-up check and --dry-run all call it before the first rollout).
`checked_estimator_batch` is the data check at the entry of every step-level estimator (`batch.checked_step_batch`
with the estimator's `on_nonfinite` policy and its extra numeric keys); `check_outcome_rewards` is the same check
for the estimators that only read token rewards (verl's grpo, rloo, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from verl_agent_ext.credit.batch import CheckedBatch, checked_step_batch, refuse_nonfinite_labels
from verl_agent_ext.credit.config import empg_config_from, gigpo_config_from, scpo_config_from, sspo_config_from
from verl_agent_ext.credit.empg import EMPG_METADATA_KEYS
from verl_agent_ext.credit.istar import PRM_STEP_REWARD_KEY, istar_config_from
from verl_agent_ext.semantic.models import check_cross_encoder

SETTINGS_READERS: dict[str, Callable[[Any], Any]] = {
    "gigpo": gigpo_config_from,
    "scpo": scpo_config_from,
    "sspo": sspo_config_from,
    "3spo": sspo_config_from,
    "empg": empg_config_from,
    "istar": istar_config_from,
}
"""Settings reader of every step-level estimator (raises ValueError naming the key on a bad or unknown setting)."""

FLOAT_METADATA_KEYS: dict[str, tuple[str, ...]] = {"empg": EMPG_METADATA_KEYS, "istar": (PRM_STEP_REWARD_KEY,)}
"""Per-row numeric keys an estimator reads beyond the contract's rewards (checked for non-finite values)."""


def estimator_settings(name: str, algorithm: Any) -> Any:
    """The validated settings of step-level estimator `name` (None for another estimator, e.g. verl's grpo).

    algorithm: verl's `algorithm` section (DictConfig, dict) or None. Raises ValueError on a bad setting.
    """
    read = SETTINGS_READERS.get(name)
    settings = read(algorithm) if read is not None else None
    for matcher, model in _matchers(settings):
        if matcher == "cross_encoder":
            check_cross_encoder(model)  # a random scoring head would match nothing: refuse before any rollout
    return settings


def _matchers(settings: Any) -> list[tuple[str, str | None]]:
    """(matcher, model) pairs a settings object uses: SCPO's matcher and every GiGPO anchor similarity."""
    found = []
    for part in (settings, getattr(settings, "scpo", None)):
        if hasattr(part, "matcher"):
            found.append((part.matcher, part.model))
    for part in (settings, getattr(settings, "gigpo", None), getattr(getattr(settings, "scpo", None), "gigpo", None)):
        if hasattr(part, "similarity"):
            found.append((part.similarity, part.model))
    return found


def nonfinite_policy(name: str, algorithm: Any) -> str:
    """`on_nonfinite` of estimator `name`: its own section's, else `algorithm.gigpo`'s, else "raise"."""
    settings = estimator_settings(name, algorithm)
    policy = getattr(settings, "on_nonfinite", None)
    if policy is None:
        policy = getattr(getattr(settings, "gigpo", None), "on_nonfinite", "raise")
    return policy


def checked_estimator_batch(
    name: str,
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    metadata: Mapping[str, np.ndarray],
    algorithm: Any,
) -> CheckedBatch:
    """The contract check of `name`'s inputs; verl tensors are (n, response_len), metadata columns (n,).

    Rewards and mask must have the same shape; each row's episode return is its token rewards' sum (ints are
    read as floats). Rows without response tokens (verl's padding) are exempt from the extra keys' check.
    """
    if tuple(token_level_rewards.shape) != tuple(response_mask.shape):
        raise ValueError(
            f"token_level_rewards {tuple(token_level_rewards.shape)} and response_mask "
            f"{tuple(response_mask.shape)} must have the same shape (rows, response_len)"
        )
    episode_return = token_level_rewards.detach().double().sum(dim=-1).cpu().numpy()
    active = (response_mask.sum(dim=-1) > 0).cpu().numpy()
    return checked_step_batch(
        metadata,
        episode_return,
        float_keys=FLOAT_METADATA_KEYS.get(name, ()),
        active=active,
        on_nonfinite=nonfinite_policy(name, algorithm),
        estimator=name,
    )


def check_outcome_rewards(name: str, token_level_rewards: torch.Tensor, labels: np.ndarray | None = None) -> None:
    """Refuse NaN / inf token rewards for an estimator that reads only them; `labels` (n,) name the rows."""
    returns = token_level_rewards.detach().double().sum(dim=-1).cpu().numpy()
    refuse_nonfinite_labels(name, "token_level_rewards", returns, labels, maskable=False)


def check_finite_output(name: str, advantages: np.ndarray, returns: np.ndarray, dtype: torch.dtype) -> None:
    """The last line of the contract: finite inputs whose outputs (n,) overflow `dtype` (rewards of 1e39) raise."""
    limit = torch.finfo(dtype).max
    for key, values in (("advantages", advantages), ("returns", returns)):
        if not (np.abs(values) <= limit).all():  # NaN fails the comparison too
            raise ValueError(
                f"adv_estimator={name}: the {key} overflow {dtype} although every input is finite (largest "
                "|reward| too large for the dtype?); rescale the environment's rewards"
            )
