"""The prompt of one step as token ids, windowed to fit `rollout.prompt_length`.

Each step's prompt is rendered afresh (task, the last k turns, the current observation) by the environment's
`format_prompt`, then turned into token ids with the chat template. When it does not fit, the oldest turns
go first; a prompt that is still too long without any history (a huge observation) keeps its head (the task
and instructions) and its tail (current observation, admissible actions, generation prompt) on token ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from verl_agent_ext.envs.base import Observation, Turn

HEAD_FRACTION = 0.25
"""Share of `max_tokens` kept from the start of an over-long prompt; the rest comes from its end."""


def step_messages(env: Any, observation: Observation, history: Sequence[Turn], step_index: int) -> list[dict]:
    """The chat messages of one step's prompt: a single user turn, the environment's `format_prompt` text.

    Every step is a fresh prompt (the history lives inside the text), so an expert step becomes a training
    example by appending the assistant answer (`envs.text.format_action`).
    """
    return [{"role": "user", "content": env.format_prompt(observation, history, step_index)}]


def window_prompt(
    render: Callable[[Sequence[Turn]], list[int]],
    history: Sequence[Turn],
    history_length: int,
    max_tokens: int,
) -> tuple[list[int], int]:
    """Token ids of the longest-history prompt that fits in `max_tokens`.

    render: turns (oldest first) -> prompt token ids (chat template applied, generation prompt included).
    history: every past turn of the episode, oldest first.
    Returns (prompt ids with len <= max_tokens, number of turns shown).
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")
    shown = min(history_length, len(history))
    while True:
        prompt_ids = render(history[len(history) - shown :] if shown else ())
        if len(prompt_ids) <= max_tokens or shown == 0:
            break
        shown -= 1
    if len(prompt_ids) > max_tokens:
        prompt_ids = keep_head_and_tail(prompt_ids, max_tokens)
    return prompt_ids, shown


def keep_head_and_tail(token_ids: Sequence[int], max_tokens: int) -> list[int]:
    """The first `HEAD_FRACTION * max_tokens` ids and the last ones, `max_tokens` in all."""
    head = max(1, int(max_tokens * HEAD_FRACTION))
    tail = max_tokens - head
    return list(token_ids[:head]) + list(token_ids[len(token_ids) - tail :])
