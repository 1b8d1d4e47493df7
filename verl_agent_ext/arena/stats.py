"""Statistics of learning curves over seeds: bootstrap intervals, paired differences, AUC, episodes to a level.

A curve is held-out success at the evaluation points (episodes e_0 = 0 < e_1 < ... < e_K). Seeds are the unit of
resampling: the interval of a mean is the percentile bootstrap of the mean over seeds drawn with replacement.
Paired differences compare two estimators seed by seed (same seed = same tasks, same warm start), which removes
the seed-to-seed spread both share.
"""

from __future__ import annotations

import numpy as np


def bootstrap_mean(values: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple:
    """(mean, low, high) of the mean of `values` (S,) over seeds, percentile bootstrap; NaNs are left out.

    One value gives (v, v, v); none gives NaNs.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    return float(values.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100.0 - tail))


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0):
    """(mean, low, high) of a - b over the seeds both have (a, b: (S,), aligned by seed)."""
    return bootstrap_mean(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), resamples, level, seed)


def curve_auc(episodes: np.ndarray, success: np.ndarray) -> float:
    """Normalised area under a learning curve: the trapezoid mean of success over [e_0, e_K] (in [0, 1])."""
    episodes = np.asarray(episodes, dtype=np.float64)
    success = np.asarray(success, dtype=np.float64)
    if len(episodes) < 2:
        return float(success[0]) if len(success) else float("nan")
    widths = np.diff(episodes)
    return float(np.sum(widths * (success[1:] + success[:-1]) / 2.0) / (episodes[-1] - episodes[0]))


def episodes_to_reach(episodes: np.ndarray, success: np.ndarray, level: float) -> float:
    """First evaluation point whose success is >= `level`; NaN when the curve never reaches it."""
    reached = np.flatnonzero(np.asarray(success, dtype=np.float64) >= level)
    return float(np.asarray(episodes)[reached[0]]) if len(reached) else float("nan")


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two (N,) arrays: Pearson's correlation of their ranks (ties get their mean rank).

    NaN when either array is constant (no ranking to compare).
    """

    def ranks(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        return (ends - (counts - 1) / 2.0)[inverse]  # 1-based mean rank of each tie block

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
