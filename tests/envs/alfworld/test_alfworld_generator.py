"""The game generator: all six task types, deterministic, official layout, solvable, knobs validated."""

from __future__ import annotations

import json

import pytest

from verl_agent_ext.envs.alfworld.generator import (
    TASK_TYPES,
    UNSEEN_FLOOR_PLANS,
    GeneratorConfig,
    generate_game,
    iter_generate,
    mangle,
)


def test_mangle_matches_official_names():
    assert mangle("Sink|-01.90|+00.97|-01.50|SinkBasin") == (
        "Sink_bar__minus_01_dot_90_bar__plus_00_dot_97_bar__minus_01_dot_50_bar_SinkBasin"
    )


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_each_task_type_yields_a_solvable_official_style_game(task_type):
    files = generate_game(task_type, seed=11)
    game, traj = files["game"], files["traj_data"]
    assert set(game) >= {"pddl_domain", "grammar", "pddl_problem", "solvable", "walkthrough"}
    assert game["solvable"] and game["walkthrough"]
    assert "UNKNOWN GOAL" not in game["grammar"]
    assert traj["task_type"] == task_type
    params = traj["pddl_params"]
    assert set(params) == {"object_target", "parent_target", "toggle_target", "mrecep_target", "object_sliced"}
    assert (params["toggle_target"] != "") == (task_type == "look_at_obj_in_light")
    assert (params["parent_target"] == "") == (task_type == "look_at_obj_in_light")
    assert params["object_target"].lower() in traj["turk_annotations"]["anns"][0]["task_desc"]


def test_same_seed_same_game_other_seed_other_game():
    first = generate_game("pick_cool_then_place_in_recep", seed=4)
    assert first == generate_game("pick_cool_then_place_in_recep", seed=4)
    other = generate_game("pick_cool_then_place_in_recep", seed=5)
    assert first["game"]["pddl_problem"] != other["game"]["pddl_problem"]


def test_knobs_change_room_size():
    small = generate_game("pick_and_place_simple", 2, GeneratorConfig(max_receptacles=4, distractors=0))
    large = generate_game("pick_and_place_simple", 2, GeneratorConfig(max_receptacles=20, distractors=12))

    def count(files, kind):
        return files["game"]["pddl_problem"].count(f" - {kind}\n")

    assert count(small, "receptacle") < count(large, "receptacle")
    assert count(small, "object") < count(large, "object")


def test_closed_containers_knob():
    config = GeneratorConfig(closed_target_prob=1.0)
    files = generate_game("pick_heat_then_place_in_recep", 3, config)
    first_steps = files["game"]["walkthrough"]
    assert any(step.startswith("open ") for step in first_steps)


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_unseen_rooms_host_every_task_type_and_seen_rooms_exclude_them(task_type):
    unseen = generate_game(task_type, 1, GeneratorConfig(rooms="unseen"))["traj_data"]["scene"]["floor_plan"]
    assert unseen in UNSEEN_FLOOR_PLANS
    seen = {generate_game(task_type, seed)["traj_data"]["scene"]["floor_plan"] for seed in range(3)}
    assert not seen & UNSEEN_FLOOR_PLANS


def test_bad_input_errors_list_valid_values():
    with pytest.raises(ValueError, match="pick_and_place_simple"):
        generate_game("make_coffee", seed=0)
    with pytest.raises(ValueError, match="max_receptacles"):
        GeneratorConfig(max_receptacles=1)
    with pytest.raises(ValueError, match="closed_target_prob"):
        GeneratorConfig(closed_target_prob=1.5)
    with pytest.raises(ValueError, match="unseen"):
        GeneratorConfig(rooms="outdoors")


def test_written_layout(tmp_path):
    games = list(iter_generate(tmp_path, per_type=1, seed=3, task_types=("pick_two_obj_and_place",)))
    assert [g.path for g in games] == [tmp_path / "pick_two_obj_and_place" / "3-00000"]
    folder = games[0].path
    assert json.loads((folder / "traj_data.json").read_text())["task_type"] == "pick_two_obj_and_place"
    assert json.loads((folder / "game.tw-pddl").read_text())["solvable"] is True


def test_missing_alfworld_extra_says_how_to_install(monkeypatch):
    import sys

    from verl_agent_ext.envs.alfworld.engine import require_alfworld

    monkeypatch.setitem(sys.modules, "alfworld", None)
    with pytest.raises(ImportError, match=r"verl-agent-ext\[alfworld\]"):
        require_alfworld()
