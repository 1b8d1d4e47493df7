"""credit-eval on WebShop (generated catalog): expert-path labels, varied search queries, the command end to end.

Checks the pipeline, never which estimator wins.
"""

from __future__ import annotations

import json
import random

import numpy as np

from verl_agent_ext.cli import main
from verl_agent_ext.credit_eval.rollouts import RolloutSpec
from verl_agent_ext.credit_eval.webshop import (
    EXPERT_QUERY_STYLES,
    NOISY_QUERY_STYLES,
    rollout_rows,
    solvable_tasks,
    write_query,
)
from verl_agent_ext.envs.webshop.env import WebShopEnv
from verl_agent_ext.envs.webshop.tasks import list_tasks


def test_expert_steps_are_good_and_distances_chain():
    env = WebShopEnv()
    pool = solvable_tasks(env, list_tasks("train", limit=12), max_steps=15)
    assert pool
    expert = rollout_rows(RolloutSpec(epsilon=0.0, seed=0, tasks=3, group_size=2, max_steps=15), pool, env)
    assert expert["episode_success"].all() and expert["good"].all()
    assert (expert["progress"] == 1.0).all()  # each expert step shortens the expert path by one

    mixed = rollout_rows(RolloutSpec(epsilon=0.6, seed=1, tasks=3, group_size=4, max_steps=10), pool, env)
    same = mixed["traj_uid"][1:] == mixed["traj_uid"][:-1]
    assert np.array_equal(mixed["d_after"][:-1][same], mixed["d_before"][1:][same])
    assert np.array_equal(mixed["good"], mixed["progress"] > 0)
    assert (~mixed["good"]).any() and mixed["good"].any()
    searches = [a for a in mixed["action_text"] if a.startswith("search[")]
    assert len(set(searches)) > 1  # queries vary


def test_query_styles_keep_the_goal_and_vary_the_words():
    goal = WebShopEnv().catalog.goals[int(list_tasks("train", limit=1)[0].task_id)]
    queries = {
        style: write_query(goal, style, random.Random(0), ["extra one", "extra two"])
        for style in EXPERT_QUERY_STYLES + NOISY_QUERY_STYLES
    }
    assert all(queries.values()) and len(set(queries.values())) >= len(queries) - 2
    assert sorted(queries["reordered"].split()) == sorted(queries["instruction"].split())
    assert "extra" in queries["extra"]


def test_command_on_webshop(tmp_path, capsys):
    out = tmp_path / "eval"
    estimators = "grpo,gigpo,scpo:scpo.matcher=exact,scpo:scpo.matcher=exact:scpo.step_text=action"
    args = ["credit-eval", "--env", "webshop", "--estimators", estimators, "--epsilon", "0.5", "--tasks", "3"]
    args += ["--group-size", "4", "--max-steps", "10", "--seed", "0", "--bootstrap", "10", "--out", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().out.count("| scpo:scpo.matcher=exact | 0.5 |") == 1
    result = json.loads((out / "credit_eval.json").read_text())
    assert result["settings"]["env"] == "webshop" and set(result["estimators"]) == set(estimators.split(","))
    assert result["rollouts"]["rows"] > 0 and (out / "rows.jsonl.gz").is_file()
    assert main(["credit-eval", "--env", "webshop", "--paraphrase", "--out", str(tmp_path / "x")]) == 2
