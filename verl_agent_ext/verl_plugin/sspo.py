"""verl side of 3SPO: the state-score table's checkpoints and the start-up check.

The estimator step (read scores, credit, update the table) is `verl_agent_ext.estimators.sspo_table.sspo_credit`,
shared with `train-local`.

Checkpoints: set `trainer.checkpoint_callback_class=verl_agent_ext.verl_plugin.sspo.SSPOCheckpointCallback`
(the launch scripts do; the start-up check requires it). verl calls its `on_save` after every checkpoint, which
writes the table to `global_step_N/sspo_state_scores.npz`; when the trainer is built, the callback finds the
checkpoint verl will resume from (verl's own `resume_mode` rules) and restores the table from it before the
first rollout.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from verl.trainer.ppo.checkpoint_callback import CheckpointCallback

from verl_agent_ext.agent.branching import SSPO_ESTIMATORS
from verl_agent_ext.agent.state_score_store import load_state, save_state, state_score_store
from verl_agent_ext.credit.config import sspo_config_from

logger = logging.getLogger(__name__)

CALLBACK_CLASS = f"{__name__}.SSPOCheckpointCallback"


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
