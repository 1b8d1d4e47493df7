"""Metrics of one training step for verl's tracking: episode metrics (`agent.metrics.episode_metrics`, shared with
train-local) and the credit diagnostics of a step's estimator calls combined."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from verl_agent_ext.agent.metrics import episode_metrics

__all__ = ["combine_credit_diagnostics", "episode_metrics"]


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
