"""The arena's outputs: per-estimator summaries over seeds, the markdown tables, arena.json and arena.png.

`runs`: {label: {seed: run}}, a run as `train.run_arena` returns it (curves at the evaluation points).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verl_agent_ext.arena.stats import bootstrap_mean, curve_auc, episodes_to_reach, paired_difference

Runs = Mapping[str, Mapping[int, Mapping[str, Any]]]
BASELINES = ("grpo", "gigpo")


def budgets(episodes: Sequence[int]) -> list[int]:
    """Three evaluation points to report: about a quarter, half and all of the budget."""
    points = [e for e in episodes if e > 0]
    if not points:
        return list(episodes)
    picks = [points[max(0, math.ceil(len(points) * q) - 1)] for q in (0.25, 0.5, 1.0)]
    return sorted(set(picks))


def _seed_values(runs: Mapping[int, Mapping[str, Any]], metric, seeds: Sequence[int]) -> np.ndarray:
    return np.asarray([metric(runs[s]) if s in runs else np.nan for s in seeds], dtype=np.float64)


def _at(budget: int):
    def value(run: Mapping[str, Any]) -> float:
        episodes = list(run["episodes"])
        return float(run["heldout_success"][episodes.index(budget)]) if budget in episodes else float("nan")

    return value


def _auc(run: Mapping[str, Any]) -> float:
    return curve_auc(run["episodes"], run["heldout_success"])


def _train_mean(run: Mapping[str, Any]) -> float:
    """Mean training success over all iterations: the training curve's area (its own episodes, sampled)."""
    return float(np.mean(run["train_success"]))


def summarise(runs: Runs, estimators: Mapping[str, str], level: float) -> dict[str, Any]:
    """Per label: success at the budgets, AUC, episodes to `level` (each mean + 95% interval over seeds), and paired
    differences of AUC and of final success against the first grpo / gigpo label. estimators: label -> name."""
    seeds = sorted({seed for by_seed in runs.values() for seed in by_seed})
    any_run = next(run for by_seed in runs.values() for run in by_seed.values())
    points = budgets(any_run["episodes"])
    final = points[-1]
    baselines = {
        name: next((label for label, est in estimators.items() if est == name and label in runs), None)
        for name in BASELINES
    }
    out: dict[str, Any] = {"seeds": seeds, "budgets": points, "level": level, "baselines": baselines, "by_label": {}}
    for label, by_seed in runs.items():
        reach = _seed_values(by_seed, lambda r: episodes_to_reach(r["episodes"], r["heldout_success"], level), seeds)
        entry = {
            "success": {str(b): bootstrap_mean(_seed_values(by_seed, _at(b), seeds)) for b in points},
            "start": bootstrap_mean(_seed_values(by_seed, _at(0), seeds)),
            "auc": bootstrap_mean(_seed_values(by_seed, _auc, seeds)),
            "train_auc": bootstrap_mean(_seed_values(by_seed, _train_mean, seeds)),
            "episodes_to_level": bootstrap_mean(reach),
            "reached": int(np.sum(~np.isnan(reach))),
            "runs": len(by_seed),
            "wall_seconds": float(sum(run["wall_seconds"] for run in by_seed.values())),
            "env_steps": float(np.mean([run["total_env_steps"] for run in by_seed.values()])),
            "paired": {},
        }
        for name, base in baselines.items():
            if base is None or base == label:
                continue
            entry["paired"][name] = {
                "auc": paired_difference(_seed_values(by_seed, _auc, seeds), _seed_values(runs[base], _auc, seeds)),
                "final": paired_difference(
                    _seed_values(by_seed, _at(final), seeds), _seed_values(runs[base], _at(final), seeds)
                ),
                "train_auc": paired_difference(
                    _seed_values(by_seed, _train_mean, seeds), _seed_values(runs[base], _train_mean, seeds)
                ),
            }
        out["by_label"][label] = entry
    return out


def _ci(value: Sequence[float], digits: int = 3) -> str:
    mean, low, high = value
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _signed(value: Sequence[float]) -> str:
    mean, low, high = value
    return "n/a" if np.isnan(mean) else f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def markdown_tables(summary: Mapping[str, Any]) -> str:
    """Held-out success at three budgets, AUC, episodes to the level; then the paired differences."""
    points = summary["budgets"]
    seeds = summary["seeds"]
    header = (
        ["estimator", "start"]
        + [f"held-out @ {b}" for b in points]
        + ["AUC", f"episodes to {summary['level']:g}", "training success (mean)", "env steps / run", "wall s"]
    )
    lines = [
        f"Held-out success, mean over {len(seeds)} seed(s) {seeds[0]}-{seeds[-1]} with 95% bootstrap intervals:",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for label, entry in summary["by_label"].items():
        reach = entry["episodes_to_level"]
        reach_text = "not reached" if entry["reached"] == 0 else f"{_ci(reach, 0)} ({entry['reached']}/{entry['runs']})"
        cells = [label, f"{entry['start'][0]:.3f}"] + [_ci(entry["success"][str(b)]) for b in points]
        cells += [_ci(entry["auc"]), reach_text, _ci(entry["train_auc"])]
        cells += [f"{entry['env_steps']:.0f}", f"{entry['wall_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    baselines = {name: label for name, label in summary["baselines"].items() if label is not None}
    if baselines:
        lines += ["", "Paired differences (same seed: same tasks, same warm start), 95% bootstrap over seeds:", ""]
        header = ["estimator"] + [
            f"{what} vs {label}" for label in baselines.values() for what in ("ΔAUC", f"Δ@{points[-1]}", "Δtrain")
        ]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for label, entry in summary["by_label"].items():
            cells = [label]
            for name in baselines:
                paired = entry["paired"].get(name)
                keys = ("auc", "final", "train_auc")
                cells += [_signed(paired[key]) for key in keys] if paired else ["-"] * len(keys)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(payload, indent=1, default=_plain))
    partial.replace(path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plot(path: Path, runs: Runs) -> None:
    """Mean held-out success vs training episodes per estimator, with pointwise 95% bootstrap bands over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for label, by_seed in runs.items():
        episodes = next(iter(by_seed.values()))["episodes"]
        curves = np.asarray([run["heldout_success"] for run in by_seed.values()], dtype=np.float64)
        stats = np.asarray([bootstrap_mean(curves[:, k]) for k in range(curves.shape[1])])
        (line,) = axis.plot(episodes, stats[:, 0], label=f"{label} ({len(by_seed)} seeds)")
        axis.fill_between(episodes, stats[:, 1], stats[:, 2], color=line.get_color(), alpha=0.15)
    axis.set_xlabel("training episodes")
    axis.set_ylabel("held-out success")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
