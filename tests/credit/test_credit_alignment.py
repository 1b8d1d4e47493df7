"""Optimal monotone one-to-one alignment: hand-worked cases and brute-force optimality."""

import functools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from verl_agent_ext.credit.alignment import align, align_batch


def brute_force_best(weights: np.ndarray) -> float:
    """Best total weight over all monotone one-to-one matchings (exhaustive recursion)."""

    @functools.cache
    def best(i: int, j: int) -> float:
        if i == weights.shape[0] or j == weights.shape[1]:
            return 0.0
        options = [best(i + 1, j), best(i, j + 1)]
        if weights[i, j] > 0:
            options.append(weights[i, j] + best(i + 1, j + 1))
        return max(options)

    return best(0, 0)


def test_crossing_matches_are_resolved_by_total_weight():
    # greedy in time order would take (0, 1) = 0.6 and then nothing; the optimum crosses it out for 0.5 + 0.5.
    weights = np.asarray([[0.5, 0.6], [0.0, 0.5]])
    np.testing.assert_array_equal(align(weights), [[0, 0], [1, 1]])


def test_a_reference_step_is_credited_once():
    # three failed steps all resemble reference step 0: only one of them is matched.
    weights = np.asarray([[0.9], [0.8], [0.7]])
    np.testing.assert_array_equal(align(weights), [[0, 0]])


def test_zero_weights_are_never_matched_and_empty_inputs_work():
    assert align(np.zeros((3, 4))).shape == (0, 2)
    assert align(np.zeros((0, 4))).shape == (0, 2)
    assert [pairs.shape for pairs in align_batch([np.zeros((2, 0)), np.ones((1, 1))])] == [(0, 2), (1, 2)]


weight_matrices = st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda shape: arrays(np.float64, shape, elements=st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 0.9, 1.0]))
)


@settings(max_examples=50, deadline=None)
@given(st.lists(weight_matrices, min_size=1, max_size=5))
def test_alignment_is_monotone_one_to_one_and_optimal(matrices):
    for weights, pairs in zip(matrices, align_batch(matrices), strict=True):
        if len(pairs):
            assert np.all(np.diff(pairs[:, 0]) > 0) and np.all(np.diff(pairs[:, 1]) > 0)  # monotone, one-to-one
            assert np.all(weights[pairs[:, 0], pairs[:, 1]] > 0)
        total = weights[pairs[:, 0], pairs[:, 1]].sum() if len(pairs) else 0.0
        assert np.isclose(total, brute_force_best(weights))
