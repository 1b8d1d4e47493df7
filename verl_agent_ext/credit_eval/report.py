"""Metrics of every estimator over labelled rollouts, and their markdown table, JSON and plot."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verl_agent_ext.credit_eval.metrics import bootstrap_intervals, credit_metrics

# (metric, header, with interval) of the markdown table
TABLE_COLUMNS = (
    ("auc_failed", "AUC failed (pooled)", True),
    ("auc_failed_within_group", "AUC failed within group", True),
    ("auc_all", "AUC all", False),
    ("auc_success", "AUC success", False),
    ("good_positive_failed", "good+ failed", False),
    ("bad_positive_failed", "bad+ failed", False),
    ("spearman", "Spearman", False),
    ("rows", "rows", False),
    ("seconds", "s", False),
)


def evaluate(columns: Mapping[str, np.ndarray], advantage: np.ndarray, resamples: int, seed: int = 0) -> dict[str, Any]:
    """Metrics of one estimator on labelled rows, with bootstrap intervals, per task type and per seed.

    columns: the rollouts' (n,) columns (labels included); advantage: (n,) the estimator's per-row advantage.
    """
    good = columns["good"]
    progress = columns["progress"]
    failed = ~columns["episode_success"].astype(bool)
    group = columns["uid"].astype(str)

    def compute(rows: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
        return credit_metrics(
            advantage[rows], good[rows], progress[rows], failed[rows], group[rows] if groups is None else groups
        )

    everything = np.arange(len(good))
    result: dict[str, Any] = compute(everything)
    result["ci95"] = bootstrap_intervals(compute, group, resamples, seed) if resamples > 0 else {}
    result["per_task_type"] = {
        task_type: compute(np.flatnonzero(columns["task_type"] == task_type))
        for task_type in sorted(set(columns["task_type"]))
    }
    result["per_seed"] = {
        str(s): compute(np.flatnonzero(columns["seed"] == s)) for s in sorted(set(columns["seed"].tolist()))
    }
    return result


def rollout_summary(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Episodes, success rate, rows and label shares of a set of rollouts."""
    first = columns["step_index"] == 0
    failed = ~columns["episode_success"].astype(bool)
    good = columns["good"]
    return {
        "episodes": float(first.sum()),
        "success_rate": float(columns["episode_success"][first].astype(bool).mean()),
        "rows": float(len(good)),
        "good_share": float(good.mean()),
        "failed_rows": float(failed.sum()),
        "good_failed_rows": float((good & failed).sum()),
        "groups_with_success_and_failure": float(_mixed_groups(columns)),
    }


def _mixed_groups(columns: Mapping[str, np.ndarray]) -> int:
    outcomes: dict[str, set[bool]] = {}
    for uid, success in zip(columns["uid"], columns["episode_success"], strict=True):
        outcomes.setdefault(uid, set()).add(bool(success))
    return sum(len(values) == 2 for values in outcomes.values())


def _cell(value: float, interval: Sequence[float] | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.0f}" if float(value).is_integer() and abs(value) >= 10 else f"{value:.3f}"
    if interval and not any(math.isnan(x) for x in interval):
        text += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    return text


def markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per (estimator, epsilon): results[label]["by_epsilon"][epsilon] metrics."""
    header = ["estimator", "epsilon", *(title for _, title, _ in TABLE_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * len(TABLE_COLUMNS)]
    for label, result in results.items():
        for epsilon, metrics in result["by_epsilon"].items():
            cells = [label, epsilon]
            for key, _, with_interval in TABLE_COLUMNS:
                cells.append(_cell(metrics[key], metrics["ci95"].get(key) if with_interval else None))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, float | np.floating):
            return None if math.isnan(value) or math.isinf(value) else float(value)
        if isinstance(value, np.integer):
            return int(value)
        return value

    path.write_text(json.dumps(clean(payload), indent=1) + "\n")


def plot(path: Path, results: Mapping[str, Mapping[str, Any]]) -> None:
    """AUC in failed trajectories (pooled and within group) by epsilon, one line per estimator, 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, key, title in (
        (axes[0], "auc_failed", "AUC in failed trajectories (pooled)"),
        (axes[1], "auc_failed_within_group", "AUC in failed trajectories (within group)"),
    ):
        for offset, (label, result) in enumerate(results.items()):
            epsilons = [float(e) for e in result["by_epsilon"]]
            values = np.array([m[key] for m in result["by_epsilon"].values()], dtype=float)
            intervals = np.array([m["ci95"].get(key, [np.nan, np.nan]) for m in result["by_epsilon"].values()])
            errors = np.abs(intervals.T - values) if intervals.size else None
            shift = (offset - (len(results) - 1) / 2) * 0.006
            axis.errorbar(np.array(epsilons) + shift, values, yerr=errors, marker="o", capsize=3, label=label)
        axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epsilon (share of random actions)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("AUC: good vs bad steps (0.5 = chance)")
    figure.tight_layout()
    # below both panels: estimator specs can be long (every setting spelled out)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
