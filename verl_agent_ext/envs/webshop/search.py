"""BM25 search in numpy: the Lucene-free replacement of the original WebShop's pyserini index.

Scoring is Okapi BM25 with Lucene's idf and pyserini's defaults (k1 = 0.9, b = 0.4). Text analysis is lower case,
alphanumeric tokens, Lucene's English stop words and a minimal plural stemmer (Lucene's default analyzer uses the
Porter stemmer: rankings can differ on words whose Porter stem differs from the singular).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split()
)
_TOKEN = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """Plural -> singular for regular English plurals ("bottles" -> "bottle", "berries" -> "berry")."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word[:-1]


def analyse(text: str) -> list[str]:
    """Text -> index terms (lower case, stop words removed, plurals stemmed)."""
    return [stem(token) for token in _TOKEN.findall(text.lower()) if token not in STOP_WORDS]


class BM25Index:
    """An inverted index over `documents` with precomputed per-posting BM25 term weights.

    Postings of term t: doc ids `self._doc_ids[start[t]:start[t + 1]]` and weights
    tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / avg_len)), float32; query time multiplies them by idf(t).
    """

    def __init__(self, documents: Sequence[str], k1: float = 0.9, b: float = 0.4):
        self.num_docs = len(documents)
        self.vocabulary: dict[str, int] = {}
        term_ids: list[int] = []
        doc_ids: list[int] = []
        counts: list[int] = []
        doc_lengths = np.zeros(self.num_docs, dtype=np.float64)
        for doc_id, text in enumerate(documents):
            terms = analyse(text)
            doc_lengths[doc_id] = len(terms)
            for term, count in Counter(terms).items():
                term_ids.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                doc_ids.append(doc_id)
                counts.append(count)
        term_array = np.asarray(term_ids, dtype=np.int64)
        order = np.argsort(term_array, kind="stable")  # group postings by term, doc ids ascending within a term
        self._doc_ids = np.asarray(doc_ids, dtype=np.int64)[order]
        tf = np.asarray(counts, dtype=np.float64)[order]
        doc_freq = np.bincount(term_array, minlength=len(self.vocabulary))
        self._start = np.concatenate([[0], np.cumsum(doc_freq)])
        self._idf = np.log(1.0 + (self.num_docs - doc_freq + 0.5) / (doc_freq + 0.5))
        avg_length = max(doc_lengths.mean(), 1.0) if self.num_docs else 1.0
        norm = k1 * (1.0 - b + b * doc_lengths[self._doc_ids] / avg_length)
        self._weights = (tf * (k1 + 1.0) / (tf + norm)).astype(np.float32)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for `query`, shape (num_docs,); a repeated query term counts again."""
        scores = np.zeros(self.num_docs, dtype=np.float32)
        for term, repeat in Counter(analyse(query)).items():
            term_id = self.vocabulary.get(term)
            if term_id is None:
                continue
            span = slice(self._start[term_id], self._start[term_id + 1])
            scores[self._doc_ids[span]] += np.float32(repeat * self._idf[term_id]) * self._weights[span]
        return scores

    def search(self, query: str, k: int) -> list[int]:
        """Ids of the top `k` documents matching `query` (score > 0), best first; ties by lower id."""
        scores = self.scores(query)
        matched = np.flatnonzero(scores > 0)
        if len(matched) > k:
            # Keep every document scoring at least the k-th best so ties at the cut are broken by id.
            kth = np.partition(scores[matched], len(matched) - k)[len(matched) - k]
            matched = matched[scores[matched] >= kth]
        order = np.lexsort((matched, -scores[matched]))
        return matched[order][:k].tolist()
