"""Bi-encoder matcher: sentence-transformers embeddings, cosine similarity, deduplicated and cached."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from cachetools import LRUCache

from verl_agent_ext.semantic.base import Matcher, Step
from verl_agent_ext.semantic.models import load_bi_encoder, resolve_device, torch_threads
from verl_agent_ext.semantic.onnx_runtime import BACKENDS, onnx_encode, onnx_session

SEGMENTS = ("joint", "separate")


class EmbeddingMatcher(Matcher):
    """Cosine similarity of normalised sentence embeddings, in [-1, 1].

    Each distinct text is encoded at most once per call; embeddings stay in a bounded LRU cache across calls
    (`cache_size` texts; 0 disables it). `encoded_texts` counts texts sent to the model; `last_stats` describes
    the latest call (seconds in the model, distinct texts, cache hit rate).

    device: "cpu" (default), "cuda", "cuda:1", or "auto" (cuda when visible). threads: CPU threads for encoding
    (None: the process's torch setting, 1 in a Ray actor). max_seq_length: tokens kept per text (None: the
    model's 256). backend: "torch" (sentence-transformers), or ONNX Runtime on the CPU with the same model
    exported offline: "onnx" (fp32) or "onnx_int8" (dynamically quantised weights). segments: how a multi-part
    step (observation, action) is embedded: "joint" encodes the newline-joined text; "separate" encodes each part
    once and combines them (`combine_segments`).
    """

    name = "embedding"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        max_seq_length: int | None = None,
        segments: str = "joint",
        backend: str = "torch",
        cache_size: int = 50_000,
        batch_size: int = 128,
    ) -> None:
        if segments not in SEGMENTS:
            raise ValueError(f"segments={segments!r} is not a valid option; valid: {list(SEGMENTS)}")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not a valid option; valid: {list(BACKENDS)}")
        if backend != "torch" and resolve_device(device) != "cpu":
            raise ValueError(f"backend={backend!r} runs on the CPU; use backend='torch' for device={device!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        self.model_name = model
        self.device = resolve_device(device)
        self.threads = threads
        self.max_seq_length = max_seq_length
        self.segments = segments
        self.backend = backend
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.encoded_texts = 0
        self.last_stats: dict[str, float] = {}
        self._cache: LRUCache = LRUCache(maxsize=max(cache_size, 1))

    @property
    def model(self):
        """The underlying SentenceTransformer (loaded on first use, shared within the process)."""
        return load_bi_encoder(self.model_name, self.device, self.max_seq_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings of `texts`. Returns float32 (len(texts), dim)."""
        return self._lookup(texts)[0]

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
        return _block_cosines(blocks, index, self.encode(list(index)))

    def step_similarity_blocks(self, blocks: Sequence[tuple[Sequence[Step], Sequence[Step]]]) -> list[np.ndarray]:
        """Steps (tuples of parts): "joint" scores the joined texts, "separate" combines per-part embeddings."""
        if self.segments == "joint":
            return super().step_similarity_blocks(blocks)
        index: dict[Step, int] = {}
        for queries, keys in blocks:
            for step in (*queries, *keys):
                index.setdefault(step, len(index))
        parts = list(dict.fromkeys(part for step in index for part in step))
        part_vectors, part_tokens = self._lookup(parts)
        part_index = {part: i for i, part in enumerate(parts)}
        return _block_cosines(blocks, index, combine_segments(list(index), part_index, part_vectors, part_tokens))

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Model pass: unit-norm float32 (len, dim) embeddings and int64 (len,) token counts (no special tokens)."""
        model = self.model
        if self.backend != "torch":
            import torch

            threads = self.threads or torch.get_num_threads()
            session = onnx_session(self.model_name, self.backend == "onnx_int8", threads)
            vectors = onnx_encode(session, model.tokenizer, texts, model.max_seq_length, self.batch_size)
            return vectors, token_counts(model.tokenizer, texts, model.max_seq_length)
        with torch_threads(self.threads):
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return vectors.astype(np.float32, copy=False), token_counts(model.tokenizer, texts, model.max_seq_length)

    def _lookup(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (len, dim), token counts (len,)) of `texts`, encoding the uncached distinct ones."""
        unique = list(dict.fromkeys(texts))
        found = {text: self._cache[text] for text in unique if text in self._cache}
        missing = [text for text in unique if text not in found]
        start = time.perf_counter()
        if missing:
            vectors, tokens = self._embed(missing)
            self.encoded_texts += len(missing)
            found.update(zip(missing, zip(vectors, tokens.tolist(), strict=True), strict=True))
        self.last_stats = {
            "encode_seconds": time.perf_counter() - start,
            "distinct_texts": float(len(unique)),
            "cache_hit_rate": (len(unique) - len(missing)) / max(len(unique), 1),
        }
        self._remember(found, touched=unique)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
        entries = [found[text] for text in texts]
        return np.stack([vector for vector, _ in entries]), np.asarray([n for _, n in entries], dtype=np.int64)

    def _remember(self, entries: dict[str, tuple[np.ndarray, int]], touched: list[str]) -> None:
        if self.cache_size > 0:  # setting a key also makes it the most recently used
            self._cache.update((text, entries[text]) for text in touched)


def combine_segments(
    steps: Sequence[Step], part_index: dict[str, int], part_vectors: np.ndarray, part_tokens: np.ndarray
) -> np.ndarray:
    """Embedding of each multi-part step from its parts' unit embeddings. Returns float32 (len(steps), dim).

    v(step) = normalise(sum_k n_k * e_k), n_k = tokens of part k: the mean over every token of the joined text,
    as the model's mean pooling takes it, except that tokens of one part do not attend to the other's. So the
    observation and the action both shape the score, each in proportion to its length, as in the joined text.
    """
    dim = part_vectors.shape[1] if part_vectors.ndim == 2 else 0
    sizes = np.asarray([len(step) for step in steps], dtype=np.int64)
    rows = np.repeat(np.arange(len(steps)), sizes)
    parts = np.fromiter((part_index[part] for step in steps for part in step), dtype=np.int64, count=len(rows))
    weights = np.maximum(part_tokens[parts], 1).astype(np.float32)[:, None] if len(parts) else np.zeros((0, 1))
    combined = np.zeros((len(steps), dim), dtype=np.float32)
    if len(parts):
        np.add.at(combined, rows, weights * part_vectors[parts])
    norms = np.linalg.norm(combined, axis=1, keepdims=True)
    return combined / np.maximum(norms, 1e-12)


def token_counts(tokenizer, texts: Sequence[str], max_length: int | None) -> np.ndarray:
    """Tokens per text without special tokens, capped at what the model reads (max_length - 2). int64 (len,)."""
    ids = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]
    counts = np.asarray([len(row) for row in ids], dtype=np.int64)
    return np.minimum(counts, max_length - 2) if max_length else counts


def _block_cosines(blocks, index: dict, vectors: np.ndarray) -> list[np.ndarray]:
    """One cosine matrix per (queries, keys) block, rows of `vectors` looked up through `index`.

    Consecutive blocks with the same queries (SCPO with `reference=all`: a failed trajectory against each success
    of its group) share one product against their stacked keys, split afterwards.
    """
    results: list[np.ndarray] = []
    start = 0
    while start < len(blocks):
        queries = blocks[start][0]
        stop = start + 1
        while stop < len(blocks) and blocks[stop][0] == queries:
            stop += 1
        keys = [key for _, block_keys in blocks[start:stop] for key in block_keys]
        matrix = _cosine(vectors[[index[q] for q in queries]], vectors[[index[k] for k in keys]])
        results.extend(np.split(matrix, np.cumsum([len(block[1]) for block in blocks[start : stop - 1]]), axis=1))
        start = stop
    return results


def _cosine(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Dot products of unit vectors, clipped to [-1, 1]. (q, d) x (k, d) -> float64 (q, k).

    torch's matrix product on one thread: for SCPO's many small blocks, 4-5x faster than `numpy.einsum` and free
    of multi-threaded BLAS start-up, which on a busy machine made `@` ~30x slower than einsum (measured).
    """
    if len(queries) == 0 or len(keys) == 0:
        return np.zeros((len(queries), len(keys)))
    import torch

    with torch_threads(1):
        product = torch.from_numpy(np.ascontiguousarray(queries)) @ torch.from_numpy(np.ascontiguousarray(keys)).T
    return np.clip(product.numpy().astype(np.float64), -1.0, 1.0)
