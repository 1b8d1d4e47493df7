"""Paired comparison on labelled credit-eval rows: within-group AUC of each estimator minus a baseline's.

    python benchmarks/credit_eval_paired.py --rows runs/ce/ws_held_rows/rows.jsonl.gz \\
        --baseline scpo:scpo.matcher=exact:scpo.step_text=action \\
        --estimators scpo:scpo.matcher=static:scpo.step_text=action,scpo:scpo.matcher=embedding:scpo.step_text=action

Both estimators score the same rows, so their difference is measured far more precisely than two separate
intervals suggest. Per task group (uid) with good and bad failed steps: the AUC of good vs bad failed steps under
each estimator (as credit-eval's "AUC failed within group"); the table gives the mean difference over groups, a
95% bootstrap interval over groups (resampled with replacement, both estimators on the same draw) and the share
of resamples in which the estimator beats the baseline.
"""

from __future__ import annotations

import argparse

import numpy as np


def group_failed_aucs(columns: dict, advantage: np.ndarray) -> dict[str, float]:
    """uid -> AUC of good vs bad failed steps in that group (groups with both labels among failed steps)."""
    from verl_agent_ext.credit_eval.metrics import auc

    failed = ~columns["episode_success"].astype(bool)
    score = np.round(advantage, 6)
    out = {}
    for uid in sorted(set(columns["uid"][failed])):
        rows = failed & (columns["uid"] == uid)
        value = auc(score[rows], columns["good"][rows])
        if not np.isnan(value):
            out[str(uid)] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", required=True, help="rows.jsonl.gz file(s) of credit-eval runs, comma-separated")
    parser.add_argument("--baseline", required=True, help="estimator spec, as credit-eval --estimators takes it")
    parser.add_argument("--estimators", required=True, help="comma-separated estimator specs")
    parser.add_argument("--paraphrase", action="store_true", help="score the rows' paraphrased texts")
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args()

    from verl_agent_ext.credit_eval.cli import paraphrased, read_row_files
    from verl_agent_ext.credit_eval.estimators import algorithm_config, estimator_advantages, parse_estimators
    from verl_agent_ext.credit_eval.rollouts import split_batches

    batches = split_batches(read_row_files(args.rows.split(",")))
    if args.paraphrase:
        batches = paraphrased(batches)
    specs = parse_estimators(f"{args.baseline},{args.estimators}")
    per_group: dict[str, dict[str, float]] = {}
    for spec in specs:
        algorithm = algorithm_config(spec)
        per_group[spec.label] = {}
        for batch in batches.values():
            advantage, _, _ = estimator_advantages(spec.name, batch, algorithm)
            per_group[spec.label].update(group_failed_aucs(batch, advantage))
    base = per_group[specs[0].label]
    groups = sorted(base)
    rng = np.random.default_rng(0)
    draws = rng.integers(len(groups), size=(args.bootstrap, len(groups)))
    print(f"{args.rows}{' (paraphrased)' if args.paraphrase else ''}: {len(groups)} groups, baseline {specs[0].label}")
    print("| estimator | AUC failed within group | minus baseline [95%] | P(better) |")
    print("|---|---:|---:|---:|")
    b = np.asarray([base[g] for g in groups])
    print(f"| {specs[0].label} (baseline) | {b.mean():.3f} | | |")
    for spec in specs[1:]:
        a = np.asarray([per_group[spec.label][g] for g in groups])
        diff = (a - b)[draws].mean(axis=1)
        low, high = np.percentile(diff, [2.5, 97.5])
        delta = f"{(a - b).mean():+.3f} [{low:+.3f}, {high:+.3f}]"
        print(f"| {spec.label} | {a.mean():.3f} | {delta} | {(diff > 0).mean():.2f} |")


if __name__ == "__main__":
    main()
