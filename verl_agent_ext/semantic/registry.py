"""Matchers by name: `make_matcher` builds one, `shared_matcher` reuses one per process (keeps its cache)."""

from __future__ import annotations

import functools

from verl_agent_ext.semantic.base import Matcher
from verl_agent_ext.semantic.cross_encoder import CrossEncoderMatcher
from verl_agent_ext.semantic.encoder import EmbeddingMatcher
from verl_agent_ext.semantic.exact import ExactMatcher
from verl_agent_ext.semantic.lexical import DifflibMatcher

MATCHERS: dict[str, type[Matcher]] = {
    "exact": ExactMatcher,
    "difflib": DifflibMatcher,
    "embedding": EmbeddingMatcher,
    "cross_encoder": CrossEncoderMatcher,
}
LEARNED_MATCHERS = ("embedding", "cross_encoder")


def make_matcher(name: str, model: str | None = None) -> Matcher:
    """A new matcher. `model` (name or path) applies to learned matchers; None -> all-MiniLM-L6-v2."""
    if name not in MATCHERS:
        raise ValueError(f"unknown matcher {name!r}; valid: {sorted(MATCHERS)}")
    return MATCHERS[name](model) if name in LEARNED_MATCHERS else MATCHERS[name]()


@functools.lru_cache(maxsize=8)
def shared_matcher(name: str, model: str | None = None) -> Matcher:
    """The process-wide matcher for (name, model): its model loads once and its cache persists across calls."""
    return make_matcher(name, model)
