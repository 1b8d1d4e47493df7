"""StepBatch construction and the vectorised grouping helpers."""

import numpy as np
import pytest

from verl_agent_ext.credit import REQUIRED_METADATA_KEYS, StepBatch, step_batch_from_metadata
from verl_agent_ext.credit.batch import (
    combine_ids,
    contiguous_ids,
    discounted_returns,
    group_first_row,
    group_mean_std,
    trajectory_layout,
)


def test_contiguous_ids_follow_first_appearance():
    labels = np.asarray(["b", "a", "b", "c", "a"], dtype=object)
    np.testing.assert_array_equal(contiguous_ids(labels), [0, 1, 0, 2, 1])
    np.testing.assert_array_equal(contiguous_ids(np.asarray([7, 3, 7])), [0, 1, 0])
    np.testing.assert_array_equal(contiguous_ids(np.asarray([1, "1", 1], dtype=object)), [0, 1, 0])
    np.testing.assert_array_equal(combine_ids(np.asarray([0, 0, 1, 1]), np.asarray([0, 1, 0, 0])), [0, 1, 2, 2])


def test_group_statistics_are_unbiased_and_singletons_finite():
    ids = np.asarray([0, 0, 0, 1])
    mean, std, count = group_mean_std(np.asarray([1.0, 2.0, 3.0, 5.0]), ids)
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(std, [1.0, 0.0])
    np.testing.assert_array_equal(count, [3, 1])
    np.testing.assert_array_equal(group_first_row(np.asarray([1, 0, 1, 0])), [1, 0])


def test_discounted_returns_hand_worked_with_shuffled_rows():
    # trajectory A: rewards 1, 0, 2 at steps 0..2; trajectory B: reward 4 at its only step. Rows shuffled.
    traj = np.asarray([0, 1, 0, 0])
    step = np.asarray([2, 0, 0, 1])
    rewards = np.asarray([2.0, 4.0, 1.0, 0.0])
    position, lengths = trajectory_layout(traj, step)
    np.testing.assert_array_equal(position, [2, 0, 0, 1])
    np.testing.assert_array_equal(lengths, [3, 1])
    returns = discounted_returns(rewards, traj, position, gamma=0.5)
    np.testing.assert_allclose(returns, [2.0, 4.0, 1.0 + 0.5 * 0.0 + 0.25 * 2.0, 0.0 + 0.5 * 2.0])


def test_from_columns_defaults():
    batch = StepBatch.from_columns(uid=["g", "g"], traj_uid=["a", "b"], step_index=[0, 0], step_reward=[10.0, 0.0])
    np.testing.assert_array_equal(batch.episode_return, [10.0, 0.0])
    np.testing.assert_array_equal(batch.episode_success, [True, False])
    assert batch.is_action_valid.all() and list(batch.anchor_obs) == ["", ""]


def test_columns_of_different_lengths_raise():
    with pytest.raises(ValueError, match="same length"):
        StepBatch.from_columns(uid=["g"], traj_uid=["a", "b"], step_index=[0, 0], step_reward=[1.0, 0.0])


def test_missing_metadata_keys_are_named_with_the_remedy():
    metadata = {key: np.zeros(2) for key in REQUIRED_METADATA_KEYS if key not in ("anchor_obs", "step_reward")}
    with pytest.raises(ValueError, match=r"\['anchor_obs', 'step_reward'\] \(missing\).*agent loop.*docs/credit.md"):
        step_batch_from_metadata(metadata, np.zeros(2))


def test_metadata_with_wrong_length_raises():
    metadata = {key: np.zeros(2) for key in REQUIRED_METADATA_KEYS}
    metadata["traj_uid"] = np.zeros(3)
    with pytest.raises(ValueError, match="traj_uid"):
        step_batch_from_metadata(metadata, np.zeros(2))
