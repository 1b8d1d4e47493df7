"""credit-eval metrics on hand-worked cases: AUC with ties, within-group AUC, shares, Spearman, bootstrap."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_agent_ext.credit_eval.metrics import (
    auc,
    average_ranks,
    bootstrap_intervals,
    credit_metrics,
    group_aucs,
    spearman,
)


def test_auc_hand_cases():
    good = np.array([True, True, False, False])
    assert auc(np.array([3.0, 2.0, 1.0, 0.0]), good) == 1.0
    assert auc(np.array([0.0, 1.0, 2.0, 3.0]), good) == 0.0
    assert auc(np.array([1.0, 1.0, 1.0, 1.0]), good) == 0.5  # ties count 1/2
    # pairs (good, bad): (2,1) win, (2,3) loss, (1,1) tie, (1,3) loss -> (1 + 0.5) / 4
    assert auc(np.array([2.0, 1.0, 1.0, 3.0]), good) == 0.375
    assert math.isnan(auc(np.array([1.0, 2.0]), np.array([True, True])))


def test_average_ranks_share_ties():
    assert average_ranks(np.array([5.0, 1.0, 5.0, 3.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_within_group_auc_ignores_offsets_between_groups():
    # Inside each group good > bad, but group b sits far below group a: pooled AUC < 1, within-group AUC = 1.
    scores = np.array([10.0, 9.0, -9.0, -10.0])
    good = np.array([True, False, True, False])
    group = np.array(["a", "a", "b", "b"])
    assert auc(scores, good) == 0.75
    assert group_aucs(scores, good, group).tolist() == [1.0, 1.0]
    # a group with one label only has no AUC
    assert group_aucs(scores, np.array([True, True, True, False]), group).tolist() == [1.0]


def test_credit_metrics_shares_and_spearman():
    advantage = np.array([0.5, -0.2, 0.0, 0.3, -1.0, 2.0])
    good = np.array([True, True, False, False, False, True])
    progress = np.array([1.0, 1.0, 0.0, -1.0, 0.0, 1.0])
    failed = np.array([True, True, True, True, True, False])
    group = np.array(["g"] * 6)
    metrics = credit_metrics(advantage, good, progress, failed, group)
    assert metrics["good_positive_failed"] == 0.5  # 0.5 > 0, -0.2 not
    assert metrics["bad_positive_failed"] == 1 / 3  # 0.3 only; exactly 0 is not positive
    assert metrics["rows"] == 6
    assert metrics["auc_failed"] == auc(advantage[:5], good[:5])
    assert math.isnan(metrics["auc_success"])
    assert metrics["spearman"] == spearman(advantage, progress)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=30))
def test_auc_equals_pair_count(pairs):
    scores = np.array([s for s, _ in pairs], dtype=float)
    good = np.array([g for _, g in pairs])
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a in scores[good] for b in scores[~good]]
    expected = sum(wins) / len(wins) if wins else float("nan")
    assert (math.isnan(expected) and math.isnan(auc(scores, good))) or abs(auc(scores, good) - expected) < 1e-12


def test_spearman_is_pearson_of_ranks():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(x, x**3) == 1.0
    assert spearman(x, -x) == -1.0
    assert math.isnan(spearman(x, np.ones(4)))


def test_bootstrap_resamples_whole_groups():
    advantage = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    good = np.array([True, False, True, False, True, False])
    group = np.array(["a", "a", "b", "b", "c", "c"])
    failed = np.ones(6, dtype=bool)

    def compute(rows, groups):
        return credit_metrics(advantage[rows], good[rows], np.zeros(len(rows)), failed[rows], groups)

    intervals = bootstrap_intervals(compute, group, resamples=200, seed=0)
    low, high = intervals["auc_failed_within_group"]
    assert 0.0 <= low <= high <= 1.0
    assert low == 0.0 and high == 1.0  # some resamples draw only group c (AUC 0), some never draw it
