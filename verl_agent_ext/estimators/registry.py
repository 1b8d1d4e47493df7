"""The step-level estimators as verl functions: one table of names, one call path, registration in verl's registry.

`STEP_ESTIMATORS` is the only list of the names (`gigpo`, `scpo`, `sspo` and its alias `3spo`, `empg`, `istar`):
the verl functions, the registration, the trainers' "does it read metadata / entropy / PRM rewards" questions and
the docs check (tests/test_docs.py) all read it.

    compute_step_advantage(name, token_level_rewards, response_mask, index, config, non_tensor_batch)
        -> (advantages, returns, diagnostics)
        token_level_rewards, response_mask: (bs, response_len); the episode return sits on (sums over) each step
        sample's response tokens. index: (bs,) uid or None (then non_tensor_batch["uid"]).
        config: verl's `algorithm` section (DictConfig), a dict, a GiGPOConfig/SCPOConfig, or None (defaults).
        non_tensor_batch: dict of (bs,) arrays with keys REQUIRED_METADATA_KEYS (uid, traj_uid, step_index,
        anchor_obs, action_text, step_reward, is_action_valid, episode_success); sspo also next_anchor_obs; plus the
        estimator's `extra_keys` (empg: step_entropy; istar: prm_step_reward).
        advantages: (bs, response_len) A = A^E + w * A^S (empg: entropy-modulated) broadcast over tokens, masked.
        returns: (bs, response_len) the step returns used by the step channel (SCPO: shaped), masked.
        diagnostics: dict[str, float] for metrics (step-group sizes; SCPO credit shares, mean credit, matches).

    VERL_FUNCTIONS[name](token_level_rewards, response_mask, index=None, config=None, non_tensor_batch=None,
        **kwargs) -> (advantages, returns): what verl calls for `algorithm.adv_estimator=name`
        (`compute_<name>_advantage`; `3spo` shares `sspo`'s function).

    register_estimators(): puts VERL_FUNCTIONS into verl's ADV_ESTIMATOR_REGISTRY (idempotent). Importing this
        module installs nothing else: verl's trainer patches belong to `verl_plugin`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from verl_agent_ext.credit import (
    EMPG_METADATA_KEYS,
    PRM_STEP_REWARD_KEY,
    REQUIRED_METADATA_KEYS,
    CreditResult,
    StepBatch,
    compute_empg,
    compute_gigpo,
    compute_istar,
    compute_scpo,
    step_entropy_from_metadata,
)
from verl_agent_ext.credit.contract import check_finite_output, checked_estimator_batch
from verl_agent_ext.estimators.sspo_table import sspo_credit

CreditFn = Callable[[StepBatch, Any, Mapping[str, np.ndarray], np.ndarray], CreditResult]
"""(batch, algorithm config, metadata columns, (bs,) bool rows with response tokens) -> CreditResult."""


@dataclass(frozen=True)
class StepEstimator:
    """One step-level estimator: its credit function and the per-row keys it reads beyond REQUIRED_METADATA_KEYS."""

    credit: CreditFn
    extra_keys: tuple[str, ...] = ()
    doc: str = ""
    sections: tuple[str, ...] = ()  # the `algorithm.<section>` settings it reads


def _empg(batch: StepBatch, config: Any, metadata: Mapping[str, np.ndarray], active: np.ndarray) -> CreditResult:
    # rows without response tokens (verl's padding rows, empty answers) stay out of EMPG's batch statistics
    return compute_empg(batch, step_entropy_from_metadata(metadata, len(batch)), config, active)


STEP_ESTIMATORS: dict[str, StepEstimator] = {
    "gigpo": StepEstimator(
        lambda batch, config, metadata, active: compute_gigpo(batch, config), doc="GiGPO", sections=("gigpo",)
    ),
    "scpo": StepEstimator(
        lambda batch, config, metadata, active: compute_scpo(batch, config), doc="SCPO", sections=("scpo", "gigpo")
    ),
    "sspo": StepEstimator(
        lambda batch, config, metadata, active: sspo_credit(batch, config, metadata),
        doc="3SPO",
        sections=("sspo", "gigpo"),
    ),
    "empg": StepEstimator(_empg, EMPG_METADATA_KEYS, doc="EMPG", sections=("empg", "gigpo", "scpo")),
    "istar": StepEstimator(
        lambda batch, config, metadata, active: compute_istar(batch, config, metadata.get(PRM_STEP_REWARD_KEY)),
        (PRM_STEP_REWARD_KEY,),
        doc="iStar",
        sections=("istar", "gigpo"),
    ),
}
ALIASES: dict[str, str] = {"3spo": "sspo"}
REGISTERED_NAMES: tuple[str, ...] = (*STEP_ESTIMATORS, *ALIASES)
"""Every name this package registers in verl's ADV_ESTIMATOR_REGISTRY."""

_last_diagnostics: dict[str, float] = {}


def step_estimator(name: str) -> StepEstimator | None:
    """The table entry of a registered name (aliases resolved), or None for any other estimator."""
    return STEP_ESTIMATORS.get(ALIASES.get(name, name))


def extra_metadata_keys(name: str) -> tuple[str, ...]:
    """Per-row keys estimator `name` reads beyond REQUIRED_METADATA_KEYS (trainers fill them only when asked)."""
    entry = step_estimator(name)
    return entry.extra_keys if entry is not None else ()


def compute_step_advantage(
    name: str,
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    non_tensor_batch: Mapping[str, np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Step-level advantages for verl tensors; see the module docstring for shapes and keys."""
    entry = step_estimator(name)
    if entry is None:
        raise ValueError(f"unknown step-level estimator {name!r}; valid: {sorted(REGISTERED_NAMES)}")
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
    active = (response_mask[rows].sum(dim=-1) > 0).cpu().numpy()
    result = entry.credit(batch, config, metadata, active)
    advantage, step_return = checked.scatter(result.advantage), checked.scatter(result.step_return)
    check_finite_output(name, advantage, step_return, mask.dtype)
    advantages = torch.as_tensor(advantage, dtype=mask.dtype, device=mask.device).unsqueeze(-1) * mask
    returns = torch.as_tensor(step_return, dtype=mask.dtype, device=mask.device).unsqueeze(-1) * mask
    result = dataclasses.replace(result, diagnostics={**result.diagnostics, **checked.diagnostics(name)})
    _last_diagnostics.clear()
    _last_diagnostics.update(result.diagnostics)
    return advantages, returns, dict(result.diagnostics)


def last_diagnostics() -> dict[str, float]:
    """Diagnostics of the most recent `compute_step_advantage` call in this process (for a trainer hook that only
    sees verl's `(advantages, returns)`)."""
    return dict(_last_diagnostics)


def _verl_function(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    def estimator(
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: np.ndarray | None = None,
        config: Any = None,
        non_tensor_batch: Mapping[str, np.ndarray] | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if non_tensor_batch is None:
            raise ValueError(
                f"adv_estimator={name} needs the step metadata in non_tensor_batch (keys "
                f"{list(REQUIRED_METADATA_KEYS)}), but verl called it without non_tensor_batch. Generate rollouts "
                "with the verl_agent_ext agent loop (it fills these keys) and train with the plugin's trainer hook "
                "(it passes them to the estimator); see docs/credit.md."
            )
        advantages, returns, _ = compute_step_advantage(
            name, token_level_rewards, response_mask, index, config, non_tensor_batch
        )
        return advantages, returns

    estimator.__name__ = estimator.__qualname__ = f"compute_{name}_advantage"
    estimator.__doc__ = (
        f"verl estimator `{name}` ({STEP_ESTIMATORS[name].doc}): (bs, response_len) advantages and returns from "
        "verl's arguments plus the step metadata in `non_tensor_batch`."
    )
    return estimator


VERL_FUNCTIONS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    name: _verl_function(name) for name in STEP_ESTIMATORS
}
VERL_FUNCTIONS.update({alias: VERL_FUNCTIONS[name] for alias, name in ALIASES.items()})


def register_estimators() -> None:
    """Register every name of the table in verl's registry; idempotent across re-imports.

    verl's `register_adv_est` refuses a different function under an existing name. A module imported twice
    (e.g. by path and by package) defines functions from the same source: the first registration is kept. A name
    taken by another package raises with both origins.
    """
    from verl.trainer.ppo import core_algos

    for name, fn in VERL_FUNCTIONS.items():
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


ESTIMATORS_GIVEN_NON_TENSOR_BATCH_BY_VERL = frozenset({"gdpo"})


def estimator_name(adv_estimator: Any) -> str:
    """verl passes the name as a str or an `AdvantageEstimator` enum member."""
    return str(getattr(adv_estimator, "value", adv_estimator))


def estimator_taking_metadata(adv_estimator: Any) -> Callable[..., Any] | None:
    """The registered estimator function if it has a `non_tensor_batch` parameter that verl does not fill."""
    from verl.trainer.ppo import core_algos

    name = estimator_name(adv_estimator)
    if name in ESTIMATORS_GIVEN_NON_TENSOR_BATCH_BY_VERL:
        return None
    fn = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
    if fn is None:
        return None
    return fn if "non_tensor_batch" in inspect.signature(fn).parameters else None
