"""Episode-level relative advantage, hand-worked."""

import numpy as np
import pytest

from verl_agent_ext.credit import StepBatch, compute_episode_level
from verl_agent_ext.credit.episode import relative_advantage


def two_trajectory_group() -> StepBatch:
    # group g: trajectory a (3 steps, won 10), trajectory b (1 step, 0); group h: a single trajectory.
    return StepBatch.from_columns(
        uid=["g", "g", "g", "g", "h"],
        traj_uid=["a", "a", "a", "b", "c"],
        step_index=[0, 1, 2, 0, 0],
        step_reward=[0.0, 0.0, 10.0, 0.0, 4.0],
    )


def test_statistics_over_steps_weigh_long_trajectories_more():
    result = compute_episode_level(two_trajectory_group(), over="steps", use_std=False)
    # g over steps: [10, 10, 10, 0] -> mean 7.5; h is a singleton: mean 0.
    np.testing.assert_allclose(result.advantage, [2.5, 2.5, 2.5, -7.5, 4.0])


def test_statistics_over_trajectories_count_each_once():
    result = compute_episode_level(two_trajectory_group(), over="trajectories", use_std=True, epsilon=0.0)
    # g over trajectories: [10, 0] -> mean 5, unbiased std sqrt(50); h singleton: (4 - 0) / 1.
    s = np.sqrt(50.0)
    np.testing.assert_allclose(result.advantage, [5 / s, 5 / s, 5 / s, -5 / s, 4.0], rtol=1e-6)


def test_invalid_penalty_lowers_the_score_of_that_row_only():
    batch = StepBatch.from_columns(
        uid=["g", "g"], traj_uid=["a", "a"], step_index=[0, 1], step_reward=[0.0, 1.0], is_action_valid=[False, True]
    )
    result = compute_episode_level(batch, use_std=False, invalid_action_penalty=0.5)
    np.testing.assert_allclose(result.episode_score, [0.5, 1.0])
    np.testing.assert_allclose(result.advantage, [-0.25, 0.25])


def test_all_equal_scores_give_zero_not_nan():
    advantage = relative_advantage(np.full(4, 3.0), np.zeros(4, dtype=np.int64), np.arange(4), use_std=True)
    np.testing.assert_array_equal(advantage, np.zeros(4))


def test_unknown_statistics_option_lists_valid_ones():
    with pytest.raises(ValueError, match=r"valid: \['steps', 'trajectories'\]"):
        relative_advantage(np.zeros(1), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), over="rows")
