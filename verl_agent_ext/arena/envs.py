"""The arena's environments: disjoint training and held-out tasks, an environment, and a demonstrator.

ALFWorld: generated games on the real engine behind its exact transition cache (`CachedAlfworldEnv`, tables kept
on disk), all six task types (or `task_types`); training games from the generated "train" split, held-out games
from "eval_in_distribution" (disjoint seeds, same kind of rooms; `train_heldout_tasks`). The demonstrator of the
warm start is the searching expert (`envs.alfworld.policies.SearchingExpert`). Candidates: the admissible commands.

WebShop: the default generated catalog; training goals from its "train" split, held-out goals from "test"
(`train_per_type` / `heldout_per_type` count goals here). Candidates: on the search page a few search queries
built from the instruction alone, elsewhere the page's clickables (`envs.webshop.candidates`). The demonstrator is
the oracle expert (`envs.webshop.policies.WebShopExpert`); its steps outside the candidates are not imitated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from verl_agent_ext.envs.base import Observation, Policy, Task, TextEnv

ARENA_ENVS = ("alfworld", "webshop")


@dataclass
class ArenaEnvironment:
    """train / heldout: task lists (disjoint); make_env(): a fresh TextEnv; demonstrator(env): a Policy;
    candidates(observation): the actions the policy chooses among (never empty)."""

    name: str
    train: list[Task]
    heldout: list[Task]
    make_env: Callable[[], TextEnv]
    demonstrator: Callable[[TextEnv], Policy]
    candidates: Callable[[Observation], tuple[str, ...]]


def arena_environment(
    name: str, train_per_type: int, heldout_per_type: int, max_steps: int, task_types: tuple[str, ...] = ()
) -> ArenaEnvironment:
    """The environment `name` (one of ARENA_ENVS) with its task splits; max_steps: the env's step limit."""
    if name == "alfworld":
        return _alfworld(train_per_type, heldout_per_type, max_steps, task_types)
    if name == "webshop":
        return _webshop(train_per_type, heldout_per_type, max_steps)
    raise ValueError(f"unknown arena environment {name!r}; valid names: {list(ARENA_ENVS)}")


def _alfworld(train_per_type: int, heldout_per_type: int, max_steps: int, task_types: tuple[str, ...]):
    from verl_agent_ext.envs.alfworld.cached import CachedAlfworldEnv, train_heldout_tasks
    from verl_agent_ext.envs.alfworld.generator import TASK_TYPES
    from verl_agent_ext.envs.alfworld.policies import SearchingExpert

    unknown = sorted(set(task_types) - set(TASK_TYPES))
    if unknown:
        raise ValueError(f"unknown ALFWorld task types {unknown}; valid names: {list(TASK_TYPES)}")
    wanted = set(task_types or TASK_TYPES)
    train, heldout = train_heldout_tasks(train_per_type, heldout_per_type)
    train, heldout = [t for t in train if t.task_type in wanted], [t for t in heldout if t.task_type in wanted]
    # one loaded engine per game (up to 32, ~10 MB each): a cache miss on any game then costs no reload (~0.3 s)
    engines = min(max(len(train) + len(heldout), 16), 32)
    return ArenaEnvironment(
        name="alfworld",
        train=train,
        heldout=heldout,
        make_env=lambda: CachedAlfworldEnv(max_steps=max_steps, persist=True, max_engines=engines),
        demonstrator=SearchingExpert,
        candidates=_admissible,
    )


def _admissible(observation: Observation) -> tuple[str, ...]:
    return observation.admissible_actions or ("look",)


def _webshop(train_goals: int, heldout_goals: int, max_steps: int) -> ArenaEnvironment:
    from verl_agent_ext.envs.webshop.candidates import candidate_actions
    from verl_agent_ext.envs.webshop.env import WebShopEnv
    from verl_agent_ext.envs.webshop.policies import WebShopExpert
    from verl_agent_ext.envs.webshop.tasks import list_tasks

    return ArenaEnvironment(
        name="webshop",
        train=list_tasks("train", limit=train_goals),
        heldout=list_tasks("test", limit=heldout_goals),
        make_env=lambda: WebShopEnv(max_steps=max_steps),
        demonstrator=WebShopExpert,
        candidates=candidate_actions,
    )
