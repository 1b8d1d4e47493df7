"""verl estimators `gigpo`, `scpo`, `sspo` (alias `3spo`), `empg` and `istar`, registered in verl's registry on import.

Public API (stable):

    compute_step_advantage(name, token_level_rewards, response_mask, index, config, non_tensor_batch)
        -> (advantages, returns, diagnostics)
        name: "gigpo" | "scpo" | "sspo" | "3spo" | "empg" | "istar". token_level_rewards, response_mask:
        (bs, response_len); the episode return sits on (sums over) each step sample's response tokens. index: (bs,)
        uid or None (then non_tensor_batch["uid"]).
        config: verl's `algorithm` section (DictConfig), a dict, a GiGPOConfig/SCPOConfig, or None (defaults).
        non_tensor_batch: dict of (bs,) arrays with keys REQUIRED_METADATA_KEYS (uid, traj_uid, step_index,
        anchor_obs, action_text, step_reward, is_action_valid, episode_success); sspo also next_anchor_obs; plus the
        estimator's EXTRA_METADATA_KEYS (empg: step_entropy; istar: prm_step_reward).
        advantages: (bs, response_len) A = A^E + w * A^S (empg: entropy-modulated) broadcast over tokens, masked.
        returns: (bs, response_len) the step returns used by the step channel (SCPO: shaped), masked.
        diagnostics: dict[str, float] for metrics (step-group sizes; SCPO credit shares, mean credit, matches).

    compute_gigpo_advantage / compute_scpo_advantage / compute_sspo_advantage / compute_empg_advantage /
    compute_istar_advantage(token_level_rewards, response_mask, index=None, config=None, non_tensor_batch=None,
        **kwargs) -> (advantages, returns): the functions verl calls by name (`algorithm.adv_estimator=...`).

    last_diagnostics() -> dict[str, float]
        Diagnostics of the most recent estimator call in this process (for a trainer hook that only sees verl's
        `(advantages, returns)`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from verl.trainer.ppo import core_algos

from verl_agent_ext.credit import (
    EMPG_METADATA_KEYS,
    PRM_STEP_REWARD_KEY,
    REQUIRED_METADATA_KEYS,
    compute_empg,
    compute_gigpo,
    compute_istar,
    compute_scpo,
    step_entropy_from_metadata,
)
from verl_agent_ext.credit.contract import check_finite_output, checked_estimator_batch
from verl_agent_ext.verl_plugin.sspo import sspo_credit

STEP_ESTIMATORS: dict[str, Callable] = {
    "gigpo": compute_gigpo,
    "scpo": compute_scpo,
    "sspo": sspo_credit,
    "3spo": sspo_credit,
    "empg": compute_empg,
    "istar": compute_istar,
}
ESTIMATORS_READING_METADATA = frozenset({"sspo", "3spo"})  # called as fn(batch, config, metadata)
EXTRA_METADATA_KEYS: dict[str, tuple[str, ...]] = {"empg": EMPG_METADATA_KEYS, "istar": (PRM_STEP_REWARD_KEY,)}
"""Per-row keys an estimator reads beyond REQUIRED_METADATA_KEYS (trainers fill them only when asked)."""
_last_diagnostics: dict[str, float] = {}


def compute_step_advantage(
    name: str,
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    non_tensor_batch: Mapping[str, np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Step-level advantages for verl tensors; see the module docstring for shapes and keys."""
    if name not in STEP_ESTIMATORS:
        raise ValueError(f"unknown step-level estimator {name!r}; valid: {sorted(STEP_ESTIMATORS)}")
    metadata = dict(non_tensor_batch or {})
    if index is not None:
        if "uid" in metadata and not np.array_equal(np.asarray(index), np.asarray(metadata["uid"])):
            raise ValueError("index and non_tensor_batch['uid'] disagree: both must be verl's group uid per row")
        metadata.setdefault("uid", np.asarray(index))
    checked = checked_estimator_batch(name, token_level_rewards, response_mask, metadata, config)
    batch, metadata, rows = checked.batch, checked.metadata, torch.as_tensor(checked.rows, dtype=torch.long)
    float_type = token_level_rewards.dtype if token_level_rewards.is_floating_point() else torch.float32
    mask = response_mask.to(float_type)
    if len(batch) == 0:  # an empty batch, or every trajectory masked
        _last_diagnostics.clear()
        _last_diagnostics.update(checked.diagnostics(name))
        return torch.zeros_like(mask), torch.zeros_like(mask), checked.diagnostics(name)
    if name == "empg":
        # rows without response tokens (verl's padding rows, empty answers) stay out of EMPG's batch statistics
        active = (response_mask[rows].sum(dim=-1) > 0).cpu().numpy()
        result = compute_empg(batch, step_entropy_from_metadata(metadata, len(batch)), config, active)
    elif name == "istar":
        result = compute_istar(batch, config, metadata.get(PRM_STEP_REWARD_KEY))
    elif name in ESTIMATORS_READING_METADATA:
        result = STEP_ESTIMATORS[name](batch, config, metadata)
    else:
        result = STEP_ESTIMATORS[name](batch, config)
    advantage, step_return = checked.scatter(result.advantage), checked.scatter(result.step_return)
    check_finite_output(name, advantage, step_return, mask.dtype)
    advantages = torch.as_tensor(advantage, dtype=mask.dtype, device=mask.device).unsqueeze(-1) * mask
    returns = torch.as_tensor(step_return, dtype=mask.dtype, device=mask.device).unsqueeze(-1) * mask
    result = dataclasses.replace(result, diagnostics={**result.diagnostics, **checked.diagnostics(name)})
    _last_diagnostics.clear()
    _last_diagnostics.update(result.diagnostics)
    return advantages, returns, dict(result.diagnostics)


def last_diagnostics() -> dict[str, float]:
    """A copy of the diagnostics of the latest `compute_step_advantage` call in this process."""
    return dict(_last_diagnostics)


def compute_gigpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    non_tensor_batch: Mapping[str, np.ndarray] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl estimator `gigpo`: (bs, response_len) advantages and returns. Needs `non_tensor_batch` metadata."""
    advantages, returns, _ = compute_step_advantage(
        "gigpo", token_level_rewards, response_mask, index, config, _require_metadata("gigpo", non_tensor_batch)
    )
    return advantages, returns


def compute_scpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    non_tensor_batch: Mapping[str, np.ndarray] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl estimator `scpo`: (bs, response_len) advantages and returns. Needs `non_tensor_batch` metadata."""
    advantages, returns, _ = compute_step_advantage(
        "scpo", token_level_rewards, response_mask, index, config, _require_metadata("scpo", non_tensor_batch)
    )
    return advantages, returns


def compute_sspo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    non_tensor_batch: Mapping[str, np.ndarray] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl estimator `sspo` / `3spo`: (bs, response_len) advantages and returns (the 3SPO step rewards)."""
    advantages, returns, _ = compute_step_advantage(
        "sspo", token_level_rewards, response_mask, index, config, _require_metadata("sspo", non_tensor_batch)
    )
    return advantages, returns


def compute_empg_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    non_tensor_batch: Mapping[str, np.ndarray] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl estimator `empg`: (bs, response_len) advantages and returns. Needs metadata including step_entropy."""
    advantages, returns, _ = compute_step_advantage(
        "empg", token_level_rewards, response_mask, index, config, _require_metadata("empg", non_tensor_batch)
    )
    return advantages, returns


def compute_istar_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    non_tensor_batch: Mapping[str, np.ndarray] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl estimator `istar`: (bs, response_len) advantages and step rewards. Needs metadata + `prm_step_reward`."""
    advantages, returns, _ = compute_step_advantage(
        "istar", token_level_rewards, response_mask, index, config, _require_metadata("istar", non_tensor_batch)
    )
    return advantages, returns


def _require_metadata(name: str, non_tensor_batch: Mapping[str, np.ndarray] | None) -> Mapping[str, np.ndarray]:
    if non_tensor_batch is None:
        raise ValueError(
            f"adv_estimator={name} needs the step metadata in non_tensor_batch (keys {list(REQUIRED_METADATA_KEYS)}),"
            " but verl called it without non_tensor_batch. Generate rollouts with the verl_agent_ext agent loop"
            " (it fills these keys) and train with the plugin's trainer hook (it passes them to the estimator);"
            " see docs/credit.md."
        )
    return non_tensor_batch


def register_estimators() -> None:
    """Register `gigpo`, `scpo`, `sspo`, `3spo`, `empg`, `istar` in verl's registry; idempotent across re-imports.

    verl's `register_adv_est` refuses a different function under an existing name. A module imported twice
    (e.g. by path and by package) defines functions from the same source: the first registration is kept. A name taken
    by another package raises with both origins.
    """
    registered = (
        ("gigpo", compute_gigpo_advantage),
        ("scpo", compute_scpo_advantage),
        ("sspo", compute_sspo_advantage),
        ("3spo", compute_sspo_advantage),
        ("empg", compute_empg_advantage),
        ("istar", compute_istar_advantage),
    )
    for name, fn in registered:
        existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
        if existing is None:
            core_algos.register_adv_est(name)(fn)
        elif _source(existing) != _source(fn):
            raise ValueError(
                f"advantage estimator {name!r} is already registered by {_origin(existing)}; "
                f"verl_agent_ext cannot register {_origin(fn)} under the same name"
            )


def _origin(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _source(fn: Callable) -> tuple[str, str]:
    """Where a function is defined (file, qualified name): equal for two imports of this same module."""
    code = getattr(fn, "__code__", None)
    return (code.co_filename if code else repr(fn), getattr(fn, "__qualname__", repr(fn)))


register_estimators()
