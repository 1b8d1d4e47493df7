"""credit-eval's language-model mode end to end: the shipped SmolLM2 warm start plays real ALFWorld games through the
agent loop, the planner labels the replayed steps, the rows carry the model's responses and `--rows` reads them back.

Checks the pipeline, never which estimator wins.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from verl_agent_ext.cli import main
from verl_agent_ext.credit_eval.llm_rollouts import disjoint_tasks
from verl_agent_ext.credit_eval.rollouts import read_rows
from verl_agent_ext.envs.base import Task

POLICY = "alfworld-pick-smollm2-135m"


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    out = tmp_path_factory.mktemp("games")
    args = ["alfworld-generate", "--out", str(out), "--per-type", "1", "--seed", "9"]
    assert main([*args, "--task-types", "pick_and_place_simple"]) == 0
    return out


def test_llm_rows_carry_responses_and_labels(games, tmp_path, capsys):
    out = tmp_path / "llm"  # --no-cache: labels in memory (the converted model stays in the user's cache)
    args = ["credit-eval", "--policy", POLICY, "--games", str(games), "--tasks", "1", "--group-size", "2"]
    args += [
        "--max-steps",
        "3",
        "--response-length",
        "12",
        "--num-threads",
        "1",
        "--seed",
        "0",
        "--bootstrap",
        "0",
        "--no-cache",
    ]
    estimators = "grpo,scpo:scpo.matcher=exact:scpo.step_text=obs_response"
    assert main([*args, "--estimators", estimators, "--out", str(out)]) == 0
    assert "| scpo:scpo.matcher=exact:scpo.step_text=obs_response | 1 |" in capsys.readouterr().out

    rows = read_rows(out / "rows.jsonl.gz")
    assert len(set(rows["traj_uid"])) == 2 and len(set(rows["uid"])) == 1  # one group of two episodes
    assert 2 <= len(rows["uid"]) <= 6
    assert set(rows["epsilon"]) == {1.0}  # the temperature
    assert all(text.startswith("<action>") for text in rows["response_text"])  # the prefilled answer start
    valid = rows["is_action_valid"].astype(bool)
    for text, action in zip(rows["response_text"][valid], rows["action_text"][valid], strict=True):
        assert action in text  # a valid answer names its canonical action
    assert np.isfinite(rows["d_before"]).all() and (rows["d_before"] > 0).all()
    assert np.array_equal(rows["good"], valid & (rows["d_after"] < rows["d_before"]))
    assert (rows["step_entropy"] >= 0).all()
    result = json.loads((out / "credit_eval.json").read_text())
    assert result["settings"]["policy"] == POLICY and result["rollouts"]["rows"] == len(rows["uid"])

    again = tmp_path / "again"
    rerun = ["credit-eval", "--rows", str(out / "rows.jsonl.gz"), "--estimators", estimators, "--out", str(again)]
    assert main(rerun) == 0
    reread = json.loads((again / "credit_eval.json").read_text())
    assert reread["estimators"][estimators.split(",")[1]]["rows"] == len(rows["uid"])


def test_llm_settings_refused_before_anything_runs(tmp_path, capsys):
    base = ["credit-eval", "--policy", POLICY, "--out", str(tmp_path / "x")]
    for extra in (["--epsilon", "0.5"], ["--temperature", "0"], ["--env", "webshop"]):
        assert main([*base, *extra]) == 2
        assert capsys.readouterr().err.strip().count("\n") == 0  # one line
    assert not (tmp_path / "x").exists()


def test_seeds_play_disjoint_games():
    pool = [Task(env="alfworld", task_id=f"game-{i}", task_type="pick_and_place_simple") for i in range(24)]
    chosen = [disjoint_tasks(pool, 2, seed) for seed in range(10)]
    ids = [task.task_id for tasks in chosen for task in tasks]
    assert len(set(ids)) == 20 and chosen[3] == disjoint_tasks(list(reversed(pool)), 2, 3)
