"""ALFWorld's agent-facing text: the per-step prompt and the observation cleanup.

The CPU path runs a 135M model with a short context, so the template is lean: the task, the last k turns, the
current observation, the admissible actions, and the required `<think>...</think><action>...</action>` answer.
Every piece is configurable through `PromptConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from verl_agent_ext.envs.base import Observation, Turn

DEFAULT_TEMPLATE = (
    "You are a household robot. Your task is to: {task}\n"
    "{history}"
    "Step {step}. You observe: {observation}\n"
    "Admissible actions: {actions}\n"
    "Reason briefly inside <think>...</think>, then reply with exactly one admissible action inside "
    "<action>...</action>."
)
DEFAULT_HISTORY_HEADER = "Your last {k} steps:\n"
DEFAULT_TURN_TEMPLATE = "- you saw: {observation} you did: {action}\n"

_BANNER = "-= Welcome to TextWorld, ALFRED! =-"
_TASK_PREFIX = "Your task is to: "


@dataclass(frozen=True)
class PromptConfig:
    """How `format_prompt` renders one step.

    history_turns: k, the number of past turns shown (0 shows none).
    template: format string with {task}, {history}, {step}, {observation}, {actions}.
    history_header / turn_template: the history block ({k}; {observation}, {action} per turn).
    max_actions: at most this many admissible actions are listed (ALFWorld lists up to ~50 at a receptacle).
    """

    history_turns: int = 2
    template: str = DEFAULT_TEMPLATE
    history_header: str = DEFAULT_HISTORY_HEADER
    turn_template: str = DEFAULT_TURN_TEMPLATE
    max_actions: int = 40

    def __post_init__(self) -> None:
        if self.history_turns < 0 or self.max_actions < 1:
            raise ValueError("history_turns must be >= 0 and max_actions >= 1")


def split_intro(feedback: str) -> tuple[str, str]:
    """The first observation of a game -> (room description, task description).

    "-= Welcome ... =-\\n\\nYou are in the middle of a room. ...\\n\\nYour task is to: put a apple in fridge."
    -> ("You are in the middle of a room. ...", "put a apple in fridge")
    """
    text = feedback.replace(_BANNER, "").strip()
    task = ""
    if _TASK_PREFIX in text:
        text, task = text.split(_TASK_PREFIX, 1)
        task = task.strip().rstrip(".")
    return text.strip(), task


def format_prompt(
    observation: Observation, history: Sequence[Turn], step_index: int, config: PromptConfig = PromptConfig()
) -> str:
    """The user prompt for step `step_index` (0-based; shown 1-based) with the last `history_turns` turns."""
    turns = list(history)[-config.history_turns :] if config.history_turns else []
    history_text = ""
    if turns:
        history_text = config.history_header.format(k=len(turns)) + "".join(
            config.turn_template.format(observation=turn.observation, action=turn.action) for turn in turns
        )
    actions = observation.admissible_actions[: config.max_actions]
    return config.template.format(
        task=observation.task_description,
        history=history_text,
        step=step_index + 1,
        observation=observation.text,
        actions=", ".join(actions),
    )
