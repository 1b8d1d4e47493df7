"""The per-iteration table and learning curve show SCPO's credit diagnostics when the run has them."""

from __future__ import annotations

from verl_agent_ext.local.metrics import plot_learning_curve, table_header, table_row


def record(iteration: int, **extra: float) -> dict:
    return {
        "iteration": iteration,
        "rollout/success_rate": 0.25,
        "rollout/invalid_action_rate": 0.1,
        "actor/loss": 0.01,
        **extra,
    }


def test_table_has_the_scpo_credit_columns():
    header = table_header().split()
    assert header[5:8] == ["scpo_cred", "scpo_mean", "scpo_refs"]
    scpo = {
        "credit/scpo/credited_failed_step_share": 0.4,
        "credit/scpo/mean_credit": 0.62,
        "credit/scpo/groups_with_reference": 2.0,
    }
    cells = table_row(record(1, **scpo)).split()
    assert cells[5:8] == ["0.40", "0.62", "2"]
    assert table_row(record(1)).split()[5:8] == ["-", "-", "-"]  # other estimators: no SCPO diagnostics


def test_learning_curve_gets_an_scpo_panel_only_for_scpo_runs(tmp_path):
    scpo = {"credit/scpo/credited_failed_step_share": 0.4, "credit/scpo/mean_credit": 0.6}
    plot_learning_curve([record(1, **scpo), record(2, **scpo)], tmp_path / "scpo.png")
    plot_learning_curve([record(1), record(2)], tmp_path / "grpo.png")
    from PIL import Image

    assert Image.open(tmp_path / "scpo.png").width > Image.open(tmp_path / "grpo.png").width
