"""Optimal monotone one-to-one alignment (weighted LCS) of failed steps to reference steps.

Given weights W (n failed steps x m reference steps, W_ij > 0 where a match is allowed), choose pairs
(i_1, j_1), (i_2, j_2), ... with i_1 < i_2 < ... and j_1 < j_2 < ... (monotone: matches advance along both
trajectories; one-to-one: each step matched at most once) maximising sum W_ij. Dynamic programme:

    D[i, j] = max(D[i-1, j], D[i, j-1], D[i-1, j-1] + W[i-1, j-1]),   D[0, :] = D[:, 0] = 0.

Row i follows from row i-1 with vector operations: C_j = max(D[i-1, j], D[i-1, j-1] + W[i-1, j-1]) and
D[i, j] = max_{k<=j} C_k (a running maximum), so many alignments run at once, one loop step per failed step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_CELLS_PER_CHUNK = 1 << 22  # bounds memory: alignments are padded to a common shape chunk by chunk


def align_batch(weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Optimal monotone one-to-one alignments of many weight matrices.

    weights: P matrices of shape (n_p, m_p), entries >= 0 (0 = not allowed). Returns P int64 arrays of shape
    (k_p, 2): the matched (i, j) pairs in increasing order; only pairs with W_ij > 0 are returned.
    """
    results: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64)] * len(weights)
    order = sorted(range(len(weights)), key=lambda p: weights[p].size, reverse=True)
    start = 0
    while start < len(order):
        n_max, m_max = weights[order[start]].shape
        stop = start + 1
        while stop < len(order):
            n, m = weights[order[stop]].shape
            n_max, m_max = max(n_max, n), max(m_max, m)
            if (stop - start + 1) * (n_max + 1) * (m_max + 1) > MAX_CELLS_PER_CHUNK:
                break
            stop += 1
        chunk = order[start:stop]
        for p, pairs in zip(chunk, _align_padded([weights[p] for p in chunk]), strict=True):
            results[p] = pairs
        start = stop
    return results


def align(weights: np.ndarray) -> np.ndarray:
    """Optimal monotone one-to-one alignment of one (n, m) weight matrix. Returns int64 (k, 2) pairs."""
    return align_batch([weights])[0]


def _align_padded(weights: list[np.ndarray]) -> list[np.ndarray]:
    """DP over zero-padded weights (padding can never be matched: it has weight 0)."""
    count = len(weights)
    n_max = max(w.shape[0] for w in weights)
    m_max = max(w.shape[1] for w in weights)
    padded = np.zeros((count, n_max, m_max))
    for p, w in enumerate(weights):
        padded[p, : w.shape[0], : w.shape[1]] = np.maximum(w, 0.0)
    table = np.zeros((count, n_max + 1, m_max + 1))
    for i in range(1, n_max + 1):
        candidates = np.maximum(table[:, i - 1, 1:], table[:, i - 1, :-1] + padded[:, i - 1, :])
        table[:, i, 1:] = np.maximum.accumulate(candidates, axis=1)
    return _backtrack(table, padded)


def _backtrack(table: np.ndarray, padded: np.ndarray) -> list[np.ndarray]:
    """Walk every table back from its corner at once; prefer skipping, so ties yield fewer matches."""
    count, rows, cols = table.shape
    p = np.arange(count)
    i = np.full(count, rows - 1)
    j = np.full(count, cols - 1)
    matched_p, matched_i, matched_j = [], [], []
    active = (i > 0) & (j > 0)
    while active.any():
        a_p, a_i, a_j = p[active], i[active], j[active]
        here = table[a_p, a_i, a_j]
        up = table[a_p, a_i - 1, a_j] == here
        left = ~up & (table[a_p, a_i, a_j - 1] == here)
        diagonal = ~up & ~left
        matched_p.append(a_p[diagonal])
        matched_i.append(a_i[diagonal] - 1)
        matched_j.append(a_j[diagonal] - 1)
        i[active] = a_i - (up | diagonal)
        j[active] = a_j - (left | diagonal)
        active = (i > 0) & (j > 0)
    all_p = np.concatenate(matched_p) if matched_p else np.zeros(0, dtype=np.int64)
    all_i = np.concatenate(matched_i) if matched_i else np.zeros(0, dtype=np.int64)
    all_j = np.concatenate(matched_j) if matched_j else np.zeros(0, dtype=np.int64)
    out = []
    for q in range(count):
        mask = all_p == q
        pairs = np.stack([all_i[mask], all_j[mask]], axis=1).astype(np.int64)
        out.append(pairs[np.argsort(pairs[:, 0])])
    return out
