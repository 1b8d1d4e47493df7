"""ALFWorld's agent-facing text: the per-step prompt and the observation cleanup.

The CPU path runs a 135M model with a short context, so the template is lean: the task, the last k turns, the
current observation, the admissible actions, and the required `<think>...</think><action>...</action>` answer.
Every piece is configurable through `PromptConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from verl_agent_ext.envs.base import Observation, Turn

DEFAULT_TEMPLATE = (
    "You are a household robot. Your task is to: {task}\n"
    "{history}"
    "Step {step}. You observe: {observation}\n"
    "Admissible actions: {actions}\n"
    "Reason briefly inside <think>...</think>, then reply with exactly one admissible action inside "
    "<action>...</action>."
)
# A short prompt for small models: fewer tokens than the default, and it ends with a concrete answer to copy
# (untrained, SmolLM2-135M then answers in the tag format about one time in eight; with the default, almost never).
COMPACT_TEMPLATE = (
    "Task: {task}\n{history}You see: {observation}\nActions: {actions}\n"
    "Copy one action into the tag, like this: <action>look</action>"
)
TEMPLATES = {"default": DEFAULT_TEMPLATE, "compact": COMPACT_TEMPLATE}
"""Templates by name: `PromptConfig.from_value({"template": "compact"})` (a hydra override cannot carry newlines)."""
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

    @classmethod
    def from_value(cls, value: PromptConfig | Mapping[str, Any] | None) -> PromptConfig:
        """A PromptConfig, None (the defaults) or a mapping of its fields, e.g. the config section
        `env.env_kwargs.alfworld.prompt: {history_turns: 0, max_actions: 40, template: compact}`; a `template` that
        names an entry of `TEMPLATES` is replaced by that template."""
        if value is None or isinstance(value, PromptConfig):
            return value or cls()
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - valid)
        if unknown:
            raise ValueError(f"unknown ALFWorld prompt settings {unknown}; valid keys: {sorted(valid)}")
        settings = dict(value)
        template = settings.get("template")
        if template in TEMPLATES:
            settings["template"] = TEMPLATES[template]
        elif template is not None and "{" not in template:
            raise ValueError(f"prompt template {template!r} is neither a format string nor a name in {list(TEMPLATES)}")
        return cls(**settings)


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
