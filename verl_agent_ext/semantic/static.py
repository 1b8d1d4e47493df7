"""Static-embedding matcher: one vector per vocabulary token, distilled from the bi-encoder (model2vec-style).

A token's vector is what the bi-encoder outputs for the one-token text "[CLS] token [SEP]" (mean-pooled as the
model pools, before normalisation); a text's embedding is the normalised mean of its tokens' vectors. No
transformer runs per text, so encoding is a tokeniser call and a gather (orders of magnitude cheaper than the
model on CPU), at the price of ignoring word order and context. Token vectors are distilled on demand, the first
time a token is seen in the process (an agent's texts use a few hundred distinct tokens), so nothing is
precomputed or downloaded.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from verl_agent_ext.semantic.encoder import EmbeddingMatcher, token_counts
from verl_agent_ext.semantic.models import load_bi_encoder, torch_threads


class StaticEmbeddingMatcher(EmbeddingMatcher):
    """Cosine of mean static token vectors distilled from `model` (default all-MiniLM-L6-v2), in [-1, 1].

    Same interface, text cache and metrics as `EmbeddingMatcher`; the transformer runs only on tokens not yet
    in the process-wide token table (`StaticTable`, shared by every matcher of the same model).
    """

    name = "static"

    def __init__(self, model: str | None = None, *, threads: int | None = None, cache_size: int = 50_000) -> None:
        super().__init__(model, device="cpu", threads=threads, cache_size=cache_size)

    @property
    def table(self) -> StaticTable:
        return static_table(self.model_name)

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        tokenizer = self.model.tokenizer
        ids = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        vectors = self.table.vectors(ids, self.threads)
        return mean_token_vectors(vectors, ids), token_counts(tokenizer, texts, None)


class StaticTable:
    """Token id -> distilled vector, filled on demand. `distilled` counts tokens sent to the model."""

    def __init__(self, model: str | None) -> None:
        self.model = model
        encoder = load_bi_encoder(model, "cpu")
        size = encoder.tokenizer.vocab_size
        self._rows = np.zeros((size, encoder.get_embedding_dimension()), dtype=np.float32)
        self._known = np.zeros(size, dtype=bool)
        self.distilled = 0

    def vectors(self, ids: Sequence[Sequence[int]], threads: int | None = None) -> np.ndarray:
        """The (vocab, dim) table with every token of `ids` filled in."""
        used = np.unique(np.fromiter((i for row in ids for i in row), dtype=np.int64))
        missing = used[~self._known[used]]
        if len(missing):
            self._rows[missing] = distill_tokens(self.model, missing, threads=threads)
            self._known[missing] = True
            self.distilled += len(missing)
        return self._rows


@functools.lru_cache(maxsize=4)
def static_table(model: str | None = None) -> StaticTable:
    """The process-wide token table of `model`."""
    return StaticTable(model)


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
