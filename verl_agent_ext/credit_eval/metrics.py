"""How well advantages rank good steps above bad ones: AUC, positive shares, Spearman, bootstrap intervals.

All functions take per-row arrays of shape (n,): `advantage` (float), `good` (bool oracle label), `progress`
(float, d(s_t) - d(s_{t+1})), `failed` (bool: the row's trajectory failed), `group` (the row's task group, uid).

- pooled AUC: P(advantage of a random good step > that of a random bad step), ties count 1/2, over all rows of the
  subset at once. Groups with different episode advantages mix here (every failed step of a group that had
  successes gets a lower advantage than those of an all-failed group), so it also measures the episode channel;
- within-group AUC: the same AUC inside each group (task), averaged over the groups having both labels: only how
  the estimator orders steps that it compares in training;
- good / bad positive share in failed trajectories: the share of good (resp. bad) steps of failed trajectories
  whose advantage is > 0 (resp. false credit);
- Spearman: rank correlation of advantage and progress over all rows.

Advantages are rounded to 1e-6 first, so float noise of equal values does not break ties.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ZERO = 1e-6  # |A| at or below this is 0 (float noise of equal values)
METRICS_WITH_INTERVALS = (
    "auc_all",
    "auc_failed",
    "auc_success",
    "auc_all_within_group",
    "auc_failed_within_group",
    "good_positive_failed",
    "bad_positive_failed",
    "spearman",
)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` (n,), ties get their average rank. Returns float64 (n,)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inverse.reshape(-1)]


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC of `scores` (n,) for `positive` (n,) vs the rest; NaN when a class is empty."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def group_aucs(scores: np.ndarray, positive: np.ndarray, group: np.ndarray) -> np.ndarray:
    """AUC inside each group that has both labels. Returns (G',) float64, G' <= number of groups."""
    values = []
    for label in np.unique(group):
        rows = group == label
        value = auc(scores[rows], positive[rows])
        if not np.isnan(value):
            values.append(value)
    return np.asarray(values, dtype=np.float64)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of (n,) arrays; NaN when either is constant or n < 2."""
    if len(x) < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def _share(mask: np.ndarray, of: np.ndarray) -> float:
    return float(mask[of].mean()) if of.any() else float("nan")


def credit_metrics(
    advantage: np.ndarray, good: np.ndarray, progress: np.ndarray, failed: np.ndarray, group: np.ndarray
) -> dict[str, float]:
    """Every metric of the module docstring for one set of rows. Returns a dict of floats (NaN when undefined)."""
    score = np.round(advantage, 6)
    positive = score > ZERO
    within = {}
    for name, subset in (("all", np.ones_like(failed)), ("failed", failed), ("success", ~failed)):
        per_group = group_aucs(score[subset], good[subset], group[subset])
        within[f"auc_{name}_within_group"] = float(per_group.mean()) if len(per_group) else float("nan")
    finite = np.isfinite(progress)
    return {
        "auc_all": auc(score, good),
        "auc_failed": auc(score[failed], good[failed]),
        "auc_success": auc(score[~failed], good[~failed]),
        **within,
        "good_positive_failed": _share(positive, failed & good),
        "bad_positive_failed": _share(positive, failed & ~good),
        "spearman": spearman(score[finite], progress[finite]),
        "rows": float(len(score)),
        "good_share": float(good.mean()) if len(good) else float("nan"),
    }


def bootstrap_intervals(
    compute: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    group: np.ndarray,
    resamples: int,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile intervals of `compute(rows, groups)` over resamples of whole groups (tasks) with replacement.

    compute: (row indices (k,), group id per chosen row (k,)) -> metrics; a group drawn twice counts as two
    groups. group: (n,) group label per row. Returns metric -> [low, high] for METRICS_WITH_INTERVALS (NaN
    values of a resample, e.g. one without any good failed step, are left out).
    """
    labels, inverse = np.unique(group, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == g) for g in range(len(labels))]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in METRICS_WITH_INTERVALS}
    for _ in range(resamples):
        chosen = rng.integers(len(labels), size=len(labels))
        rows = np.concatenate([rows_of[g] for g in chosen])
        draws = np.repeat(np.arange(len(chosen)), [len(rows_of[g]) for g in chosen])
        values = compute(rows, draws)
        for name in METRICS_WITH_INTERVALS:
            if not np.isnan(values[name]):
                samples[name].append(values[name])
    tail = (1.0 - level) / 2.0 * 100.0
    return {
        name: [float(np.percentile(s, tail)), float(np.percentile(s, 100.0 - tail))] if s else [float("nan")] * 2
        for name, s in samples.items()
    }
