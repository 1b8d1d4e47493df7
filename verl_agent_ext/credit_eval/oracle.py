"""Oracle labels for ALFWorld: d(s) = length of a shortest plan from state s to the goal.

The plan comes from the Fast Downward search the planner expert uses (`AlfworldEnv.plan`), with every action
costing 1: an exhaustive uniform-cost (breadth-first) search, so d(s) is exactly the fewest actions to the goal.
Plans are cached on disk per (game, valid-action prefix), so a repeated evaluation (same seeds) never calls the
planner, and per (game, PDDL state), so the many prefixes that reach one state (looking around, walking back,
other seeds) plan once. A step that follows the plan needs no search: the rest of an optimal plan is optimal from
where it leads.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.alfworld.games import game_file
from verl_agent_ext.envs.alfworld.generator import cache_root

UNREACHABLE = math.inf  # d(s) of a state from which the planner finds no plan


def default_cache_dir() -> Path:
    """$VERL_AGENT_EXT_CACHE/credit_eval/plans (or ~/.cache/verl-agent-ext/credit_eval/plans)."""
    return cache_root() / "credit_eval" / "plans"


def game_key(task_id: str) -> str:
    """Content hash of a game's PDDL file: the cache stays valid when the folder moves."""
    return hashlib.sha256(game_file(task_id).read_bytes()).hexdigest()[:16]


def prefix_key(actions: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(actions).encode()).hexdigest()[:20]


def state_key(facts: frozenset[str]) -> str:
    return hashlib.sha256("\n".join(sorted(facts)).encode()).hexdigest()[:20]


class PlanOracle:
    """Shortest plans from the current state of an `AlfworldEnv`, cached.

    cache_dir: folder of one JSON file per game ({prefix hash: plan}); None keeps the cache in memory only.
    Counters: `planner_calls` (Fast Downward searches), `prefix_hits`, `state_hits`.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._games: dict[str, dict[str, dict[str, list[str]]]] = {}  # game -> {"prefix"|"state": key -> plan}
        self._dirty: set[str] = set()
        self.planner_calls = self.prefix_hits = self.state_hits = self.plan_suffixes = 0

    def plan(
        self, env: AlfworldEnv, game: str, prefix: Sequence[str], previous_plan: Sequence[str] | None = None
    ) -> list[str]:
        """The plan from env's current state, reached from the game's start by the valid actions `prefix`.

        previous_plan: the plan before the last action of `prefix`; when that action was its first step, the rest
        of it is returned without a search.
        """
        cache = self._game_cache(game)
        key = prefix_key(prefix)
        if key in cache["prefix"]:
            self.prefix_hits += 1
            return list(cache["prefix"][key])
        if previous_plan and prefix and previous_plan[0] == prefix[-1]:
            self.plan_suffixes += 1
            plan = list(previous_plan[1:])
        else:
            state = state_key(env.state_facts())
            if state in cache["state"]:
                self.state_hits += 1
                plan = cache["state"][state]
            else:
                self.planner_calls += 1
                plan = cache["state"][state] = env.plan(shortest=True)
        cache["prefix"][key] = plan
        self._dirty.add(game)
        return list(plan)

    @staticmethod
    def distance(plan: Sequence[str], won: bool) -> float:
        """d(s): 0 at the goal, the plan length elsewhere, UNREACHABLE when the planner found no plan."""
        if won:
            return 0.0
        return float(len(plan)) if plan else UNREACHABLE

    def save(self) -> None:
        """Write the new plans of every touched game (merged with what another process wrote meanwhile)."""
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for game in sorted(self._dirty):
            merged = self._read(game)
            for kind, plans in self._games[game].items():
                merged[kind].update(plans)
            handle, staging = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{game}-")
            with os.fdopen(handle, "w") as stream:
                json.dump(merged, stream)
            os.replace(staging, self.cache_dir / f"{game}.json")
        self._dirty.clear()

    def _game_cache(self, game: str) -> dict[str, dict[str, list[str]]]:
        if game not in self._games:
            self._games[game] = self._read(game)
        return self._games[game]

    def _read(self, game: str) -> dict[str, dict[str, list[str]]]:
        path = self.cache_dir / f"{game}.json" if self.cache_dir is not None else None
        cache = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        return cache if set(cache) == {"prefix", "state"} else {"prefix": {}, "state": {}}  # other layouts: ignored
