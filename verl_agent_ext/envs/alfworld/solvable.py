"""Tasks the searching expert wins within a step budget: a curriculum filter for short episodes.

A policy warm-started on the searcher's demonstrations (`policies.SearchingExpert`, the data of the shipped adapter)
wins an episode cut at N steps mostly on games the searcher itself wins within N steps; on the other games every
episode of a group fails, so the group carries no signal for a group-relative estimator. `solvable_within` keeps the
tasks the searcher wins within the budget. The searcher is deterministic, so its step count per game is computed
once and cached ($VERL_AGENT_EXT_CACHE/alfworld/searcher_steps-v1.json, keyed by game file).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.alfworld.games import game_file
from verl_agent_ext.envs.alfworld.generator import cache_root
from verl_agent_ext.envs.alfworld.policies import make_searcher
from verl_agent_ext.envs.base import Task

SEARCH_LIMIT = 50  # steps the searcher gets per game (ALFWorld's usual episode limit)
CACHE_FILE = "searcher_steps-v1.json"  # bump the version when the searcher's behaviour changes


def searcher_steps(tasks: Sequence[Task], progress: Callable[[Task], None] | None = None) -> list[int | None]:
    """Steps the searcher needs to win each task (None: not won within `SEARCH_LIMIT`), cached per game file."""
    path = cache_root() / "alfworld" / CACHE_FILE
    cached: dict[str, int | None] = json.loads(path.read_text()) if path.is_file() else {}
    keys = [str(game_file(task.task_id).resolve()) for task in tasks]
    missing = [(key, task) for key, task in zip(keys, tasks, strict=True) if key not in cached]
    if missing:
        env = AlfworldEnv(max_steps=SEARCH_LIMIT)
        try:
            for key, task in missing:
                cached[key] = _play_searcher(env, task)
                if progress is not None:
                    progress(task)
        finally:
            env.close()
        _write_atomically(path, cached)
    return [cached[key] for key in keys]


def solvable_within(tasks: Sequence[Task], max_steps: int) -> list[Task]:
    """The tasks the searcher wins within `max_steps` steps, in their order (a progress bar while it plays)."""
    from tqdm import tqdm

    with tqdm(desc="searcher plays each game once (cached)", unit="game", disable=None, leave=False) as bar:
        steps = searcher_steps(tasks, progress=lambda task: bar.update())
    return [task for task, needed in zip(tasks, steps, strict=True) if needed is not None and needed <= max_steps]


def _play_searcher(env: AlfworldEnv, task: Task) -> int | None:
    policy = make_searcher(env)
    observation = env.reset(task)
    for step in range(1, SEARCH_LIMIT + 1):
        result = env.step(policy.act(observation))
        if result.won:
            return step
        if result.done:
            return None
        observation = result.observation
    return None


def _write_atomically(path: Path, data: dict) -> None:
    """Concurrent runs may each write the file: the rename keeps it whole (a lost update is only recomputed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".staging-", dir=path.parent)
    with os.fdopen(handle, "w") as out:
        json.dump(data, out, indent=0, sort_keys=True)
    os.replace(staging, path)
