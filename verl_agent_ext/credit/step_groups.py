"""Anchor-state step groups: the steps of one group (uid) that saw the same environment state.

Exact grouping compares anchor observation texts. Fuzzy grouping is the reference's greedy clustering: distinct
texts of a uid, in order of first appearance, join the first cluster whose first member scores >= threshold,
else start a new cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from verl_agent_ext.credit.batch import combine_ids, contiguous_ids, group_count, group_first_row
from verl_agent_ext.semantic import Matcher


def anchor_step_groups(
    group_ids: np.ndarray,
    anchor_obs: np.ndarray,
    matcher: Matcher | None = None,
    threshold: float = 0.95,
) -> np.ndarray:
    """Step-group id per row, contiguous in order of first appearance. Returns int64 (n,).

    group_ids: contiguous uid ids (n,); anchor_obs: texts (n,). matcher None -> exact text equality.
    """
    exact = combine_ids(group_ids, contiguous_ids(anchor_obs))
    if matcher is None or len(exact) == 0:
        return exact
    first_rows = group_first_row(exact)  # distinct (uid, text) pairs, in order of first appearance
    pair_group = group_ids[first_rows]
    pair_text = anchor_obs[first_rows]
    matcher.prepare(list(pair_text))
    cluster_of_pair = np.empty(len(first_rows), dtype=np.int64)
    for group in np.unique(pair_group):
        pairs = np.flatnonzero(pair_group == group)
        cluster_of_pair[pairs] = greedy_clusters(list(pair_text[pairs]), matcher, threshold)
    return combine_ids(pair_group, cluster_of_pair)[exact]


def greedy_clusters(texts: Sequence[str], matcher: Matcher, threshold: float) -> np.ndarray:
    """Cluster label per text (0, 1, ... in creation order): first cluster whose leader scores >= threshold."""
    leaders: list[str] = []
    labels = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        hit = matcher.first_at_least(text, leaders, threshold)
        if hit < 0:
            leaders.append(text)
            hit = len(leaders) - 1
        labels[i] = hit
    return labels


def group_size_stats(step_group: np.ndarray, prefix: str) -> dict[str, float]:
    """Distribution of step-group sizes: count, mean, median, max, share of singleton groups."""
    if len(step_group) == 0:
        return {f"{prefix}/step_groups": 0.0}
    sizes = group_count(step_group)
    return {
        f"{prefix}/step_groups": float(len(sizes)),
        f"{prefix}/step_group_size_mean": float(sizes.mean()),
        f"{prefix}/step_group_size_median": float(np.median(sizes)),
        f"{prefix}/step_group_size_max": float(sizes.max()),
        f"{prefix}/step_group_singleton_share": float(np.mean(sizes == 1)),
    }
