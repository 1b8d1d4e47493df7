"""Exact matcher: 1.0 for identical texts, 0.0 otherwise. No model, deterministic, the fastest."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from verl_agent_ext.semantic.base import Matcher


class ExactMatcher(Matcher):
    """Identity of strings as a similarity."""

    name = "exact"

    def similarity(self, queries: Sequence[str], keys: Sequence[str]) -> np.ndarray:
        """1.0 where queries[i] == keys[j]. Returns float64 (len(queries), len(keys))."""
        index: dict[str, int] = {}
        query_ids = np.asarray([index.setdefault(text, len(index)) for text in queries], dtype=np.int64)
        key_ids = np.asarray([index.setdefault(text, len(index)) for text in keys], dtype=np.int64)
        return (query_ids[:, None] == key_ids[None, :]).astype(np.float64)
