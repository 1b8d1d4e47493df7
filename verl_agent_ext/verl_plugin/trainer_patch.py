"""Patches of verl's V1 `PPOTrainer`: fetch the step metadata for the estimator, log episode and credit metrics.

1. `PPOTrainer._compute_advantage`: reads the rows' `extra_fields` (written by the agent loop) from TransferQueue,
   plus `step_entropy` for an estimator that reads it (from the `entropy` the old-log-prob pass wrote), makes the
   step-metadata columns available to `advantage_patch` for the duration of the call, then adds episode metrics
   (success overall / per task type, length, invalid rate) and the estimator's credit diagnostics to the
   iteration's metrics.
2. `PPOTrainer.step`: the env/ and credit/ metrics over the whole step when it has several sub-steps.

`step_metadata.install` applies them when verl imports the trainer module. After the upstream change (`upstream/`)
verl fetches the `extra_fields` itself; the `step_entropy` column and the metrics stay (docs/verl_integration.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from verl_agent_ext.agent import AGENT_LOOP_NAME, EPISODE_KEYS, STEP_METADATA_KEYS
from verl_agent_ext.credit.batch import RESPONSE_TEXT_KEY
from verl_agent_ext.credit.empg import STEP_ENTROPY_KEY
from verl_agent_ext.estimators import (
    estimator_name,
    estimator_taking_metadata,
    extra_metadata_keys,
    last_diagnostics,
)
from verl_agent_ext.estimators.registry import step_estimator
from verl_agent_ext.verl_plugin.advantage_patch import PADDING_COLUMN, STEP_METADATA
from verl_agent_ext.verl_plugin.metrics import combine_credit_diagnostics, episode_metrics


def step_metadata_columns(
    extra_fields: Sequence[dict[str, Any] | None], keys: Sequence[str], is_padding: Sequence[bool]
) -> dict[str, np.ndarray] | None:
    """(bs,) columns of STEP_METADATA_KEYS + EPISODE_KEYS (+ the optional response_text) from the rows'
    extra_fields, or None if absent.

    verl's padding rows (copies of a real row, zero response mask) get a trajectory of their own so they
    never join a real trajectory's step groups.
    """
    real = [fields for fields, pad in zip(extra_fields, is_padding, strict=True) if not pad]
    if not real or not all(isinstance(fields, dict) and "traj_uid" in fields for fields in real):
        return None
    rows: list[dict[str, Any]] = []
    for fields, key, pad in zip(extra_fields, keys, is_padding, strict=True):
        if pad:
            rows.append(_padding_row(key))
        else:
            missing = [name for name in STEP_METADATA_KEYS if name not in fields]
            if missing:
                raise ValueError(f"row {key}: extra_fields lack step metadata {missing}")
            rows.append(fields)
    columns = {}
    for name in (*STEP_METADATA_KEYS, *EPISODE_KEYS, RESPONSE_TEXT_KEY):
        column = np.empty(len(rows), dtype=object)
        column[:] = [row.get(name) for row in rows]
        columns[name] = column
    return columns


def _padding_row(key: str) -> dict[str, Any]:
    return {
        "traj_uid": f"padding-{key}",
        "step_index": 0,
        "anchor_obs": "",
        "action_text": "",
        RESPONSE_TEXT_KEY: "",
        "step_reward": 0.0,
        "is_action_valid": True,
        "episode_success": False,
        "task_type": "",
        "episode_length": 1,
        "episode_truncated": False,
    }


def compute_advantage_with_step_metadata(original: Callable[..., Any], tq: ModuleType) -> Callable[..., Any]:
    """Wrap `PPOTrainer._compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta`."""

    @functools.wraps(original)
    def _compute_advantage(self: Any, batch: Any, metrics: dict[str, Any]) -> Any:
        algorithm = self.config.algorithm
        fn = estimator_taking_metadata(algorithm.adv_estimator)
        if fn is None and self.config.get("env") is None:
            return original(self, batch, metrics)
        fetched = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        is_padding = [bool(tag.get("is_padding", False)) for tag in batch.tags]
        columns = step_metadata_columns(fetched.pop("extra_fields").tolist(), batch.keys, is_padding)
        if columns is None:
            if fn is not None:
                raise ValueError(
                    f"algorithm.adv_estimator={estimator_name(algorithm.adv_estimator)} needs step metadata in "
                    f"every row's extra_fields, but the rollouts lack it: play them with the agent loop "
                    f"'{AGENT_LOOP_NAME}' (dataset column agent_name or "
                    f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_LOOP_NAME})"
                )
            return original(self, batch, metrics)
        real = ~np.asarray(is_padding, dtype=bool)
        pending = {name: columns[name] for name in (*STEP_METADATA_KEYS, RESPONSE_TEXT_KEY)}
        if STEP_ENTROPY_KEY in extra_metadata_keys(estimator_name(algorithm.adv_estimator)):
            fetched = tq.kv_batch_get(
                keys=batch.keys, partition_id=batch.partition_id, select_fields=["entropy", "response_mask"]
            )
            pending[STEP_ENTROPY_KEY] = step_entropy_column(fetched.to_padded_tensor())
        token = STEP_METADATA.set({**pending, PADDING_COLUMN: ~real})
        try:
            result = original(self, batch, metrics)
        finally:
            STEP_METADATA.reset(token)
        real_columns = {name: column[real] for name, column in columns.items()}
        diagnostics = _credit_diagnostics(estimator_name(algorithm.adv_estimator)) if fn is not None else {}
        metrics.update(episode_metrics(real_columns))
        metrics.update(diagnostics)
        self.__dict__.setdefault(_SUB_STEP_CALLS, []).append((real_columns, diagnostics))
        return result

    _compute_advantage.__verl_agent_ext_patch__ = True
    return _compute_advantage


def step_entropy_column(fields: Any) -> np.ndarray:
    """(bs,) `step_entropy`: mean of the old-log-prob pass's token `entropy` (bs, R) over `response_mask` (bs, R).

    verl computes that entropy at the rollout temperature. Rows without response tokens (padding) get 0.
    """
    mask = fields["response_mask"].to(fields["entropy"].dtype)
    return ((fields["entropy"] * mask).sum(-1) / mask.sum(-1).clamp(min=1)).double().cpu().numpy()


def _credit_diagnostics(name: str) -> dict[str, float]:
    if step_estimator(name) is None:
        return {}
    return {f"credit/{key}": float(value) for key, value in last_diagnostics().items()}


_SUB_STEP_CALLS = "_verl_agent_ext_sub_step_calls"
"""Trainer attribute: (real-row columns, credit diagnostics) of each `_compute_advantage` call of the step."""


def step_with_whole_step_metrics(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap `PPOTrainer.step(self, metrics, timing_raw) -> KVBatchMeta`.

    With `parameter_sync_step > 1` one training step runs several sub-steps, and verl averages their metrics
    weighted by rows: episode counts are averaged instead of summed and long (failed) episodes outweigh short
    ones. The env/ and credit/ metrics of the step are recomputed here over all its sub-steps.
    """

    @functools.wraps(original)
    def step(self: Any, metrics: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.__dict__[_SUB_STEP_CALLS] = []
        result = original(self, metrics, *args, **kwargs)
        calls = self.__dict__.pop(_SUB_STEP_CALLS, [])
        if len(calls) > 1:
            columns = {name: np.concatenate([call[0][name] for call in calls]) for name in calls[0][0]}
            metrics.update(episode_metrics(columns))
            if any(call[1] for call in calls):
                rows = [len(call[0]["traj_uid"]) for call in calls]
                metrics.update(combine_credit_diagnostics([call[1] for call in calls], rows))
        return result

    step.__verl_agent_ext_patch__ = True
    return step
