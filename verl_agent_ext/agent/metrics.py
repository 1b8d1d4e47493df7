"""Episode metrics of a batch of step rows from the agent loop's per-step fields (one function for both trainers).

verl's tracking logs them under `env/` (`verl_plugin.trainer_patch`); train-local renames them into its own
`rollout/` and `eval/` columns (`local.trainer.episode_metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def episode_metrics(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Success, length and invalid-action metrics from (bs,) step columns.

    columns: traj_uid, episode_success, task_type, episode_length, is_action_valid, and optionally
    episode_truncated (one entry per step row). Episode metrics count each trajectory once (its first row in the
    batch); the invalid rate is over steps. Returns {"env/success_rate", "env/success_rate/<task_type>",
    "env/episode_length/mean", "env/invalid_action_rate", "env/num_episodes"} plus "env/truncated_rate" when
    episode_truncated is given; empty for an empty batch.
    """
    traj_uid = np.asarray(columns["traj_uid"], dtype=object)
    if len(traj_uid) == 0:
        return {}
    _, first = np.unique(traj_uid.astype(str), return_index=True)
    success = np.asarray(columns["episode_success"], dtype=bool)[first]
    length = np.asarray(columns["episode_length"], dtype=np.float64)[first]
    task_type = np.asarray(columns["task_type"], dtype=object)[first]
    metrics = {
        "env/success_rate": float(success.mean()),
        "env/episode_length/mean": float(length.mean()),
        "env/invalid_action_rate": float(1.0 - np.asarray(columns["is_action_valid"], dtype=bool).mean()),
        "env/num_episodes": float(len(first)),
    }
    if "episode_truncated" in columns:
        truncated = np.asarray(columns["episode_truncated"], dtype=object)[first]
        metrics["env/truncated_rate"] = float(np.mean([bool(flag) for flag in truncated]))
    for name in sorted({str(t) for t in task_type if t}):
        metrics[f"env/success_rate/{name}"] = float(success[task_type == name].mean())
    return metrics
