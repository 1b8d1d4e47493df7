"""Per-iteration metrics of the local trainer: a JSONL log, a console table and a learning-curve PNG.

One JSON object per iteration in `metrics.jsonl`; on resume the lines of iterations after the checkpoint are
dropped so the file always matches the model that is saved.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# (metric key, column header, number format) of the console table; each column is as wide as its header.
TABLE_COLUMNS = (
    ("iteration", "iter", "d"),
    ("rollout/success_rate", "success", ".2f"),
    ("rollout/invalid_action_rate", "invalid", ".2f"),
    ("rollout/episode_length", "steps", ".2f"),
    ("credit/gigpo/step_group_size_mean", "grp_size", ".2f"),
    ("credit/scpo/credited_failed_step_share", "scpo_cred", ".2f"),
    ("credit/scpo/mean_credit", "scpo_mean", ".2f"),
    ("credit/scpo/groups_with_reference", "scpo_refs", ".0f"),
    ("credit/advantage_abs_mean", "|adv|", ".3f"),
    ("actor/loss", "loss", ".4f"),
    ("time/generation", "t_gen_s", ".1f"),
    ("time/environment", "t_env_s", ".1f"),
    ("time/credit", "t_credit_s", ".2f"),
    ("time/update", "t_update_s", ".1f"),
    ("time/iteration", "t_iter_s", ".1f"),
)


class MetricsLog:
    """Appends iteration records to `path` (JSONL)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{self.path} line {number} is not JSON ({error.msg}): repair or delete the file, or start "
                        "the run over with --no-resume"
                    ) from None
        return records

    def truncate_after(self, iteration: int) -> None:
        """Keep only records of iterations <= `iteration` (those the checkpoint includes)."""
        kept = [record for record in self.read() if record["iteration"] <= iteration]
        self.path.write_text("".join(json.dumps(record) + "\n" for record in kept))

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def table_header() -> str:
    return " ".join(f"{header:>8}" for _, header, _ in TABLE_COLUMNS)


def table_row(record: dict[str, Any]) -> str:
    cells = []
    for key, header, number in TABLE_COLUMNS:
        value = record.get(key)
        text = "-" if value is None else format(value, number)
        cells.append(f"{text:>{max(len(header), 8)}}")
    return " ".join(cells)


def plot_learning_curve(records: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Success and invalid-action rates, loss and (SCPO runs) SCPO's credit diagnostics per iteration, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iterations = [record["iteration"] for record in records]

    def series(key: str) -> list[float]:
        return [record.get(key, math.nan) for record in records]

    with_scpo = any("credit/scpo/mean_credit" in record for record in records)
    figure, axes = plt.subplots(1, 3 if with_scpo else 2, figsize=(15 if with_scpo else 10, 4))
    rates, loss = axes[0], axes[1]
    rates.plot(iterations, series("rollout/success_rate"), marker="o", label="success rate")
    rates.plot(iterations, series("rollout/invalid_action_rate"), marker="s", label="invalid-action rate")
    rates.set_xlabel("iteration")
    rates.set_ylim(-0.05, 1.05)
    rates.legend()
    rates.grid(alpha=0.3)
    loss.plot(iterations, series("actor/loss"), marker="o", color="tab:red", label="actor loss")
    loss.set_xlabel("iteration")
    loss.legend()
    loss.grid(alpha=0.3)
    if with_scpo:
        credit = axes[2]
        credit.plot(
            iterations, series("credit/scpo/credited_failed_step_share"), marker="o", label="failed steps credited"
        )
        credit.plot(iterations, series("credit/scpo/mean_credit"), marker="s", label="mean credit (credited steps)")
        credit.set_ylim(-0.05, 1.05)
        credit.set_xlabel("iteration")
        credit.set_title("SCPO credit")
        groups = credit.twinx()
        groups.bar(iterations, series("credit/scpo/groups_with_reference"), alpha=0.2, color="tab:green")
        groups.set_ylabel("groups with a successful reference (bars)")
        credit.legend(loc="upper left")
        credit.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
