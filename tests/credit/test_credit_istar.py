"""iStar: hand-worked RLOO channels and pair loss, config reading, and hypothesis properties."""

import numpy as np
import pytest
import torch
from credit_strategies import permuted, step_batches
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from verl_agent_ext.credit import IStarConfig, StepBatch, compute_istar, istar_config_from
from verl_agent_ext.credit.batch import contiguous_ids
from verl_agent_ext.credit.istar import (
    implicit_step_rewards,
    normalise_step_rewards,
    pairwise_loss_row_weights,
    pairwise_trajectory_loss,
    trajectory_pairs,
)


def hand_batch() -> StepBatch:
    """Group g: a wins in 2 steps, b fails in 2, c fails in 1. Group h: d alone, wins in 1. Rows shuffled."""
    return StepBatch.from_columns(
        uid=["g", "g", "g", "h", "g", "g"],
        traj_uid=["b", "a", "c", "d", "a", "b"],
        step_index=[1, 0, 0, 0, 1, 0],
        step_reward=[0, 0, 0, 10, 10, 0],
    )


# r per row, in the row order above: a = (0.5, 1.0), b = (-0.5, 0.0), c = (0.2), d = (0.3)
HAND_R = np.asarray([0.0, 0.5, 0.2, 0.3, 1.0, -0.5])


def test_hand_worked_episode_and_all_steps_channels():
    result = compute_istar(hand_batch(), IStarConfig(step_advantage_w=0.5), prm_step_reward=HAND_R)
    # A^E: n = 3 trajectories, scores 10, 0, 0 -> a: 3/2 (10 - 10/3) = 10 = 10 - mean(0, 0); b, c: -5. d alone: 10.
    np.testing.assert_allclose(result.episode_advantage, [-5, 10, -5, 10, 10, -5], atol=1e-5)
    # A^S: M = 5 rows in g, sum 1.2, mean 0.24, scale 5/4; e.g. a0: 0.5 - (1.2 - 0.5) / 4 = 0.325. d alone: raw r.
    np.testing.assert_allclose(result.step_advantage, [-0.3, 0.325, -0.05, 0.3, 0.95, -0.925], atol=1e-12)
    np.testing.assert_allclose(result.advantage, result.episode_advantage + 0.5 * result.step_advantage)
    np.testing.assert_allclose(result.step_return, HAND_R)


def test_hand_worked_first_steps_baseline_of_the_released_code():
    result = compute_istar(hand_batch(), IStarConfig(step_baseline="first_steps"), prm_step_reward=HAND_R)
    # baseline = mean of first steps a0, b0, c0 = (0.5 - 0.5 + 0.2) / 3; scale n/(n-1) = 3/2 with n = 3 trajectories
    m = 0.2 / 3
    expected = [1.5 * (0.0 - m), 1.5 * (0.5 - m), 1.5 * (0.2 - m), 0.3, 1.5 * (1.0 - m), 1.5 * (-0.5 - m)]
    np.testing.assert_allclose(result.step_advantage, expected, atol=1e-12)


def test_invalid_action_penalty_lowers_the_rows_episode_score():
    batch = StepBatch.from_columns(
        uid=["g"] * 4,
        traj_uid=["a", "a", "b", "b"],
        step_index=[0, 1, 0, 1],
        step_reward=[0, 10, 0, 0],
        is_action_valid=[True, True, True, False],
    )
    result = compute_istar(batch, IStarConfig(invalid_action_penalty=0.1), prm_step_reward=np.zeros(4))
    np.testing.assert_allclose(result.episode_score, [10, 10, 0, -0.1])
    # baseline from each trajectory's first step (10 and 0): b1 = 2 * (-0.1 - 5)
    np.testing.assert_allclose(result.episode_advantage, [10, 10, -10, -10.2], atol=1e-5)


def test_hand_worked_pair_loss_and_row_weights():
    batch = hand_batch()
    group, traj = contiguous_ids(batch.uid), contiguous_ids(batch.traj_uid)
    success = batch.episode_success
    # Q(a) = 0.75, Q(b) = -0.25, Q(c) = 0.2; pairs (a, b) and (a, c) in g; h has no loser.
    pairs = trajectory_pairs(group, traj, success)
    names = np.asarray(["b", "a", "c", "d"])  # contiguous traj ids in order of first appearance
    assert sorted(map(tuple, names[pairs])) == [("a", "b"), ("a", "c")]
    expected = (np.log1p(np.exp(-1.0)) + np.log1p(np.exp(-0.55))) / 2
    loss, n = pairwise_trajectory_loss(torch.as_tensor(HAND_R), group, traj, success)
    assert n == 2 and float(loss) == pytest.approx(expected)
    value, weights, n = pairwise_loss_row_weights(HAND_R, group, traj, success)
    assert value == pytest.approx(expected)

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    dq_a = -(sigmoid(-1.0) + sigmoid(-0.55)) / 2
    dq_b, dq_c = sigmoid(-1.0) / 2, sigmoid(-0.55) / 2
    # each row of a 2-step trajectory carries half of dL/dQ
    np.testing.assert_allclose(weights, [dq_b / 2, dq_a / 2, dq_c, 0.0, dq_a / 2, dq_b / 2])


def test_no_pair_gives_zero_loss_zero_weights():
    batch = StepBatch.from_columns(uid=["g", "g"], traj_uid=["a", "b"], step_index=[0, 0], step_reward=[0, 0])
    group, traj = contiguous_ids(batch.uid), contiguous_ids(batch.traj_uid)
    rewards = torch.tensor([0.3, -0.2], requires_grad=True)
    loss, n = pairwise_trajectory_loss(rewards, group, traj, batch.episode_success)
    assert n == 0 and loss.item() == 0.0 and loss.requires_grad
    assert pairwise_loss_row_weights(rewards.detach(), group, traj, batch.episode_success)[1:] == (
        pytest.approx([0.0, 0.0]),
        0,
    )


def test_inactive_rows_leave_the_pairs_and_the_means():
    group, traj = np.zeros(4, dtype=np.int64), np.asarray([0, 0, 1, 2])
    success = np.asarray([True, True, False, False])
    active = np.asarray([True, False, True, False])  # trajectory 2 is padding only
    assert trajectory_pairs(group, traj, success, active).tolist() == [[0, 1]]
    loss, _ = pairwise_trajectory_loss(torch.tensor([1.0, 100.0, 0.0, 5.0]), group, traj, success, active)
    assert float(loss) == pytest.approx(np.log1p(np.exp(-1.0)))


def test_step_rewards_and_batch_max_normalisation():
    prm = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    old = torch.tensor([[-2.0, -2.0, -9.0], [-1.0, -1.0, -7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    rewards = implicit_step_rewards(prm, old, mask, beta=0.05)
    np.testing.assert_allclose(rewards.numpy(), [0.05, 0.05])
    np.testing.assert_allclose(normalise_step_rewards(np.asarray([0.2, -0.4]), "batch_max", 0.0), [0.5, -1.0])
    np.testing.assert_allclose(normalise_step_rewards(np.asarray([0.2, -0.4]), "none"), [0.2, -0.4])


def test_config_from_verl_sections_and_errors():
    algorithm = OmegaConf.create({"gigpo": {"invalid_action_penalty": 0.3}, "istar": {"step_advantage_w": 0.5}})
    config = istar_config_from(algorithm)
    assert (config.step_advantage_w, config.invalid_action_penalty, config.beta) == (0.5, 0.3, 0.05)
    override = OmegaConf.create({"gigpo": {"invalid_action_penalty": 0.3}, "istar": {"invalid_action_penalty": 0.0}})
    assert istar_config_from(override).invalid_action_penalty == 0.0
    with pytest.raises(ValueError, match=r"bta.*valid keys"):
        istar_config_from({"istar": {"bta": 1}})
    with pytest.raises(ValueError, match=r"step_baseline='mean'.*all_steps.*first_steps"):
        IStarConfig(step_baseline="mean")
    with pytest.raises(ValueError, match=r"normalize='max'.*batch_max"):
        IStarConfig(normalize="max")


def test_missing_or_bad_step_rewards_raise():
    with pytest.raises(ValueError, match="prm_step_reward"):
        compute_istar(hand_batch())
    with pytest.raises(ValueError, match="one value per row"):
        compute_istar(hand_batch(), prm_step_reward=np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        compute_istar(hand_batch(), prm_step_reward=np.full(6, np.nan))


def step_rewards_for(batch: StepBatch, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=len(batch))


@settings(max_examples=60, deadline=None)
@given(batch=step_batches(), seed=st.integers(0, 2**16))
def test_all_steps_is_leave_one_out_and_sums_to_zero(batch, seed):
    rewards = step_rewards_for(batch, seed)
    result = compute_istar(batch, IStarConfig(step_advantage_w=0.7), prm_step_reward=rewards)
    group = contiguous_ids(batch.uid)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        if len(rows) == 1:
            assert result.step_advantage[rows[0]] == rewards[rows[0]]
            continue
        others = (rewards[rows].sum() - rewards[rows]) / (len(rows) - 1)
        np.testing.assert_allclose(result.step_advantage[rows], rewards[rows] - others, atol=1e-9)
        assert abs(result.step_advantage[rows].sum()) < 1e-9
    np.testing.assert_allclose(result.advantage, result.episode_advantage + 0.7 * result.step_advantage)
    assert np.all(np.isfinite(result.advantage))


@settings(max_examples=40, deadline=None)
@given(batch=step_batches(), seed=st.integers(0, 2**16), baseline=st.sampled_from(["all_steps", "first_steps"]))
def test_row_permutation_permutes_outputs(batch, seed, baseline):
    rewards = step_rewards_for(batch, seed)
    config = IStarConfig(step_baseline=baseline)
    shuffled, order = permuted(batch, seed)
    base = compute_istar(batch, config, prm_step_reward=rewards)
    moved = compute_istar(shuffled, config, prm_step_reward=rewards[order])
    np.testing.assert_allclose(moved.advantage, base.advantage[order], atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(batch=step_batches(), seed=st.integers(0, 2**16))
def test_pair_weights_are_the_gradient_and_balance(batch, seed):
    rewards = step_rewards_for(batch, seed)
    group, traj = contiguous_ids(batch.uid), contiguous_ids(batch.traj_uid)
    loss, weights, pairs = pairwise_loss_row_weights(rewards, group, traj, batch.episode_success)
    assert pairs == len(trajectory_pairs(group, traj, batch.episode_success))
    assert abs(weights.sum()) < 1e-9  # each pair pushes the winner up exactly as much as the loser down
    assert np.all(weights[batch.episode_success] <= 0) and np.all(weights[~batch.episode_success] >= 0)
    if pairs:  # finite difference along the row with the largest weight
        row = int(np.argmax(np.abs(weights)))
        step = 1e-6 * np.eye(len(rewards))[row]
        plus = pairwise_loss_row_weights(rewards + step, group, traj, batch.episode_success)[0]
        minus = pairwise_loss_row_weights(rewards - step, group, traj, batch.episode_success)[0]
        assert (plus - minus) / 2e-6 == pytest.approx(weights[row], rel=1e-4, abs=1e-8)
