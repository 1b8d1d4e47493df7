"""`verl-agent-ext play` and `verl-agent-ext alfworld-generate` as a user runs them."""

from __future__ import annotations

from verl_agent_ext.cli import main


def test_generate_then_play_expert_and_random(tmp_path, capsys):
    out = tmp_path / "games"
    assert main(["alfworld-generate", "--out", str(out), "--per-type", "1", "--seed", "9"]) == 0
    assert len(list(out.rglob("game.tw-pddl"))) == 6

    assert main(["play", "--env", "alfworld", "--policy", "expert", "--episodes", "6", "--games", str(out)]) == 0
    table = capsys.readouterr().out
    assert "pick_heat_then_place_in_recep" in table
    assert table.splitlines()[-2].split()[:3] == ["all", "6", "100.0%"]

    args = ["play", "--env", "alfworld", "--policy", "random", "--episodes", "3", "--games", str(out)]
    assert main([*args, "--max-steps", "5"]) == 0
    assert "3 episodes" in capsys.readouterr().out


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    assert main(["alfworld-generate", "--out", str(tmp_path), "--task-types", "make_tea"]) == 2
    assert "valid names" in capsys.readouterr().err
    assert main(["play", "--env", "minecraft", "--episodes", "1"]) == 2
    assert "alfworld" in capsys.readouterr().err


def test_play_dispatches_to_webshop(capsys):
    assert main(["play", "--env", "webshop", "--policy", "random", "--episodes", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[-2].split()[:2] == ["all", "3"]
