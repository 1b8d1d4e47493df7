"""The trainer's credit step: any verl-registered estimator on step rows, with diagnostics for gigpo/scpo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from verl_agent_ext.local.advantages import compute_advantages, estimator_fn
from verl_agent_ext.local.batch import StepRows


def rows_of_two_episodes() -> StepRows:
    """One group, two 2-step episodes: the first wins (return 10 on every step row), the second fails."""
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]])
    rewards = torch.zeros(4, 3)
    rewards[0, 1] = rewards[1, 2] = 10.0  # the episode return on each step's last response token
    column = lambda *values: np.array(values, dtype=object)  # noqa: E731
    return StepRows(
        prompts=[[1, 2]] * 4,
        responses=mask.clone(),
        response_mask=mask,
        token_level_rewards=rewards,
        non_tensor_batch={
            "uid": column("g", "g", "g", "g"),
            "traj_uid": column("a", "a", "b", "b"),
            "step_index": column(0, 1, 0, 1),
            # the failed episode's second step repeats the winner's (same state, same action): SCPO credits it
            "anchor_obs": column("room", "at fridge", "room", "at fridge"),
            "action_text": column("go to fridge 1", "open fridge 1", "go to sink 1", "open fridge 1"),
            "step_reward": column(0.0, 10.0, 0.0, 0.0),
            "is_action_valid": column(True, True, True, True),
            "episode_success": column(True, True, False, False),
            "task_type": column("t", "t", "t", "t"),
        },
    )


@pytest.mark.parametrize("name", ["grpo", "gigpo", "scpo"])
def test_winning_episode_gets_positive_advantage(name):
    algorithm = OmegaConf.create({"gamma": 0.95, "norm_adv_by_std_in_grpo": True, "scpo": {"matcher": "exact"}})
    rows = rows_of_two_episodes()
    advantages, metrics = compute_advantages(name, rows, algorithm)
    assert advantages.shape == rows.response_mask.shape
    assert torch.all(advantages[rows.response_mask == 0] == 0)  # broadcast over response tokens only
    per_row = advantages[:, 0]
    assert per_row[0] > 0 and per_row[2] < 0  # the first steps share an anchor: the winner's is credited
    assert metrics["credit/nonzero_share"] > 0
    if name != "grpo":
        assert "credit/gigpo/step_group_size_mean" in metrics


def test_scpo_credits_the_failed_step_that_repeats_the_winners():
    algorithm = OmegaConf.create({"gamma": 0.95, "norm_adv_by_std_in_grpo": True, "scpo": {"matcher": "exact"}})
    rows = rows_of_two_episodes()
    scpo, metrics = compute_advantages("scpo", rows, algorithm)
    gigpo, _ = compute_advantages("gigpo", rows, algorithm)
    assert scpo[3, 0] > gigpo[3, 0]  # the matched failed step gains
    assert scpo[2, 0] == gigpo[2, 0]  # the unmatched one does not
    assert metrics["credit/scpo/matched_pairs"] >= 1


def test_unknown_estimator_lists_the_registered_ones():
    with pytest.raises(ValueError, match="grpo"):
        estimator_fn("no-such-estimator")
