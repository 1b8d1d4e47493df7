"""window_prompt: hand-worked cases and properties (always fits, keeps the newest turns, most history that fits)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from verl_agent_ext.agent.prompt import keep_head_and_tail, window_prompt
from verl_agent_ext.envs.base import Turn


def renderer(head: int, per_turn: int, tail: int):
    """Prompt ids: `head` task ids, `per_turn` ids per shown turn (tagged by turn number), `tail` ids."""

    def render(turns):
        ids = list(range(1000, 1000 + head))
        for turn in turns:
            ids += [int(turn.action)] * per_turn
        return ids + list(range(2000, 2000 + tail))

    return render


HISTORY = [Turn(observation=f"o{i}", action=str(i)) for i in range(6)]


def test_fits_with_full_window():
    ids, shown = window_prompt(renderer(4, 3, 2), HISTORY, history_length=2, max_tokens=100)
    assert shown == 2 and ids == [1000, 1001, 1002, 1003, 4, 4, 4, 5, 5, 5, 2000, 2001]


def test_oldest_turns_dropped_first():
    ids, shown = window_prompt(renderer(4, 3, 2), HISTORY, history_length=3, max_tokens=9)
    assert shown == 1 and ids == [1000, 1001, 1002, 1003, 5, 5, 5, 2000, 2001]


def test_too_long_without_history_keeps_head_and_tail():
    ids, shown = window_prompt(renderer(10, 3, 10), HISTORY, history_length=2, max_tokens=8)
    assert shown == 0 and ids == [1000, 1001] + list(range(2004, 2010))


def test_keep_head_and_tail():
    assert keep_head_and_tail(list(range(20)), 8) == [0, 1, 14, 15, 16, 17, 18, 19]


@given(
    head=st.integers(0, 30),
    per_turn=st.integers(1, 10),
    tail=st.integers(1, 30),
    turns=st.integers(0, 6),
    history_length=st.integers(0, 6),
    max_tokens=st.integers(2, 80),
)
def test_window_properties(head, per_turn, tail, turns, history_length, max_tokens):
    render = renderer(head, per_turn, tail)
    history = HISTORY[:turns]
    ids, shown = window_prompt(render, history, history_length, max_tokens)
    assert len(ids) <= max_tokens
    assert 0 <= shown <= min(history_length, turns)
    if shown:
        assert ids == render(history[turns - shown :])  # the newest `shown` turns, untruncated
    if shown < min(history_length, turns):
        assert len(render(history[turns - shown - 1 :])) > max_tokens  # one more turn would not fit
