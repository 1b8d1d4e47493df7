"""verl side of 3SPO: the estimator step (read scores, credit, update the table), checkpoints, start-up check.

`sspo_credit(batch, config, metadata)` is what `estimators.compute_step_advantage("sspo" | "3spo", ...)` runs: it
reads the state-score table as it was before this batch (`agent.state_score_store`: in process, or the run's
named Ray actor under verl), computes `credit.sspo.compute_sspo`, then adds the batch's trajectories to the table,
so the next iteration's rollout and credit see them.

Checkpoints: set `trainer.checkpoint_callback_class=verl_agent_ext.verl_plugin.sspo.SSPOCheckpointCallback`
(the launch scripts do; the start-up check requires it). verl calls its `on_save` after every checkpoint, which
writes the table to `global_step_N/sspo_state_scores.npz`; when the trainer is built, the callback finds the
checkpoint verl will resume from (verl's own `resume_mode` rules) and restores the table from it before the
first rollout.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from verl.trainer.ppo.checkpoint_callback import CheckpointCallback

from verl_agent_ext.agent.branching import SSPO_ESTIMATORS
from verl_agent_ext.agent.state_score_store import load_state, save_state, state_score_store
from verl_agent_ext.credit import StepBatch
from verl_agent_ext.credit.config import sspo_config_from
from verl_agent_ext.credit.result import CreditResult
from verl_agent_ext.credit.sspo import SSPO_METADATA_KEYS, compute_sspo, trajectory_states

logger = logging.getLogger(__name__)

CALLBACK_CLASS = f"{__name__}.SSPOCheckpointCallback"


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


class SSPOCheckpointCallback(CheckpointCallback):
    """Saves the state-score table with every verl checkpoint and restores it from the one verl resumes."""

    def __init__(self, config: Any = None):
        super().__init__(config)
        folder = resume_folder(config) if config is not None else None
        if folder is not None and load_state(state_score_store(sspo_config_from(config.algorithm)), folder):
            logger.info("3SPO state-score table restored from %s", folder)

    def on_save(self, trainer: Any, global_step: int, checkpoint_dir: str, async_save: bool = False, **kwargs) -> None:
        save_state(state_score_store(sspo_config_from(self.config.algorithm)).state_dict(), checkpoint_dir)


def resume_folder(config: Any) -> str | None:
    """The `global_step_N` folder verl's V1 trainer resumes from (its `_load_checkpoint` rules), or None."""
    from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

    trainer = config.trainer
    mode = trainer.get("resume_mode", "auto")
    if mode == "auto":
        folder = os.path.abspath(trainer.default_local_dir)
        return find_latest_ckpt_path(folder)
    if mode == "resume_path" and trainer.get("resume_from_path"):
        return os.path.abspath(trainer.resume_from_path)
    return None


def check_config(config: Any) -> None:
    """Start-up check of a 3SPO run: valid `algorithm.sspo` and the checkpoint callback that keeps the table."""
    algorithm = config.get("algorithm") or {}
    name = str(getattr(algorithm.get("adv_estimator"), "value", algorithm.get("adv_estimator")))
    if name not in SSPO_ESTIMATORS:
        return
    sspo_config_from(algorithm)
    callback = (config.get("trainer") or {}).get("checkpoint_callback_class")
    if callback != CALLBACK_CLASS:
        raise ValueError(
            f"algorithm.adv_estimator={name} keeps a state-score table that must be saved and restored with the "
            f"checkpoints: set trainer.checkpoint_callback_class={CALLBACK_CLASS} (got {callback!r})"
        )
