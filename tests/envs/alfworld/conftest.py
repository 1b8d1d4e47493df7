"""Generated ALFWorld games shared by the ALFWorld tests (cached on disk after the first run)."""

from __future__ import annotations

import pytest

from verl_agent_ext.envs.alfworld.games import generated_tasks
from verl_agent_ext.envs.base import Task


@pytest.fixture(scope="session")
def alfworld_tasks() -> list[Task]:
    """60 generated training tasks: 10 of each of the six task types."""
    return generated_tasks("train", per_type=10, seed=0)


@pytest.fixture(scope="session")
def task_per_type(alfworld_tasks: list[Task]) -> dict[str, Task]:
    """The first generated task of each task type."""
    first: dict[str, Task] = {}
    for task in alfworld_tasks:
        first.setdefault(task.task_type, task)
    return first
