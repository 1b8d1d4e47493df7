"""Cross-encoder matcher: a `sentence_transformers.CrossEncoder` reads each (query, key) pair jointly."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from cachetools import LRUCache

from verl_agent_ext.semantic.base import Matcher
from verl_agent_ext.semantic.models import load_cross_encoder, resolve_device, torch_threads

CHARS_PER_TOKEN = 16  # longer than a WordPiece / SentencePiece token of natural text: the cut lies past truncation


class CrossEncoderMatcher(Matcher):
    """Sigmoid of a one-label cross-encoder's logit, in [0, 1] (the SCPO paper uses BGE-Reranker-v2-m3).

    Each distinct (query, key) pair is scored at most once per call; scores stay in a bounded LRU cache across
    calls. `scored_pairs` counts pairs sent to the model. Cost grows with the number of pairs, not texts.
    """

    name = "cross_encoder"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        cache_size: int = 200_000,
        batch_size: int = 64,
    ) -> None:
        self.model_name = model
        self.device = resolve_device(device)
        self.threads = threads
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.scored_pairs = 0
        self._cache: LRUCache = LRUCache(maxsize=max(cache_size, 1))

    @property
    def model(self):
        """The underlying CrossEncoder (loaded on first use, shared within the process)."""
        return load_cross_encoder(self.model_name, self.device)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Scores of (query, key) pairs. Returns float64 (len(pairs),)."""
        unique = list(dict.fromkeys(pairs))
        found = {pair: self._cache[pair] for pair in unique if pair in self._cache}
        missing = [pair for pair in unique if pair not in found]
        start = time.perf_counter()
        if missing:
            # Truncation happens in the tokenizer, whose pair truncation slows down and grows memory with text
            # length (20k characters: ~10 s and GBs per batch); in natural text the kept tokens end well before
            # max_seq_length * CHARS_PER_TOKEN characters, so cutting there first bounds time and memory.
            limit = self.model.max_seq_length * CHARS_PER_TOKEN
            with torch_threads(self.threads):
                scores = self.model.predict(
                    [[query[:limit], key[:limit]] for query, key in missing],
                    batch_size=self.batch_size,
                    activation_fn=torch.nn.Sigmoid(),
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            self.scored_pairs += len(missing)
            found.update(zip(missing, np.asarray(scores, dtype=np.float64).reshape(-1).tolist(), strict=True))
        self.last_stats = {
            "encode_seconds": time.perf_counter() - start,
            "distinct_texts": float(len(unique)),  # distinct pairs: what a cross-encoder's cost grows with
            "cache_hit_rate": (len(unique) - len(missing)) / max(len(unique), 1),
        }
        self._remember(found, touched=unique)
        return np.asarray([found[pair] for pair in pairs], dtype=np.float64)

    def similarity(self, queries: Sequence[str], keys: Sequence[str]) -> np.ndarray:
        """Score of every pair. Returns float64 (len(queries), len(keys))."""
        return self.similarity_blocks([(queries, keys)])[0]

    def similarity_blocks(self, blocks: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[np.ndarray]:
        """Every block's pairs go through the model in one `predict` call."""
        pairs = [(query, key) for queries, keys in blocks for query in queries for key in keys]
        flat = self.score_pairs(pairs)
        results, start = [], 0
        for queries, keys in blocks:
            size = len(queries) * len(keys)
            results.append(flat[start : start + size].reshape(len(queries), len(keys)))
            start += size
        return results

    def clear_cache(self) -> None:
        """Forget every cached score."""
        self._cache.clear()

    def _remember(self, scores: dict[tuple[str, str], float], touched: list[tuple[str, str]]) -> None:
        if self.cache_size > 0:  # setting a key also makes it the most recently used
            self._cache.update((pair, scores[pair]) for pair in touched)
