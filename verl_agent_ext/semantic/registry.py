"""Matchers by name: `make_matcher` builds one, `shared_matcher` reuses one per process (keeps its cache)."""

from __future__ import annotations

import functools
from typing import Any

from verl_agent_ext.semantic.base import Matcher
from verl_agent_ext.semantic.cross_encoder import CrossEncoderMatcher
from verl_agent_ext.semantic.encoder import EmbeddingMatcher
from verl_agent_ext.semantic.exact import ExactMatcher
from verl_agent_ext.semantic.lexical import DifflibMatcher
from verl_agent_ext.semantic.static import StaticEmbeddingMatcher

MATCHERS: dict[str, type[Matcher]] = {
    "exact": ExactMatcher,
    "difflib": DifflibMatcher,
    "static": StaticEmbeddingMatcher,
    "embedding": EmbeddingMatcher,
    "cross_encoder": CrossEncoderMatcher,
}
# Options each learned matcher accepts (model name or path aside); the others take none.
MATCHER_OPTIONS: dict[str, tuple[str, ...]] = {
    "static": ("threads", "variant"),
    "embedding": ("device", "threads", "max_seq_length", "segments", "backend"),
    "cross_encoder": ("device", "threads"),
}


def make_matcher(name: str, model: str | None = None, **options: Any) -> Matcher:
    """A new matcher. `model` (name or path) applies to learned matchers; None -> all-MiniLM-L6-v2.

    options: keyword settings of the matcher (`MATCHER_OPTIONS`); a None value means the matcher's default, and
    options a matcher does not have are ignored (so one config can name the encoder's device for any matcher).
    """
    if name not in MATCHERS:
        raise ValueError(f"unknown matcher {name!r}; valid: {sorted(MATCHERS)}")
    if name not in MATCHER_OPTIONS:
        return MATCHERS[name]()
    given = {key: value for key, value in options.items() if key in MATCHER_OPTIONS[name] and value is not None}
    return MATCHERS[name](model, **given)


@functools.lru_cache(maxsize=8)
def _shared(name: str, model: str | None, options: tuple[tuple[str, Any], ...]) -> Matcher:
    return make_matcher(name, model, **dict(options))


def shared_matcher(name: str, model: str | None = None, **options: Any) -> Matcher:
    """The process-wide matcher for (name, model, options): its model loads once, its cache persists across calls."""
    return _shared(name, model, tuple(sorted(options.items())))
