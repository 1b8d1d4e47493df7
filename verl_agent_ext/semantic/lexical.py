"""Character-level similarity with difflib (GiGPO reference's fuzzy anchor grouping)."""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

import numpy as np

from verl_agent_ext.semantic.base import Matcher


class DifflibMatcher(Matcher):
    """`SequenceMatcher(None, query, key).ratio()`: 2 * matched characters / total characters, in [0, 1]."""

    name = "difflib"

    def similarity(self, queries: Sequence[str], keys: Sequence[str]) -> np.ndarray:
        """Ratio of every pair. Returns float64 (len(queries), len(keys)); quadratic, for small blocks."""
        scores = np.zeros((len(queries), len(keys)))
        for i, query in enumerate(queries):
            for j, key in enumerate(keys):
                scores[i, j] = SequenceMatcher(None, query, key).ratio()
        return scores

    def first_at_least(self, query: str, candidates: Sequence[str], threshold: float) -> int:
        """First candidate with ratio >= threshold; the cheap upper bounds skip hopeless candidates exactly."""
        for j, candidate in enumerate(candidates):
            matcher = SequenceMatcher(None, query, candidate)
            if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
                continue
            if matcher.ratio() >= threshold:
                return j
        return -1
