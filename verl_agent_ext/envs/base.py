"""The environment contract every text environment implements (ALFWorld, WebShop, ...).

Environments know nothing of verl, Ray or the credit layer. One `TextEnv` instance plays one episode at a time:

    obs = env.reset(task)                 # Observation
    result = env.step("go to fridge 1")   # StepResult: never raises on bad action text
    obs = env.replay(["go to fridge 1"])  # deterministic restore: reset(task) + the same actions

Agent-facing text (prompt template, action parsing) is part of each environment package too, behind
`format_prompt` / `parse_action`, so the agent loop stays environment-agnostic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Task:
    """One task a group of rollouts plays: a dataset row names it.

    env: environment name in the registry ("alfworld", "webshop").
    task_id: what the environment needs to load it (ALFWorld: game folder; WebShop: goal index as text).
    task_type: category for per-type metrics (ALFWorld: "pick_and_place_simple", ...; WebShop: product category).
    split: "train", "eval_in_distribution", "eval_out_of_distribution", ...
    data_fingerprint: the data the task was listed from (WebShop: the catalog's `fingerprint`), checked by the
        environment at reset so rows prepared from one catalog never play against another; "" = not checked.
    """

    env: str
    task_id: str
    task_type: str = ""
    split: str = "train"
    data_fingerprint: str = ""


@dataclass(frozen=True)
class Observation:
    """What the agent sees before acting.

    text: the environment's feedback for this step (first step: the initial room / page description).
    anchor: the anchor observation GiGPO groups steps by (raw env state text, no history or prompt).
    admissible_actions: actions the environment accepts now, in the environment's own spelling.
    task_description: the goal, e.g. "put a clean apple in fridge".
    """

    text: str
    anchor: str
    admissible_actions: tuple[str, ...]
    task_description: str


@dataclass(frozen=True)
class StepResult:
    """Outcome of one `TextEnv.step`.

    reward: env reward of this step, before any invalid-action penalty (ALFWorld: 10 x won at the last step).
    done: the episode ended (won, lost, or the step limit was reached).
    won: the task was completed at this step.
    invalid: the action was not admissible (or not parseable); the environment state did not change.
    invalid_reason: human-readable reason when invalid, else None.
    info: environment-specific extras (task_type, raw score, ...), JSON-serialisable.
    """

    observation: Observation
    reward: float
    done: bool
    won: bool = False
    invalid: bool = False
    invalid_reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Turn:
    """One past step of the episode, as the prompt's history window shows it."""

    observation: str
    action: str


@dataclass(frozen=True)
class ParsedAction:
    """The action extracted from a model response.

    action: the text to send to `TextEnv.step` (canonical admissible spelling when it matched one).
    valid: False if the response had no parseable action or it is not admissible.
    reason: why it is invalid (e.g. "missing <action> tag", "not admissible"), else None.
    """

    action: str
    valid: bool
    reason: str | None = None


class TextEnv(ABC):
    """A text environment that plays one episode at a time."""

    name: str = ""
    max_steps: int = 50

    @abstractmethod
    def reset(self, task: Task) -> Observation:
        """Start `task`; return the first observation."""

    @abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply `action` (any text: non-admissible text yields `invalid=True`, never an exception)."""

    def replay(self, actions: Sequence[str]) -> Observation:
        """Restore the state reached by `actions` from the current task's start (deterministic)."""
        task = self.current_task
        if task is None:
            raise RuntimeError("replay() needs a task: call reset(task) first")
        observation = self.reset(task)
        for action in actions:
            observation = self.step(action).observation
        return observation

    @property
    @abstractmethod
    def current_task(self) -> Task | None:
        """The task of the running episode (None before the first reset)."""

    @abstractmethod
    def format_prompt(self, observation: Observation, history: Sequence[Turn], step_index: int) -> str:
        """The user prompt for this step: task, last k turns, current observation, admissible actions."""

    @abstractmethod
    def parse_action(self, response: str, observation: Observation) -> ParsedAction:
        """Extract the action from a model response; never raises."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (processes, files)."""


class Policy(Protocol):
    """A scripted policy for smoke tests and `verl-agent-ext play` (expert, random)."""

    def act(self, observation: Observation) -> str:
        """The next action as plain text for `TextEnv.step` (no <action> tags)."""
        ...
