"""The arena's statistics (bootstrap, paired differences, AUC, episodes to a level) and its policy's log-probs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from verl_agent_ext.arena.cli import parse_seeds
from verl_agent_ext.arena.policy import CandidatePolicy, Context, FeatureHasher, chosen_log_probs, pack
from verl_agent_ext.arena.stats import (
    bootstrap_mean,
    curve_auc,
    episodes_to_reach,
    paired_difference,
    rank_correlation,
)


def test_bootstrap_mean_brackets_the_mean_and_narrows_with_more_seeds():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.4, 0.1, 5), rng.normal(0.4, 0.1, 200)
    for values in (few, many):
        mean, low, high = bootstrap_mean(values)
        assert low <= mean <= high and mean == pytest.approx(values.mean())
    assert bootstrap_mean(many)[2] - bootstrap_mean(many)[1] < bootstrap_mean(few)[2] - bootstrap_mean(few)[1]
    assert bootstrap_mean(np.array([0.3])) == (0.3, 0.3, 0.3)
    assert bootstrap_mean(np.array([0.2, np.nan, 0.4]))[0] == pytest.approx(0.3)  # NaN (no run) left out
    assert np.isnan(bootstrap_mean(np.array([np.nan]))[0])


def test_paired_difference_removes_the_shared_seed_spread():
    seed_effect = np.linspace(0.0, 0.8, 10)  # seeds differ a lot, b is a + 0.05 on every seed
    a, b = seed_effect, seed_effect + 0.05
    mean, low, high = paired_difference(b, a)
    assert mean == pytest.approx(0.05) and low == pytest.approx(0.05) and high == pytest.approx(0.05)
    unpaired = bootstrap_mean(b)[2] - bootstrap_mean(b)[1]
    assert unpaired > 0.2  # the same numbers unpaired: an interval far wider than the difference


def test_curve_auc_and_episodes_to_reach():
    episodes = np.array([0, 100, 200, 400])
    success = np.array([0.0, 0.5, 0.5, 1.0])
    # trapezoids: 100*0.25 + 100*0.5 + 200*0.75 = 225 over 400
    assert curve_auc(episodes, success) == pytest.approx(225 / 400)
    assert curve_auc(episodes, np.ones(4)) == 1.0
    assert episodes_to_reach(episodes, success, 0.5) == 100
    assert episodes_to_reach(episodes, success, 1.0) == 400
    assert np.isnan(episodes_to_reach(episodes, success, 1.01))


def test_rank_correlation_by_hand():
    # ranks of x: 1, 2.5, 2.5, 4 (a tie); of y: 2, 1, 3, 4; Pearson of the ranks = 0.6325 (2 / sqrt(10))
    assert rank_correlation(np.array([1.0, 2.0, 2.0, 5.0]), np.array([0.2, 0.1, 0.3, 0.9])) == pytest.approx(
        2 / np.sqrt(10), abs=1e-12
    )
    assert rank_correlation(np.arange(5.0), -(np.arange(5.0) ** 3)) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(np.ones(4), np.arange(4.0)))


def test_parse_seeds():
    assert parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    for bad in ("", "a", "3-1", "1-x"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def _contexts():
    return [
        Context("put a clean apple in fridge", "You arrive at fridge 1. The fridge 1 is closed.", ("open fridge 1",)),
        Context(
            "put a clean apple in fridge",
            "You see an apple 1 and a mug 2.",
            ("take apple 1 from countertop 1", "take mug 2 from countertop 1", "go to fridge 1"),
            ("go to countertop 1",),
        ),
        Context("find a mug", "Nothing happens.", ("look", "inventory")),
    ]


def test_policy_log_probs_and_entropy_match_a_per_step_softmax():
    policy = CandidatePolicy(buckets=4096, dim=8, seed=3)
    with torch.no_grad():
        policy.lin.weight.normal_()  # non-zero interaction weights too
    hasher = FeatureHasher(4096)
    steps = [hasher.features(context) for context in _contexts()]
    packed = pack(steps)
    with torch.no_grad():
        log_p, entropy = policy.log_probs(packed)
        logits = policy.logits(packed)
    for k, step in enumerate(steps):
        rows = (packed.segment == k).nonzero().squeeze(-1)
        assert len(rows) == len(step.act)
        expected = torch.log_softmax(logits[rows], dim=0)
        assert torch.allclose(log_p[rows], expected, atol=1e-6)
        assert entropy[k] == pytest.approx(float(-(expected.exp() * expected).sum()), abs=1e-6)
    assert entropy[0] == pytest.approx(0.0, abs=1e-6)  # a single candidate: no uncertainty
    for k, step in enumerate(steps):  # the rollout's numpy path on the same weights
        step_log_p, step_entropy = policy.step_log_probs(step)
        assert np.allclose(step_log_p, log_p[packed.segment == k].numpy(), atol=1e-5)
        assert step_entropy == pytest.approx(float(entropy[k]), abs=1e-5)
    chosen = torch.tensor([0, 2, 1])
    picked = chosen_log_probs(log_p, packed, chosen)
    assert torch.allclose(picked, log_p[packed.first + chosen])
    # one step packed alone scores as in the batch (features do not leak across steps)
    with torch.no_grad():
        alone_log_p, alone_entropy = policy.log_probs(pack([steps[1]]))
    assert torch.allclose(alone_log_p, log_p[packed.segment == 1], atol=1e-6)
    assert alone_entropy[0] == pytest.approx(float(entropy[1]), abs=1e-6)


def test_policy_gradient_raises_the_chosen_action():
    policy = CandidatePolicy(buckets=4096, dim=8, seed=0)
    hasher = FeatureHasher(4096)
    packed = pack([hasher.features(_contexts()[1])])
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    before = policy.log_probs(packed)[0][0].item()
    for _ in range(5):
        loss = -chosen_log_probs(policy.log_probs(packed)[0], packed, torch.tensor([0])).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert policy.log_probs(packed)[0][0].item() > before + 0.1
