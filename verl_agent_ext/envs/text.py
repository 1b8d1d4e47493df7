"""Agent-facing text helpers shared by every environment: the `<think>..</think><action>..</action>` format."""

from __future__ import annotations

import re
from collections.abc import Sequence

from verl_agent_ext.envs.base import ParsedAction

MAX_ACTION_CHARS = 512
_ACTION_TAG = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower-case and collapse whitespace, for comparing an action with the admissible ones."""
    return _WHITESPACE.sub(" ", text).strip().lower()


def format_action(action: str) -> str:
    """The answer text a policy should write for `action`: what `extract_action` reads back unchanged."""
    return f"<action>{action}</action>"


def extract_action(response: str) -> tuple[str | None, str | None]:
    """The text inside the last `<action>...</action>` of `response`, or (None, reason).

    The last tag wins so a model that drafts an action in its reasoning and then commits to another is read
    the way it answered.
    """
    matches = _ACTION_TAG.findall(response)
    if not matches:
        return None, "missing <action>...</action> tag"
    action = matches[-1].strip()
    if not action:
        return None, "empty <action> tag"
    if len(action) > MAX_ACTION_CHARS:
        return None, f"action longer than {MAX_ACTION_CHARS} characters"
    return action, None


def match_admissible(action: str, admissible: Sequence[str]) -> str | None:
    """The admissible action equal to `action` up to case and whitespace, else None."""
    wanted = normalise(action)
    for candidate in admissible:
        if normalise(candidate) == wanted:
            return candidate
    return None


def parse_tagged_action(response: str, admissible: Sequence[str]) -> ParsedAction:
    """Parse a model response against the admissible actions; never raises.

    Valid: the canonical admissible spelling. Invalid: the raw extracted text (or "") with the reason, so the
    environment can still be stepped (it answers "Nothing happens.") and the step is penalised.
    """
    action, reason = extract_action(response)
    if action is None:
        return ParsedAction(action="", valid=False, reason=reason)
    canonical = match_admissible(action, admissible)
    if canonical is None:
        return ParsedAction(action=action, valid=False, reason="not an admissible action")
    return ParsedAction(action=canonical, valid=True)
