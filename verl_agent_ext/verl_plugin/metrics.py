"""Episode metrics of one training batch from the agent loop's per-step fields, for verl's tracking."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


DIAGNOSTIC_COUNTS = frozenset(
    {"step_groups", "groups_with_reference", "failed_steps", "failed_steps_with_reference", "matched_pairs"}
    | {"distinct_texts", "encode_seconds", "align_seconds"}  # SCPO's matcher cost: the step pays every call's
)
"""Credit diagnostics (last key component) that count things: summed over the estimator calls of a step."""

DIAGNOSTIC_WEIGHTS: dict[str, tuple[str, ...]] = {
    "step_group_size_mean": ("step_groups",),
    "step_group_size_median": ("step_groups",),  # approximate: the group-weighted mean of the calls' medians
    "step_group_singleton_share": ("step_groups",),
    "credited_failed_step_share": ("failed_steps",),
    "credited_share_with_reference": ("failed_steps_with_reference",),
    "mean_credit": ("credited_failed_step_share", "failed_steps"),  # weight: the number of credited steps
    "cache_hit_rate": ("distinct_texts",),
}
"""Credit diagnostics that are ratios: averaged weighted by the product of these diagnostics (same prefix)."""


def combine_credit_diagnostics(calls: Sequence[Mapping[str, float]], rows: Sequence[int]) -> dict[str, float]:
    """The diagnostics of one training step from those of its estimator calls (one per verl sub-step).

    calls: each call's diagnostics ({"credit/<estimator>/<name>": value}); rows: each call's number of real rows.
    Counts are summed, maxima / minima reduced, known ratios averaged with their denominators as weights; any
    other key is averaged weighted by rows (verl's own rule).
    """
    combined = {}
    for key in sorted({key for call in calls for key in call}):
        prefix, _, name = key.rpartition("/")
        present = [(call, count) for call, count in zip(calls, rows, strict=True) if key in call]
        values = np.array([call[key] for call, _ in present], dtype=np.float64)
        if name in DIAGNOSTIC_COUNTS:
            combined[key] = float(values.sum())
        elif "max" in name:
            combined[key] = float(values.max())
        elif "min" in name:
            combined[key] = float(values.min())
        else:
            factors = DIAGNOSTIC_WEIGHTS.get(name, ())
            weights = np.array(
                [
                    np.prod([call.get(f"{prefix}/{factor}", 0.0) for factor in factors]) if factors else count
                    for call, count in present
                ],
                dtype=np.float64,
            )
            combined[key] = float(values @ weights / weights.sum()) if weights.sum() > 0 else float(values.mean())
    return combined
