"""Scripted ALFWorld policies for smoke tests and `verl-agent-ext play`.

expert: ALFWorld's planner expert: Fast Downward plans from the current engine state (what ALFWorld's
    `AlfredExpert(expert_type="planner")` reads as `policy_commands`); the plan is reused while the episode follows
    it and recomputed whenever the state moved some other way.
searcher: the planner expert without its knowledge of where objects are: until an object the plan takes has been
    seen, it opens the closed receptacle it stands at or goes to the next receptacle in the listed order of the
    `go to` actions; every decision reads only what the agent's prompt shows (no history needed), so its
    demonstrations can be imitated.
random: a uniformly random admissible action (seeded).
"""

from __future__ import annotations

import random
import re

from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.base import Observation, TextEnv


class PlannerExpert:
    """Follows an optimal plan of the game bound to `env`."""

    def __init__(self, env: AlfworldEnv) -> None:
        self.env = env
        self._plan: list[str] = []
        self._plan_position: tuple[object, int] | None = None  # (task, steps_taken) the plan continues from

    def act(self, observation: Observation) -> str:
        position = (self.env.current_task, self.env.steps_taken)
        if position != self._plan_position or not self._plan:
            self._plan = self.env.plan()
        action = self._plan.pop(0) if self._plan else "look"
        self._plan_position = (position[0], position[1] + 1)
        return action


class SearchingExpert:
    """Searches for the object the plan takes next, then follows the plan (see the module docstring).

    The plan is recomputed every step (the search moves the state off it). "Seen" means the object's class
    ("creditcard" of "creditcard 1") appeared in an observation of this episode; then the plan decides. The search
    order is the admissible actions' listed (sorted) order: from the middle of the room the first listed receptacle,
    then always the one listed after the receptacle the agent stands at (wrapping around), so the next move is a
    function of the current prompt alone, which a policy without history can learn.
    """

    def __init__(self, env: AlfworldEnv) -> None:
        self.env = env
        self._task: object = None
        self._seen = ""  # the episode's observation texts
        self._visited: set[str] = set()
        self._opened: set[str] = set()
        self._here: str | None = None  # the receptacle it went to last (None: the middle of the room)

    def act(self, observation: Observation) -> str:
        if self.env.current_task is not self._task or self.env.steps_taken == 0:
            self._task, self._seen, self._visited, self._opened = self.env.current_task, "", set(), set()
            self._here = None
        self._seen += " " + observation.text
        plan = self.env.plan()
        action = plan[0] if plan else "look"
        wanted = next((step.split(" from ")[0][len("take ") :] for step in plan if step.startswith("take ")), None)
        if wanted is not None and action.startswith("go to "):
            kind = re.escape(re.sub(r" \d+$", "", wanted))
            visible = [a for a in observation.admissible_actions if re.match(rf"take {kind} \d+ from ", a)]
            if visible:
                action = visible[0]
            elif not re.search(rf"\b{kind} \d+\b", self._seen):
                action = self._explore(observation)
        if action.startswith("go to "):
            self._here = action[len("go to ") :]
            self._visited.add(self._here)
        elif action.startswith("open "):
            self._opened.add(action[len("open ") :])
        return action

    def _explore(self, observation: Observation) -> str:
        """Open the closed receptacle here (once), else go to an unvisited receptacle."""
        here = re.search(r"The (.+ \d+) is closed\.", observation.text)
        if here and here.group(1) not in self._opened and f"open {here.group(1)}" in observation.admissible_actions:
            return f"open {here.group(1)}"
        moves = [a for a in observation.admissible_actions if a.startswith("go to ")]
        if not moves:
            return "look"
        # TextWorld lists admissible actions sorted; the one it stands at is not listed
        after = [a for a in moves if self._here is not None and a > f"go to {self._here}"]
        ordered = after + [a for a in moves if a not in after]  # listed after here first, then wrap around
        return next((a for a in ordered if a[len("go to ") :] not in self._visited), ordered[0])


class RandomPolicy:
    """A uniformly random admissible action."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def act(self, observation: Observation) -> str:
        return self.rng.choice(observation.admissible_actions) if observation.admissible_actions else "look"


def _alfworld(env: TextEnv) -> AlfworldEnv:
    if not isinstance(env, AlfworldEnv):
        raise TypeError(f"ALFWorld policies need an AlfworldEnv, got {type(env).__name__}")
    return env


def make_expert(env: TextEnv, seed: int = 0) -> PlannerExpert:
    """The planner expert bound to `env` (deterministic: `seed` is unused)."""
    return PlannerExpert(_alfworld(env))


def make_searcher(env: TextEnv, seed: int = 0) -> SearchingExpert:
    """The searching expert bound to `env` (deterministic: `seed` is unused)."""
    return SearchingExpert(_alfworld(env))


def make_random(env: TextEnv, seed: int = 0) -> RandomPolicy:
    """A random admissible-action policy."""
    _alfworld(env)
    return RandomPolicy(seed)
