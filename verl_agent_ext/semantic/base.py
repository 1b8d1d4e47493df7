"""The matcher interface: text pairs -> similarity scores, 1.0 meaning "the same step".

A matcher scores every pair of a (queries x keys) block. Learned scorers return values in [0, 1] (cross-encoder
probabilities) or [-1, 1] (cosine); callers threshold them. Implementations deduplicate texts and may cache.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

Step = tuple[str, ...]  # a step as its text parts, e.g. (observation, action)


def join_step(step: Step) -> str:
    """The step's parts as one text, newline-separated (SCPO's "observation + action" text)."""
    return "\n".join(step)


class Matcher(ABC):
    """Scores text pairs. Subclasses implement `similarity`; batching hooks have sound defaults."""

    name: str = "matcher"
    # Cost of the latest call, for metrics: encode_seconds, distinct_texts, cache_hit_rate (learned matchers).
    last_stats: dict[str, float] = {}  # noqa: RUF012  (replaced, never mutated, by subclasses)

    @abstractmethod
    def similarity(self, queries: Sequence[str], keys: Sequence[str]) -> np.ndarray:
        """Scores of every (query, key) pair. Returns float64 (len(queries), len(keys))."""

    def similarity_blocks(self, blocks: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[np.ndarray]:
        """`similarity` for many (queries, keys) blocks; learned matchers override it to run the model once."""
        return [self.similarity(queries, keys) for queries, keys in blocks]

    def step_similarity_blocks(self, blocks: Sequence[tuple[Sequence[Step], Sequence[Step]]]) -> list[np.ndarray]:
        """`similarity_blocks` for steps given as parts; by default each step is scored as its joined text."""
        return self.similarity_blocks([([join_step(q) for q in qs], [join_step(k) for k in ks]) for qs, ks in blocks])

    def first_at_least(self, query: str, candidates: Sequence[str], threshold: float) -> int:
        """Index of the first candidate scoring >= threshold against `query`, or -1 (greedy clustering)."""
        if not candidates:
            return -1
        hits = np.flatnonzero(self.similarity([query], candidates)[0] >= threshold)
        return int(hits[0]) if len(hits) else -1

    def prepare(self, texts: Sequence[str]) -> None:  # noqa: B027  (optional hook, no-op by default)
        """Hint: these texts will be scored soon (an encoder embeds them in one batch)."""
