"""AUC against theta for every SCPO matcher on labelled credit-eval rows: is each default on a plateau?

    python benchmarks/credit_eval_theta.py --rows runs/ce/alf_tune_rows/rows.jsonl.gz --out runs/ce/theta_alf_tune
    python benchmarks/credit_eval_theta.py --rows ROWS --step-text obs_response --matchers exact,static,embedding ...

Runs `verl-agent-ext credit-eval --rows ROWS` once with every (matcher, theta) of the grid below as an estimator
(the other SCPO settings are the defaults: alpha 1 success return, every success as reference), writes its table,
JSON and plot under OUT, then OUT/auc_vs_theta.png (within-group AUC of good vs bad failed steps against theta,
95% bootstrap interval over tasks; exact matching, which has no threshold, and GiGPO as horizontal lines) and
OUT/auc_vs_theta.md (the same numbers). The cross-encoder is left out: no trained reranker ships here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# theta grid per matcher (variant settings spelled out, so the sweep does not depend on the current defaults)
GRID: dict[str, tuple[str, tuple[float, ...]]] = {
    "static_plain": ("scpo.matcher=static:scpo.static_variant=plain", (0.95, 0.98, 0.99, 0.995, 0.998)),
    "static_pca": ("scpo.matcher=static:scpo.static_variant=pca", (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)),
    "static_sif": ("scpo.matcher=static:scpo.static_variant=sif", (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)),
    "embedding": ("scpo.matcher=embedding", (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)),
    "difflib": ("scpo.matcher=difflib", (0.7, 0.8, 0.85, 0.9, 0.95)),
}
BASELINES = {"exact": "scpo:scpo.matcher=exact", "gigpo": "gigpo"}
METRIC = "auc_failed_within_group"


def specs(matchers: list[str], step_text: str) -> dict[str, tuple[str, float | None]]:
    """estimator spec -> (matcher label, theta); baselines have theta None."""
    suffix = f":scpo.step_text={step_text}"
    out: dict[str, tuple[str, float | None]] = {}
    for name in matchers:
        if name in BASELINES:
            out[BASELINES[name] + (suffix if name == "exact" else "")] = (name, None)
            continue
        settings, thetas = GRID[name]
        for theta in thetas:
            out[f"scpo:{settings}:scpo.theta={theta}{suffix}"] = (name, theta)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", required=True, help="an earlier credit-eval run's rows.jsonl.gz")
    parser.add_argument("--out", required=True)
    parser.add_argument("--matchers", default="gigpo,exact,static_plain,static_pca,static_sif,embedding")
    parser.add_argument("--step-text", default="obs_action")
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--title", default="")
    parser.add_argument("--paraphrase", action="store_true", help="pass --paraphrase to credit-eval")
    args = parser.parse_args()
    unknown = sorted(set(args.matchers.split(",")) - set(GRID) - set(BASELINES))
    if unknown:
        raise SystemExit(f"unknown matchers {unknown}; valid: {sorted(GRID) + sorted(BASELINES)}")
    grid = specs(args.matchers.split(","), args.step_text)

    from verl_agent_ext.cli import main as cli

    out = Path(args.out)
    command = ["credit-eval", "--rows", args.rows, "--estimators", ",".join(grid), "--bootstrap", str(args.bootstrap)]
    command += ["--paraphrase"] if args.paraphrase else []
    if cli([*command, "--out", str(out)]) != 0:
        raise SystemExit("credit-eval failed")
    results = json.loads((out / "credit_eval.json").read_text())["estimators"]
    write_curves(out, grid, results, args.title or f"{args.rows} ({args.step_text}{', paraphrased' * args.paraphrase})")


def write_curves(out: Path, grid: dict, results: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "| matcher | theta | AUC failed, within group [95%] | good+ failed | bad+ failed |",
        "|---|---:|---:|---:|---:|",
    ]
    curves: dict[str, list[tuple[float, float, list[float]]]] = {}
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for spec, (name, theta) in grid.items():
        metrics = results[spec]
        value, interval = metrics[METRIC], metrics["ci95"].get(METRIC, [None, None])
        cells = [name, "-" if theta is None else f"{theta:g}", _cell(value, interval)]
        cells += [_cell(metrics["good_positive_failed"]), _cell(metrics["bad_positive_failed"])]
        lines.append("| " + " | ".join(cells) + " |")
        if theta is None:
            axis.axhline(
                value, linestyle="--" if name == "exact" else ":", color="black" if name == "exact" else "grey"
            )
            axis.text(0.0, value, f" {name}", va="bottom", fontsize=8, transform=axis.get_yaxis_transform())
        else:
            curves.setdefault(name, []).append((theta, value, interval))
    for name, points in curves.items():
        thetas = [p[0] for p in points]
        values = [p[1] for p in points]
        low = [p[2][0] if p[2][0] is not None else p[1] for p in points]
        high = [p[2][1] if p[2][1] is not None else p[1] for p in points]
        (line,) = axis.plot(thetas, values, marker="o", label=name)
        axis.fill_between(thetas, low, high, alpha=0.12, color=line.get_color())
    axis.set_xlabel("theta (match threshold)")
    axis.set_ylabel("AUC good vs bad failed steps (within group)")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "auc_vs_theta.png", dpi=110)
    plt.close(figure)
    (out / "auc_vs_theta.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cell(value, interval=None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.3f}"
    if interval and None not in interval:
        text += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    return text


if __name__ == "__main__":
    main()
