"""Static-embedding matcher: one vector per vocabulary token, distilled from the bi-encoder (model2vec-style).

A token's vector is what the bi-encoder outputs for the one-token text "[CLS] token [SEP]" (mean-pooled as the
model pools, before normalisation); a text's embedding is the normalised mean of its tokens' vectors. No
transformer runs per text, so encoding is a tokeniser call and a gather (orders of magnitude cheaper than the
model on CPU), at the price of ignoring word order and context.

Variants (`variant`):

- "sif" (default): the model2vec recipe. The raw vectors are centred on the vocabulary's mean and rotated onto
  its principal axes (PCA, `PCA_DIMS` kept), and each token is weighted by
  a / (a + p(token)), p from Zipf's law on the tokeniser's vocabulary rank (WordPiece vocabularies list frequent
  words first), a = `SIF_COEFFICIENT`. Raw one-token outputs share a large common component (every pair of
  texts scores ~0.9), which the centring removes; the weighting lets rare, content-bearing words ("mug",
  "fridge 1") outweigh "you", "the", "a".
- "pca": centring and PCA only, no weighting.
- "plain": raw vectors, distilled on demand for the tokens the process meets (the matcher before the above).

Token vectors are distilled on demand, the first time a token is met, and kept in `$VERL_AGENT_EXT_CACHE/static/`
(merged across processes), so a later process distils only tokens no process has met. The centring and axes are
fitted on a fixed sample of the vocabulary (every 7th real token, about 4,300 for MiniLM: 5-6 s on one core, once
per machine) rather than on all 30,522 tokens (about 36 s).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from verl_agent_ext.semantic.encoder import EmbeddingMatcher, token_counts
from verl_agent_ext.semantic.models import cache_dir, load_bi_encoder, resolve_model, torch_threads

STATIC_VARIANTS = ("sif", "pca", "plain")
PCA_DIMS = 256
SIF_COEFFICIENT = 1e-4
FIT_STRIDE = 7
SAVE_INTERVAL_S = 60.0  # the table file is rewritten at most this often (each write merges ~7 MB)


class StaticEmbeddingMatcher(EmbeddingMatcher):
    """Cosine of mean static token vectors distilled from `model` (default all-MiniLM-L6-v2), in [-1, 1].

    Same interface, text cache and metrics as `EmbeddingMatcher`; the transformer runs only on tokens not yet in
    the token table (`StaticTable`: one per model and process, persisted in the cache folder).
    """

    name = "static"

    def __init__(
        self,
        model: str | None = None,
        *,
        variant: str = "sif",
        threads: int | None = None,
        cache_size: int = 50_000,
    ) -> None:
        if variant not in STATIC_VARIANTS:
            raise ValueError(f"variant={variant!r} is not a valid option; valid: {list(STATIC_VARIANTS)}")
        super().__init__(model, device="cpu", threads=threads, cache_size=cache_size)
        self.variant = variant

    @property
    def table(self) -> StaticTable:
        return static_table(self.model_name)

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        tokenizer = self.model.tokenizer
        ids = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        if self.variant == "plain":
            return mean_token_vectors(self.table.vectors(ids, self.threads), ids), token_counts(tokenizer, texts, None)
        mean, axes = self.table.fit(self.threads)
        raw = self.table.vectors(ids, self.threads)
        used = np.unique(np.fromiter((i for row in ids for i in row), dtype=np.int64))
        rows = np.zeros((len(raw), axes.shape[0]), dtype=np.float32)
        rows[used] = (raw[used] - mean) @ axes.T
        if self.variant == "sif":
            rows[used] *= sif_weights(len(raw), SIF_COEFFICIENT)[used, None]
        return mean_token_vectors(rows, ids), token_counts(tokenizer, texts, None)


class StaticTable:
    """Token id -> distilled vector, filled on demand and kept in the cache folder across processes.

    `distilled` counts tokens sent to the model by this process.
    """

    def __init__(self, model: str | None) -> None:
        self.model = model
        encoder = load_bi_encoder(model, "cpu")
        self.tokenizer = encoder.tokenizer
        size = encoder.tokenizer.vocab_size
        self._rows = np.zeros((size, encoder.get_embedding_dimension()), dtype=np.float32)
        self._known = np.zeros(size, dtype=bool)
        self._fit: tuple[np.ndarray, np.ndarray] | None = None
        self._saved_at = -math.inf
        self.distilled = 0
        self.path = table_path(model)
        self._load()

    def vectors(self, ids: Sequence[Sequence[int]], threads: int | None = None) -> np.ndarray:
        """The (vocab, dim) table with every token of `ids` filled in."""
        used = np.unique(np.fromiter((i for row in ids for i in row), dtype=np.int64))
        missing = used[~self._known[used]]
        if len(missing):
            self._rows[missing] = distill_tokens(self.model, missing, threads=threads)
            self._known[missing] = True
            self.distilled += len(missing)
            self._save()
        return self._rows

    def fit(self, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean (dim,), principal axes (PCA_DIMS, dim)) of the vectors of a fixed sample of the vocabulary.

        The sample: every `FIT_STRIDE`-th token that is neither a placeholder ([unused12]) nor a special token
        (about 4,300 of MiniLM's 30,522), distilled once per machine.
        """
        if self._fit is None:
            vocab = self.tokenizer.get_vocab()
            special = set(self.tokenizer.all_special_tokens)
            real = sorted(i for t, i in vocab.items() if i < len(self._rows) and not t.startswith("[unused"))
            sample = np.asarray([i for i in real if self.tokenizer.convert_ids_to_tokens(i) not in special])
            sample = sample[::FIT_STRIDE]
            before = self.distilled
            fit = self.vectors([sample.tolist()], threads)[sample].astype(np.float64)
            if self.distilled > before:  # persist the fit sample now: it is what a new process would pay for
                self._saved_at = -math.inf
                self._save()
            mean = fit.mean(axis=0)
            _, _, axes = np.linalg.svd(fit - mean, full_matrices=False)
            self._fit = mean.astype(np.float32), axes[:PCA_DIMS].astype(np.float32)
        return self._fit

    def _load(self) -> None:
        if self.path.is_file():
            with np.load(self.path) as stored:
                ids = stored["ids"]
                if len(ids) and ids.max() < len(self._rows) and stored["vectors"].shape[1] == self._rows.shape[1]:
                    self._rows[ids] = stored["vectors"]
                    self._known[ids] = True

    def _save(self) -> None:
        """Merge the known rows into the cache file (another process may have added rows meanwhile).

        At most once per SAVE_INTERVAL_S: tokens distilled in between are saved with the next new ones (or
        distilled again by a later process).
        """
        if time.monotonic() - self._saved_at < SAVE_INTERVAL_S:
            return
        self._saved_at = time.monotonic()
        self._load()
        ids = np.flatnonzero(self._known)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}-", suffix=".npz")
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, ids=ids, vectors=self._rows[ids])
        os.chmod(staging, 0o644)
        os.replace(staging, self.path)


def static_table(model: str | None = None) -> StaticTable:
    """The process-wide token table of `model` (None: the default MiniLM)."""
    return _static_table(model)


@functools.lru_cache(maxsize=4)
def _static_table(model: str | None) -> StaticTable:
    return StaticTable(model)


def table_path(model: str | None) -> Path:
    """The token table's file: named by the model's folder and its weights' sizes (new weights, new file)."""
    folder = Path(resolve_model(model))
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    stamp = f"{folder.resolve()}|{[(w.name, w.stat().st_size) for w in weights]}"
    return cache_dir() / "static" / f"{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.npz"


def sif_weights(vocab_size: int, coefficient: float) -> np.ndarray:
    """a / (a + p(rank)) per vocabulary index, p(rank) proportional to 1 / (rank + 2) (Zipf). float64 (V,)."""
    zipf = 1.0 / np.arange(2, vocab_size + 2, dtype=np.float64)
    return coefficient / (coefficient + zipf / zipf.sum())


def mean_token_vectors(table: np.ndarray, ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Unit-norm mean of table rows per text (a text without tokens gets zeros). float32 (len(ids), dim)."""
    lengths = np.asarray([len(row) for row in ids], dtype=np.int64)
    flat = np.fromiter((i for row in ids for i in row), dtype=np.int64, count=int(lengths.sum()))
    sums = np.zeros((len(ids), table.shape[1]), dtype=np.float32)
    if len(flat):
        np.add.at(sums, np.repeat(np.arange(len(ids)), lengths), table[flat])
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.maximum(norms, 1e-12)


def distill_tokens(
    model: str | None, token_ids: Sequence[int], batch_size: int = 512, threads: int | None = None
) -> np.ndarray:
    """The bi-encoder's mean-pooled output for each one-token text "[CLS] token [SEP]", before normalisation.

    Returns float32 (len(token_ids), dim).
    """
    import torch

    encoder = load_bi_encoder(model, "cpu")
    tokenizer = encoder.tokenizer
    transformer = encoder[0].auto_model.eval()
    ids = np.asarray(token_ids, dtype=np.int64)
    out = np.zeros((len(ids), transformer.config.hidden_size), dtype=np.float32)
    with torch_threads(threads), torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            chunk = torch.as_tensor(ids[start : start + batch_size])
            inputs = torch.stack(
                [torch.full_like(chunk, tokenizer.cls_token_id), chunk, torch.full_like(chunk, tokenizer.sep_token_id)],
                dim=1,
            )
            hidden = transformer(input_ids=inputs, attention_mask=torch.ones_like(inputs)).last_hidden_state
            out[start : start + len(chunk)] = hidden.mean(dim=1).numpy()
    return out
