"""GiGPO hand-worked cases, fuzzy grouping with matchers, config reading."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from verl_agent_ext.credit import GiGPOConfig, StepBatch, compute_gigpo, gigpo_config_from
from verl_agent_ext.credit.step_groups import anchor_step_groups, greedy_clusters
from verl_agent_ext.semantic import DifflibMatcher, ExactMatcher


def hand_batch() -> StepBatch:
    """One group, two trajectories; both start in state "room"; a wins 1 at step 2, b fails in 2 steps."""
    return StepBatch.from_columns(
        uid=["g"] * 5,
        traj_uid=["a", "a", "a", "b", "b"],
        step_index=[0, 1, 2, 0, 1],
        step_reward=[0.0, 0.0, 1.0, 0.0, 0.0],
        anchor_obs=["room", "fridge", "apple", "room", "sink"],
        is_action_valid=[True, True, True, True, False],
    )


def test_hand_worked_mean_norm():
    result = compute_gigpo(hand_batch(), GiGPOConfig(gamma=0.5, mode="mean_norm", invalid_action_penalty=0.1))
    # episode scores per row: a: 1, 1, 1; b: 0, -0.1 (invalid row) -> mean over steps 0.58.
    np.testing.assert_allclose(result.episode_score, [1, 1, 1, 0, -0.1])
    np.testing.assert_allclose(result.episode_advantage, [0.42, 0.42, 0.42, -0.58, -0.68], atol=1e-6)
    # step returns: a: 0.25, 0.5, 1; b: 0, 0 - 0.1. Only "room" is shared: mean (0.25 + 0) / 2.
    np.testing.assert_allclose(result.step_return, [0.25, 0.5, 1.0, 0.0, -0.1])
    np.testing.assert_array_equal(result.step_group, [0, 1, 2, 0, 3])
    np.testing.assert_allclose(result.step_advantage, [0.125, 0, 0, -0.125, 0])
    np.testing.assert_allclose(result.advantage, result.episode_advantage + result.step_advantage)
    assert result.diagnostics["gigpo/step_group_singleton_share"] == 0.75


def test_hand_worked_mean_std_norm_with_weight():
    config = GiGPOConfig(gamma=0.5, mode="mean_std_norm", step_advantage_w=0.5, epsilon=0.0)
    result = compute_gigpo(hand_batch(), config)
    # "room" group: returns 0.25 and 0 -> unbiased std 0.25 / sqrt(2).
    np.testing.assert_allclose(result.step_advantage[[0, 3]], [1 / np.sqrt(2), -1 / np.sqrt(2)])
    np.testing.assert_allclose(result.advantage, result.episode_advantage + 0.5 * result.step_advantage)


def test_fuzzy_grouping_joins_the_first_cluster_above_threshold():
    texts = ["You see a mug 1.", "You see a mug 2.", "Nothing happens.", "You see a mug 3."]
    np.testing.assert_array_equal(greedy_clusters(texts, DifflibMatcher(), 0.9), [0, 0, 1, 0])
    np.testing.assert_array_equal(greedy_clusters(texts, ExactMatcher(), 0.9), [0, 1, 2, 3])
    groups = np.asarray([0, 0, 1, 1, 0, 0])
    obs = np.asarray(texts[:2] + texts[:2] + texts[2:], dtype=object)
    # clustering never crosses groups (uid)
    np.testing.assert_array_equal(anchor_step_groups(groups, obs, DifflibMatcher(), 0.9), [0, 0, 1, 1, 2, 0])


def test_embedding_grouping_with_the_real_encoder():
    batch = StepBatch.from_columns(
        uid=["g"] * 3,
        traj_uid=["a", "b", "c"],
        step_index=[0, 0, 0],
        step_reward=[1.0, 0.0, 0.0],
        anchor_obs=["You arrive at fridge 1.", "You arrive at the fridge 1.", "Your inventory is empty."],
    )
    result = compute_gigpo(batch, GiGPOConfig(similarity="embedding", similarity_thresh=0.9))
    np.testing.assert_array_equal(result.step_group, [0, 0, 1])


def test_config_from_verl_algorithm_section():
    algorithm = OmegaConf.create({"gamma": 0.9, "gigpo": {"mode": "mean_std_norm", "step_advantage_w": 0.5}})
    config = gigpo_config_from(algorithm)
    assert (config.gamma, config.mode, config.step_advantage_w) == (0.9, "mean_std_norm", 0.5)
    assert gigpo_config_from(None) == GiGPOConfig()
    assert gigpo_config_from({"gigpo": {"similarity": "difflib"}}).similarity == "difflib"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"mode": "foo"}, r"gigpo.mode='foo' is not a valid option; valid: \['mean_norm', 'mean_std_norm'\]"),
        ({"similarity": "cosine"}, r"valid: \['exact', 'difflib', 'static', 'embedding', 'cross_encoder'\]"),
        ({"episode_norm_over": "rows"}, r"valid: \['steps', 'trajectories'\]"),
        ({"omega": 1.0}, r"unknown key\(s\) \['omega'\] in algorithm.gigpo; valid keys"),
    ],
)
def test_bad_config_values_list_valid_ones(section, message):
    with pytest.raises(ValueError, match=message):
        gigpo_config_from({"gigpo": section})
