"""Does credit-eval's AUC predict learning speed? Rank correlation across estimator settings, arena vs credit-eval.

    python benchmarks/arena_credit_correlation.py --arena ARENA_DIR --credit CREDIT_DIR/credit_eval.json \
        [--pair "sspo:sspo.branching=false=sspo" ...] [--seeds 0-4] [--epsilon 0.5]

ARENA_DIR is an `arena` output folder (its runs/<label>/seed<k>.json); CREDIT_DIR a `credit-eval` output folder run
with the same settings spelled as credit-eval labels. A setting is in both when its label is the same (unless
`--exclude`d: e.g. `sspo`, whose arena runs branch and whose credit-eval rows cannot), or when a
`--pair ARENA_LABEL=CREDIT_LABEL` names the two (the arena label may itself contain '=': the last '=' that leaves
a known credit-eval label on its right splits the pair). For every setting the table shows the credit-eval AUC in
failed trajectories (within group, its 95% interval over tasks), and the arena's learning speed: the held-out
curve's AUC and the mean training success, each the mean over the seeds with its bootstrap interval. Spearman's rho
between the credit-eval AUC and each learning measure is given with a 95% interval from resampling the arena's
seeds (each resample recomputes every setting's mean over the same drawn seeds: the seeds are paired).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from verl_agent_ext.arena.cli import parse_seeds
from verl_agent_ext.arena.stats import bootstrap_mean, curve_auc, rank_correlation


def _pairs(specs: list[str], credit_labels: set[str]) -> dict[str, str]:
    pairs = {}
    for spec in specs:
        for cut in range(len(spec) - 1, 0, -1):
            if spec[cut] == "=" and spec[cut + 1 :] in credit_labels:
                pairs[spec[:cut]] = spec[cut + 1 :]
                break
        else:
            raise SystemExit(f"error: --pair {spec!r}: no ARENA_LABEL=CREDIT_LABEL with a known credit-eval label")
    return pairs


def arena_measures(folder: Path, seeds: list[int]) -> np.ndarray:
    """(seeds, 2): held-out curve AUC and mean training success per seed; NaN where a seed's run is missing."""
    values = np.full((len(seeds), 2), np.nan)
    for index, seed in enumerate(seeds):
        path = folder / f"seed{seed}.json"
        if path.is_file():
            run = json.loads(path.read_text())
            values[index] = curve_auc(run["episodes"], run["heldout_success"]), float(np.mean(run["train_success"]))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arena", type=Path, required=True, help="arena output folder")
    parser.add_argument("--credit", type=Path, required=True, help="credit-eval's credit_eval.json")
    parser.add_argument("--pair", action="append", default=[], help="ARENA_LABEL=CREDIT_LABEL (repeatable)")
    parser.add_argument(
        "--exclude", action="append", default=[], help="an arena label to leave out though credit-eval has it"
    )
    parser.add_argument("--seeds", default="0-4", help="arena seeds (default 0-4, the tuning seeds)")
    parser.add_argument("--epsilon", default="0.5", help="credit-eval epsilon whose AUC is used (default 0.5)")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()

    credit = json.loads(args.credit.read_text())["estimators"]
    seeds = parse_seeds(args.seeds)
    arena_labels = {  # the label as written on the arena's command line (folder names are sanitised)
        json.loads(path.read_text())["label"]: path.parent.name for path in (args.arena / "runs").glob("*/seed*.json")
    }
    pairs = {label: label for label in arena_labels if label in credit and label not in args.exclude}
    pairs.update(_pairs(args.pair, set(credit)))
    rows = []
    for arena_label, credit_label in pairs.items():
        measures = arena_measures(args.arena / "runs" / arena_labels[arena_label], seeds)
        if np.isnan(measures).any():
            raise SystemExit(f"error: arena setting {arena_label!r} lacks a run for some of seeds {args.seeds}")
        entry = credit[credit_label]["by_epsilon"][args.epsilon]
        rows.append((arena_label, credit_label, entry["auc_failed_within_group"], entry["ci95"], measures))
    rows.sort(key=lambda row: -row[2])  # best credit first
    if len(rows) < 3:
        raise SystemExit(f"error: {len(rows)} settings in both files; a rank correlation needs at least 3")

    auc_credit = np.array([row[2] for row in rows])
    measures = np.stack([row[4] for row in rows])  # (settings, seeds, 2)
    print(f"Settings in both: {len(rows)}; arena seeds {args.seeds}; credit-eval epsilon {args.epsilon}\n")
    print(
        "| setting (arena label) | credit-eval AUC failed, within group [95%] | arena held-out AUC [95%] "
        "| arena training success [95%] |"
    )
    print("|---|---:|---:|---:|")
    for arena_label, _, auc, ci95, seed_values in rows:
        low, high = ci95.get("auc_failed_within_group", [float("nan")] * 2)
        held = bootstrap_mean(seed_values[:, 0])
        train = bootstrap_mean(seed_values[:, 1])
        print(
            f"| {arena_label} | {auc:.3f} [{low:.3f}, {high:.3f}] | {held[0]:.3f} [{held[1]:.3f}, {held[2]:.3f}] "
            f"| {train[0]:.3f} [{train[1]:.3f}, {train[2]:.3f}] |"
        )
    rng = np.random.default_rng(0)
    print("\n| learning measure | Spearman rho (credit-eval AUC vs measure) | 95% interval (seeds resampled) |")
    print("|---|---:|---|")
    for column, name in ((0, "held-out AUC"), (1, "training success (mean)")):
        rho = rank_correlation(auc_credit, measures[:, :, column].mean(axis=1))
        draws = rng.integers(len(seeds), size=(args.resamples, len(seeds)))
        resampled = [rank_correlation(auc_credit, measures[:, draw, column].mean(axis=1)) for draw in draws]
        low, high = np.nanpercentile(resampled, [2.5, 97.5])
        print(f"| {name} | {rho:+.2f} | [{low:+.2f}, {high:+.2f}] |")


if __name__ == "__main__":
    main()
