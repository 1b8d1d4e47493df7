"""Find ALFWorld games on disk: generated folders and the official `$ALFWORLD_DATA` splits, one loader for both.

A game is a folder holding `game.tw-pddl` and `traj_data.json` (the official layout). `Task.task_id` is the folder
path and `Task.task_type` the ALFWorld task type:

    list_tasks("train", games_dir="/data/alfworld_gen")      # a generated folder (any depth)
    list_tasks("eval_out_of_distribution")                   # official: $ALFWORLD_DATA/json_2.1.1/valid_unseen
    generated_tasks("train", per_type=10, seed=0)            # cached default generated set (no manual step)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from verl_agent_ext.envs.alfworld.generator import TASK_TYPES, GeneratorConfig, default_games_dir
from verl_agent_ext.envs.base import Task

ENV_NAME = "alfworld"
# Our split names -> the official folder names under $ALFWORLD_DATA/json_2.1.1.
OFFICIAL_SPLITS = {
    "train": "train",
    "eval_in_distribution": "valid_seen",
    "eval_out_of_distribution": "valid_unseen",
}
# Generated splits differ by seed offset. As in ALFWorld, train and eval_in_distribution use the same (seen) rooms
# and eval_out_of_distribution ALFRED's held-out rooms, here also with more receptacles and distractors.
GENERATED_SPLIT_SEED_OFFSET = {"train": 0, "eval_in_distribution": 7_919, "eval_out_of_distribution": 104_729}
GENERATED_SPLIT_CONFIG = {
    "train": GeneratorConfig(),
    "eval_in_distribution": GeneratorConfig(),
    "eval_out_of_distribution": GeneratorConfig(
        max_receptacles=16, distractors=10, extra_targets=1, closed_target_prob=0.5, rooms="unseen"
    ),
}
DOWNLOAD_HINT = (
    "download the official ALFWorld data with `alfworld-download` (from `pip install alfworld`), then set "
    "ALFWORLD_DATA to the folder holding json_2.1.1/; or use generated games: "
    "`verl-agent-ext alfworld-generate --out DIR` and pass that folder"
)


def _check_split(split: str) -> None:
    if split not in OFFICIAL_SPLITS:
        raise ValueError(f"unknown ALFWorld split {split!r}; valid names: {list(OFFICIAL_SPLITS)}")


def official_split_dir(split: str, data_root: str | os.PathLike | None = None) -> Path:
    """The official folder of `split` ($ALFWORLD_DATA/json_2.1.1/<train|valid_seen|valid_unseen>).

    Raises FileNotFoundError with the download instruction when the data is not there.
    """
    _check_split(split)
    root = data_root if data_root is not None else os.environ.get("ALFWORLD_DATA")
    if not root:
        raise FileNotFoundError(f"official ALFWorld data requested but ALFWORLD_DATA is not set: {DOWNLOAD_HINT}")
    folder = Path(root).expanduser() / "json_2.1.1" / OFFICIAL_SPLITS[split]
    if not folder.is_dir():
        raise FileNotFoundError(f"official ALFWorld split {split!r} not found at {folder}: {DOWNLOAD_HINT}")
    return folder


def read_traj_data(game_folder: str | os.PathLike) -> dict[str, Any]:
    """traj_data.json of a game folder."""
    return json.loads((Path(game_folder) / "traj_data.json").read_text())


def game_file(task_id: str | os.PathLike) -> Path:
    """The game.tw-pddl of a task id (a game folder, or the game file itself)."""
    path = Path(task_id)
    path = path if path.suffix == ".tw-pddl" else path / "game.tw-pddl"
    if not path.is_file():
        raise FileNotFoundError(f"ALFWorld game file not found: {path}")
    return path


def _is_playable(folder: Path) -> bool:
    """Official games marked unsolvable, and movable/sliced variants ALFWorld itself skips, are left out."""
    if "movable" in folder.as_posix() or "Sliced" in folder.as_posix():
        return False
    game = folder / "game.tw-pddl"
    if not game.is_file():
        return False
    # The "solvable" key sits at the end of official files; reading the whole JSON is the simple, exact way.
    return bool(json.loads(game.read_text()).get("solvable", False))


def list_tasks(
    split: str = "train", games_dir: str | os.PathLike | None = None, task_types: Iterable[str] | None = None
) -> list[Task]:
    """Every playable game under `games_dir` (or the official `split` folder when None), sorted by path.

    split: the name recorded in each Task ("train", "eval_in_distribution", "eval_out_of_distribution").
    task_types: keep only these ALFWorld task types (default: all six).
    """
    _check_split(split)
    wanted = set(task_types) if task_types is not None else set(TASK_TYPES)
    unknown = wanted - set(TASK_TYPES)
    if unknown:
        raise ValueError(f"unknown ALFWorld task types {sorted(unknown)}; valid names: {list(TASK_TYPES)}")
    root = Path(games_dir) if games_dir is not None else official_split_dir(split)
    if not root.is_dir():
        raise FileNotFoundError(f"ALFWorld games folder not found: {root}")
    tasks = []
    for traj_file in sorted(root.rglob("traj_data.json")):
        folder = traj_file.parent
        task_type = json.loads(traj_file.read_text())["task_type"]
        if task_type in wanted and _is_playable(folder):
            tasks.append(Task(env=ENV_NAME, task_id=str(folder), task_type=task_type, split=split))
    if not tasks:
        raise FileNotFoundError(f"no playable ALFWorld games (game.tw-pddl + traj_data.json) under {root}")
    return tasks


def generated_tasks(split: str = "train", per_type: int = 10, seed: int = 0, progress=None) -> list[Task]:
    """Tasks of a cached generated split (generated on first use, see `generator.default_games_dir`).

    The three splits use disjoint seeds; eval_out_of_distribution is played in ALFRED's held-out rooms, with more
    receptacles and distractors (`GENERATED_SPLIT_CONFIG`).
    """
    _check_split(split)
    config = GENERATED_SPLIT_CONFIG[split]
    folder = default_games_dir(per_type, seed + GENERATED_SPLIT_SEED_OFFSET[split], config, progress=progress)
    return list_tasks(split, games_dir=folder)
