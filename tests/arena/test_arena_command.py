"""`verl-agent-ext arena` end to end on a micro-task: real ALFWorld games, verl's estimators and actor loss, files.

Checks the pipeline and that the policy learns under GRPO; never which estimator wins.
"""

from __future__ import annotations

import json

import numpy as np

from verl_agent_ext.cli import main

MICRO = [
    "--set=arena.task_types=pick_and_place_simple",
    "--set=arena.train_per_type=2",
    "--set=arena.train_games=2",
    "--set=arena.heldout_per_type=1",
    "--set=arena.group_size=4",
    "--set=arena.groups_per_iter=2",
    "--set=arena.max_steps=15",
    "--set=arena.bc_steps=10",
    "--set=arena.lr=0.1",
    "--set=arena.eval_episodes=4",
]


def test_micro_arena_writes_files_and_grpo_learns(tmp_path, capsys):
    out = tmp_path / "arena"
    argv = ["arena", "--estimators", "grpo,gigpo", "--seeds", "0", "--episodes", "160", "--eval-every", "40"]
    assert main([*argv, *MICRO, "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| grpo |" in table and "| gigpo |" in table and "ΔAUC vs grpo" in table
    report = json.loads((out / "arena.json").read_text())
    assert (out / "arena.png").stat().st_size > 0
    runs = report["runs"]
    assert set(runs) == {"grpo", "gigpo"}
    for run in (runs["grpo"]["0"], runs["gigpo"]["0"]):
        assert run["episodes"] == [0, 40, 80, 120, 160]
        assert len(run["heldout_success"]) == 5 and len(run["train_success"]) == 20
        assert run["total_env_steps"] > 0 and run["wall_seconds"] > 0
    grpo = runs["grpo"]["0"]["train_success"]
    assert np.mean(grpo[-5:]) > np.mean(grpo[:5]) + 0.1  # GRPO's training success rises on the micro-task
    # resumable: a second call finds both runs and only rewrites the report; --report-only keeps finished seeds
    assert main([*argv, *MICRO, "--out", str(out)]) == 0
    assert json.loads((out / "arena.json").read_text())["runs"] == runs
    two_seeds = [("0,1" if arg == "0" else arg) for arg in argv]
    assert main([*two_seeds, *MICRO, "--report-only", "--out", str(out)]) == 0
    assert json.loads((out / "arena.json").read_text())["seeds"] == [0]


def test_webshop_arena_with_branching_3spo(tmp_path, capsys):
    out = tmp_path / "webshop"
    argv = ["arena", "--env", "webshop", "--estimators", "grpo,sspo", "--seeds", "0", "--episodes", "16"]
    settings = ["arena.train_per_type=8", "arena.heldout_per_type=4", "arena.group_size=4", "arena.groups_per_iter=2"]
    settings += ["arena.max_steps=8", "arena.eval_episodes=1", "arena.bc_steps=5"]
    assert main([*argv, "--eval-every", "8", *(f"--set={s}" for s in settings), "--out", str(out)]) == 0
    runs = json.loads((out / "arena.json").read_text())["runs"]
    assert runs["grpo"]["0"]["train_trajectories"] == [8, 8]  # one trajectory per session
    assert all(count >= 8 for count in runs["sspo"]["0"]["train_trajectories"])  # branching: trees of sessions
    assert "| sspo |" in capsys.readouterr().out


def test_bad_settings_stop_before_any_run(tmp_path, capsys):
    for bad in (
        ["--set", "arena.max_stepz=3"],
        ["--set", "algorithm.scpo.thetaa=0.5"],
        ["--estimators", "grpo,nope"],
        ["--seeds", "3-1"],
        ["--eval-every", "30"],
    ):
        assert main(["arena", "--out", str(tmp_path / "x"), *bad]) == 2
        assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "x" / "runs").exists()
