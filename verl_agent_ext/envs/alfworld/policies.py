"""Scripted ALFWorld policies for smoke tests and `verl-agent-ext play`.

expert: ALFWorld's planner expert: Fast Downward plans from the current engine state (what ALFWorld's
    `AlfredExpert(expert_type="planner")` reads as `policy_commands`); the plan is reused while the episode follows
    it and recomputed whenever the state moved some other way.
random: a uniformly random admissible action (seeded).
"""

from __future__ import annotations

import random

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


def make_random(env: TextEnv, seed: int = 0) -> RandomPolicy:
    """A random admissible-action policy."""
    _alfworld(env)
    return RandomPolicy(seed)
