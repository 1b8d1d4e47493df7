"""Bi-encoder matcher: sentence-transformers embeddings, cosine similarity, deduplicated and cached."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from verl_agent_ext.semantic.base import Matcher
from verl_agent_ext.semantic.models import load_bi_encoder


class EmbeddingMatcher(Matcher):
    """Cosine similarity of normalised sentence embeddings, in [-1, 1].

    Each distinct text is encoded at most once per call; embeddings stay in a bounded LRU cache across calls
    (`cache_size` texts; 0 disables it). `encoded_texts` counts texts sent to the model (for tests and metrics).
    """

    name = "embedding"

    def __init__(
        self, model: str | None = None, *, device: str | None = None, cache_size: int = 50_000, batch_size: int = 128
    ) -> None:
        self.model_name = model
        self.device = device
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.encoded_texts = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def model(self):
        """The underlying SentenceTransformer (loaded on first use, shared within the process)."""
        return load_bi_encoder(self.model_name, self.device)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings of `texts`. Returns float32 (len(texts), dim)."""
        unique = list(dict.fromkeys(texts))
        found = {text: self._cache[text] for text in unique if text in self._cache}
        missing = [text for text in unique if text not in found]
        if missing:
            vectors = self.model.encode(
                missing,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)
            self.encoded_texts += len(missing)
            found.update(zip(missing, vectors, strict=True))
        self._remember(found, touched=unique)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[text] for text in texts])

    def prepare(self, texts: Sequence[str]) -> None:
        """Encode the uncached ones among `texts` in one batch."""
        self.encode(texts)

    def similarity(self, queries: Sequence[str], keys: Sequence[str]) -> np.ndarray:
        """Cosine of every pair. Returns float64 (len(queries), len(keys))."""
        vectors = self.encode([*queries, *keys])
        return _cosine(vectors[: len(queries)], vectors[len(queries) :])

    def similarity_blocks(self, blocks: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[np.ndarray]:
        """All blocks' texts are encoded in one batch, then each block is one matrix product."""
        index: dict[str, int] = {}
        for queries, keys in blocks:
            for text in (*queries, *keys):
                index.setdefault(text, len(index))
        vectors = self.encode(list(index))
        results = []
        for queries, keys in blocks:
            q = vectors[[index[text] for text in queries]] if queries else vectors[:0]
            k = vectors[[index[text] for text in keys]] if keys else vectors[:0]
            results.append(_cosine(q, k))
        return results

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()

    def _remember(self, vectors: dict[str, np.ndarray], touched: list[str]) -> None:
        if self.cache_size <= 0:
            return
        for text in touched:
            if text in self._cache:
                self._cache.move_to_end(text)
            else:
                self._cache[text] = vectors[text]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


def _cosine(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Dot products of unit vectors, clipped to [-1, 1]. (q, d) x (k, d) -> float64 (q, k).

    einsum instead of `@`: for the many small blocks of SCPO it avoids multi-threaded BLAS start-up, measured
    ~30x faster for (50, 384) x (40, 384) float32 on a busy 2-core machine.
    """
    if len(queries) == 0 or len(keys) == 0:
        return np.zeros((len(queries), len(keys)))
    return np.clip(np.einsum("id,jd->ij", queries, keys).astype(np.float64), -1.0, 1.0)
