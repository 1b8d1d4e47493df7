"""One loader for generated folders and the official $ALFWORLD_DATA layout; clear errors when data is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.alfworld.games import generated_tasks, list_tasks, official_split_dir


def test_generated_tasks_cover_six_types_with_folder_ids(alfworld_tasks):
    assert len(alfworld_tasks) == 60
    for task in alfworld_tasks:
        assert task.env == "alfworld" and task.split == "train"
        folder = Path(task.task_id)
        assert (folder / "game.tw-pddl").is_file() and (folder / "traj_data.json").is_file()
        assert json.loads((folder / "traj_data.json").read_text())["task_type"] == task.task_type


def test_generated_splits_are_disjoint():
    train = generated_tasks("train", per_type=1)
    evaluation = generated_tasks("eval_in_distribution", per_type=1)
    problems = {json.loads((Path(t.task_id) / "game.tw-pddl").read_text())["pddl_problem"] for t in train}
    assert not problems & {
        json.loads((Path(t.task_id) / "game.tw-pddl").read_text())["pddl_problem"] for t in evaluation
    }
    assert all(t.split == "eval_in_distribution" for t in evaluation)


def fake_official_data(root: Path, games: list[Path]) -> Path:
    """$ALFWORLD_DATA/json_2.1.1/valid_seen/<task folder>/<trial>/ holding copies of generated games."""
    for i, game in enumerate(games):
        target = root / "json_2.1.1" / "valid_seen" / f"{game.parent.name}-task{i}" / "trial_T2019"
        shutil.copytree(game, target)
    return root


def test_official_layout_loads_through_the_same_loader(tmp_path, monkeypatch, task_per_type):
    games = [Path(task.task_id) for task in task_per_type.values()]
    root = fake_official_data(tmp_path, games)
    # An unsolvable game is skipped, as ALFWorld does.
    unsolvable = root / "json_2.1.1" / "valid_seen" / "broken" / "trial_T2020"
    shutil.copytree(games[0], unsolvable)
    game = json.loads((unsolvable / "game.tw-pddl").read_text())
    (unsolvable / "game.tw-pddl").write_text(json.dumps({**game, "solvable": False}))

    monkeypatch.setenv("ALFWORLD_DATA", str(root))
    tasks = list_tasks("eval_in_distribution")
    assert len(tasks) == 6 and {t.split for t in tasks} == {"eval_in_distribution"}
    assert not any("broken" in t.task_id for t in tasks)
    only_light = list_tasks("eval_in_distribution", task_types=["look_at_obj_in_light"])
    assert [t.task_type for t in only_light] == ["look_at_obj_in_light"]
    assert AlfworldEnv().reset(tasks[0]).admissible_actions


def test_missing_official_data_explains_the_download(tmp_path, monkeypatch):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="alfworld-download"):
        list_tasks("train")
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="valid_unseen.*alfworld-download"):
        official_split_dir("eval_out_of_distribution")


def test_bad_names_list_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="eval_in_distribution"):
        list_tasks("valid", games_dir=tmp_path)
    with pytest.raises(ValueError, match="pick_two_obj_and_place"):
        list_tasks("train", games_dir=tmp_path, task_types=["pick_nothing"])
    with pytest.raises(FileNotFoundError, match="no playable"):
        list_tasks("train", games_dir=tmp_path)
