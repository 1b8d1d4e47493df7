"""3SPO's estimator step: read the state-score table, credit the batch, then let the table learn the batch.

`sspo_credit(batch, config, metadata)` is what `compute_step_advantage("sspo" | "3spo", ...)` runs: it reads the
state-score table as it was before this batch (`agent.state_score_store`: in process, or the run's named Ray actor
under verl), computes `credit.sspo.compute_sspo`, then adds the batch's trajectories to the table, so the next
iteration's rollout and credit see them. Checkpoints of the table: `verl_plugin.sspo`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from verl_agent_ext.agent.state_score_store import state_score_store
from verl_agent_ext.credit import StepBatch
from verl_agent_ext.credit.config import sspo_config_from
from verl_agent_ext.credit.result import CreditResult
from verl_agent_ext.credit.sspo import SSPO_METADATA_KEYS, compute_sspo, trajectory_states


def sspo_credit(batch: StepBatch, config: Any, metadata: Mapping[str, np.ndarray]) -> CreditResult:
    """3SPO advantages of the batch from the scores before it; then the table learns the batch's trajectories."""
    missing = [key for key in SSPO_METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(
            f"adv_estimator=sspo needs non_tensor_batch keys {missing} (s_{{t+1}} of every step). The verl_agent_ext "
            "agent loop writes them into every step's extra_fields; rollouts from another agent loop lack them."
        )
    sspo = sspo_config_from(config)
    store = state_score_store(sspo)
    table = store.snapshot()
    next_anchor_obs = np.asarray(metadata["next_anchor_obs"], dtype=object)
    result = compute_sspo(batch, next_anchor_obs, table, sspo)
    real = np.flatnonzero([text is not None for text in next_anchor_obs])  # verl's padding rows have none
    store.update(trajectory_states(batch.take(real), next_anchor_obs[real]))
    after = store.snapshot()
    diagnostics = {
        **result.diagnostics,
        "sspo/table_states": float(len(after)),
        "sspo/states_seen_total": float(after.states_seen),
        "sspo/table_evicted": float(after.evicted),
        "sspo/finished_trajectories_total": float(after.t - 1),
    }
    return dataclasses.replace(result, diagnostics=diagnostics)
