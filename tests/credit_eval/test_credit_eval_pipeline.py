"""credit-eval end to end on real ALFWorld games: oracle labels, behaviour rollouts, registry estimators, files.

Checks the pipeline, never which estimator wins.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from verl_agent_ext.cli import main
from verl_agent_ext.credit_eval.oracle import PlanOracle
from verl_agent_ext.credit_eval.rollouts import RolloutSpec, mixture_entropy, rollout_rows
from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.alfworld.games import list_tasks

METRIC_KEYS = ("auc_all", "auc_failed", "auc_success", "good_positive_failed", "bad_positive_failed", "spearman")


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    out = tmp_path_factory.mktemp("games")
    assert main(["alfworld-generate", "--out", str(out), "--per-type", "1", "--seed", "9"]) == 0
    return out


def test_expert_steps_are_all_good_and_labels_chain(games):
    env = AlfworldEnv(max_steps=30)
    pool = list_tasks("train", games_dir=games)
    oracle = PlanOracle(cache_dir=None)
    expert = rollout_rows(RolloutSpec(epsilon=0.0, seed=0, tasks=6, group_size=1, max_steps=30), pool, env, oracle)
    assert set(expert["task_type"]) == {task.task_type for task in pool}  # all six task types
    assert expert["episode_success"].all() and expert["good"].all()
    assert (expert["progress"] == 1.0).all()  # an optimal plan shortens by exactly one per expert step
    assert (expert["step_entropy"] == 0.0).all()

    mixed = rollout_rows(RolloutSpec(epsilon=0.75, seed=1, tasks=3, group_size=3, max_steps=6), pool, env, oracle)
    env.close()
    same_trajectory = mixed["traj_uid"][1:] == mixed["traj_uid"][:-1]
    assert np.array_equal(mixed["d_after"][:-1][same_trajectory], mixed["d_before"][1:][same_trajectory])
    assert np.array_equal(mixed["next_anchor_obs"][:-1][same_trajectory], mixed["anchor_obs"][1:][same_trajectory])
    assert (~mixed["good"]).any() and (mixed["progress"] <= 1.0).all()
    assert np.array_equal(mixed["good"], mixed["progress"] > 0)
    assert (mixed["step_entropy"] > 0).all()
    assert oracle.state_hits > 0  # different action prefixes reach the same state: planned once


def test_mixture_entropy():
    assert mixture_entropy(4, True, 0.0) == 0.0
    assert mixture_entropy(4, True, 1.0) == pytest.approx(np.log(4))
    p = 0.5 + 0.5 / 4
    q = 0.5 / 4
    assert mixture_entropy(4, True, 0.5) == pytest.approx(-(p * np.log(p) + 3 * q * np.log(q)))


def test_command_writes_table_json_and_plot(games, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VERL_AGENT_EXT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    estimators = "grpo,gigpo,gigpo:gigpo.mode=mean_std_norm,scpo:scpo.matcher=exact"
    args = ["credit-eval", "--games", str(games), "--estimators", estimators, "--epsilon", "0.25,0.75"]
    args += ["--tasks", "2", "--group-size", "3", "--max-steps", "5", "--seed", "0", "--bootstrap", "20"]
    args += ["--out", str(out), "--set", "algorithm.scpo.alpha=2.0"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert table.count("| scpo:scpo.matcher=exact | ") == 2  # one row per epsilon
    result = json.loads((out / "credit_eval.json").read_text())
    assert set(result["estimators"]) == set(estimators.split(","))
    for metrics in result["estimators"].values():
        for key in (*METRIC_KEYS, "rows", "seconds", "auc_failed_within_group", "per_task_type", "ci95"):
            assert key in metrics
        assert set(metrics["by_epsilon"]) == {"0.25", "0.75"}
        assert metrics["rows"] == result["rollouts"]["rows"]
    assert result["rollouts"]["planner_calls"] > 0
    assert (out / "credit_eval.png").stat().st_size > 10_000

    # a second run of the same seeds reads every label from the cache
    assert main(args) == 0
    assert json.loads((out / "credit_eval.json").read_text())["rollouts"]["planner_calls"] == 0

    # the saved labelled rows evaluate again without rolling out, same numbers
    again = tmp_path / "again"
    assert main(["credit-eval", "--rows", str(out / "rows.jsonl.gz"), "--estimators", "grpo", "--out", str(again)]) == 0
    grpo = json.loads((again / "credit_eval.json").read_text())["estimators"]["grpo"]
    assert grpo["auc_all"] == pytest.approx(result["estimators"]["grpo"]["auc_all"])
    assert grpo["rows"] == result["rollouts"]["rows"]


def test_paraphrase_mode_rewrites_texts_per_trajectory_and_keeps_labels(games, tmp_path):
    from verl_agent_ext.credit_eval.paraphrase import STYLES, paraphrase_rows
    from verl_agent_ext.credit_eval.rollouts import read_rows

    out = tmp_path / "rows"
    args = ["credit-eval", "--games", str(games), "--estimators", "grpo", "--epsilon", "0.5", "--tasks", "2"]
    args += ["--group-size", "4", "--max-steps", "6", "--seed", "0", "--bootstrap", "0", "--no-cache"]
    assert main([*args, "--out", str(out)]) == 0
    rows = read_rows(out / "rows.jsonl.gz")
    para = paraphrase_rows(rows, seed=0)
    for key in ("good", "progress", "uid", "traj_uid", "step_index", "episode_success"):
        assert np.array_equal(para[key], rows[key])
    assert set(para["paraphrase_style"]) <= set(STYLES) and len(set(para["paraphrase_style"])) > 1
    for traj in set(rows["traj_uid"]):  # one style per trajectory
        assert len(set(para["paraphrase_style"][rows["traj_uid"] == traj])) == 1
    rewritten = para["paraphrase_style"] != "template"
    assert (para["action_text"][rewritten] != rows["action_text"][rewritten]).mean() > 0.9
    for before, after in zip(rows["anchor_obs"], para["anchor_obs"], strict=True):  # numbered things survive
        assert sorted(re.findall(r"[a-z]+ \d+", before)) == sorted(re.findall(r"[a-z]+ \d+", after))

    scored = tmp_path / "scored"
    estimators = "scpo:scpo.matcher=exact,scpo:scpo.matcher=static"
    command = ["credit-eval", "--rows", str(out / "rows.jsonl.gz"), "--paraphrase", "--estimators", estimators]
    assert main([*command, "--bootstrap", "0", "--out", str(scored)]) == 0
    result = json.loads((scored / "credit_eval.json").read_text())
    assert result["settings"]["paraphrase"] and set(result["estimators"]) == set(estimators.split(","))


def test_unknown_estimator_lists_the_registered_ones(tmp_path, capsys):
    assert main(["credit-eval", "--estimators", "grpo,magic", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error:") and "magic" in error and "'gigpo'" in error and "'grpo'" in error
    assert main(["credit-eval", "--estimators", "scpo:scpo.thetaa=0.9", "--out", str(tmp_path)]) == 2
    assert "theta" in capsys.readouterr().err
