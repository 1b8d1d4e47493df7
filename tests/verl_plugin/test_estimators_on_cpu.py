"""The registered verl functions on CPU: shapes, masking, config reading, errors, parity with the pure API."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from verl_agent_ext.agent import STEP_METADATA_KEYS
from verl_agent_ext.credit import (
    REQUIRED_METADATA_KEYS,
    GiGPOConfig,
    SCPOConfig,
    StepBatch,
    compute_gigpo,
    compute_scpo,
)
from verl_agent_ext.estimators import compute_step_advantage, last_diagnostics

RESPONSE_LEN = 6


def rollout_batch():
    """Two groups: g0 has one success (t0) and two failures; g1 fails everywhere. 14 step rows."""
    rows = [
        # uid, traj, step, obs, action, reward, valid
        ("g0", "t0", 0, "You are in the middle of a room.", "go to fridge 1", 0.0, True),
        ("g0", "t0", 1, "The fridge 1 is closed.", "open fridge 1", 0.0, True),
        ("g0", "t0", 2, "You open the fridge 1. You see an apple 1.", "take apple 1 from fridge 1", 10.0, True),
        ("g0", "t1", 0, "You are in the middle of a room.", "go to fridge 1", 0.0, True),
        ("g0", "t1", 1, "The fridge 1 is closed.", "open the fridge", 0.0, False),
        ("g0", "t1", 2, "Nothing happens.", "look", 0.0, True),
        ("g0", "t2", 0, "You are in the middle of a room.", "go to sinkbasin 1", 0.0, True),
        ("g0", "t2", 1, "On the sinkbasin 1, you see nothing.", "go to fridge 1", 0.0, True),
        ("g1", "t3", 0, "You are in the kitchen.", "go to cabinet 1", 0.0, True),
        ("g1", "t3", 1, "The cabinet 1 is closed.", "open cabinet 1", 0.0, True),
        ("g1", "t4", 0, "You are in the kitchen.", "go to cabinet 1", 0.0, True),
        ("g1", "t4", 1, "The cabinet 1 is closed.", "inventory", 0.0, True),
        ("g1", "t5", 0, "You are in the kitchen.", "go to drawer 1", 0.0, True),
        ("g1", "t5", 1, "On the drawer 1, you see a key.", "take key", 0.0, True),
    ]
    uid, traj, step, obs, action, reward, valid = (
        np.asarray(column, dtype=object) for column in zip(*rows, strict=True)
    )
    episode_return = {"t0": 10.0}
    success = np.asarray([episode_return.get(t, 0.0) > 0 for t in traj], dtype=object)
    non_tensor_batch = {
        "uid": uid,
        "traj_uid": traj,
        "step_index": step,
        "anchor_obs": obs,
        "action_text": action,
        "step_reward": reward,
        "is_action_valid": valid,
        "episode_success": success,
    }
    lengths = [3, 6, 2, 5, 4, 6, 1, 2, 3, 4, 5, 6, 2, 3]
    response_mask = torch.zeros(len(rows), RESPONSE_LEN)
    token_level_rewards = torch.zeros(len(rows), RESPONSE_LEN)
    for i, length in enumerate(lengths):
        response_mask[i, :length] = 1
        token_level_rewards[i, length - 1] = episode_return.get(traj[i], 0.0)
    return token_level_rewards, response_mask, non_tensor_batch


def pure_batch(non_tensor_batch, token_level_rewards):
    return StepBatch(
        uid=non_tensor_batch["uid"],
        traj_uid=non_tensor_batch["traj_uid"],
        step_index=non_tensor_batch["step_index"].astype(np.int64),
        step_reward=non_tensor_batch["step_reward"].astype(np.float64),
        is_action_valid=non_tensor_batch["is_action_valid"].astype(bool),
        episode_return=token_level_rewards.sum(-1).double().numpy(),
        episode_success=non_tensor_batch["episode_success"].astype(bool),
        anchor_obs=non_tensor_batch["anchor_obs"],
        action_text=non_tensor_batch["action_text"],
    )


ALGORITHM = OmegaConf.create(
    {
        "adv_estimator": "scpo",
        "gamma": 0.95,
        "gigpo": {"mode": "mean_std_norm", "step_advantage_w": 1.0},
        "scpo": {"theta": 0.5, "alpha": 0.5, "matcher": "exact", "step_text": "action"},
    }
)


@pytest.mark.parametrize("name", ["gigpo", "scpo"])
def test_registered_function_shapes_masking_and_parity(name):
    token_level_rewards, response_mask, non_tensor_batch = rollout_batch()
    fn = get_adv_estimator_fn(name)
    advantages, returns = fn(
        token_level_rewards=token_level_rewards,
        response_mask=response_mask,
        index=non_tensor_batch["uid"],
        config=ALGORITHM,
        non_tensor_batch=non_tensor_batch,
    )
    assert advantages.shape == returns.shape == token_level_rewards.shape
    assert advantages.dtype == token_level_rewards.dtype
    assert torch.all(advantages[response_mask == 0] == 0) and torch.all(returns[response_mask == 0] == 0)
    batch = pure_batch(non_tensor_batch, token_level_rewards)
    if name == "gigpo":
        expected = compute_gigpo(batch, GiGPOConfig(gamma=0.95, mode="mean_std_norm"))
    else:
        config = SCPOConfig(
            theta=0.5,
            alpha=0.5,
            matcher="exact",
            step_text="action",
            gigpo=GiGPOConfig(gamma=0.95, mode="mean_std_norm"),
        )
        expected = compute_scpo(batch, config)
    per_row = advantages.sum(-1) / response_mask.sum(-1)
    np.testing.assert_allclose(per_row.numpy(), expected.advantage, atol=1e-5)
    assert (advantages != 0).any()


def test_scpo_credits_the_failed_step_that_repeats_the_success():
    token_level_rewards, response_mask, non_tensor_batch = rollout_batch()
    gigpo_returns = compute_step_advantage(
        "gigpo", token_level_rewards, response_mask, None, ALGORITHM, non_tensor_batch
    )[1]
    _, returns, diagnostics = compute_step_advantage(
        "scpo", token_level_rewards, response_mask, None, ALGORITHM, non_tensor_batch
    )
    gain = (returns - gigpo_returns)[:, 0]
    # Only the exact action "go to fridge 1" repeats the reference (t0): t1 at step 0 and t2 at step 1. Each
    # failed trajectory is aligned on its own, so both earn full credit c = 1, times alpha = 0.5 of the group's
    # success return 10 (alpha_scale=success_return, the default). g1 has no success: untouched.
    np.testing.assert_allclose(gain.numpy(), [0, 0, 0, 5.0, 0, 0, 0, 5.0, 0, 0, 0, 0, 0, 0])
    assert diagnostics["scpo/matched_pairs"] == 2.0
    assert diagnostics["scpo/credited_failed_step_share"] == pytest.approx(2 / 11)
    assert last_diagnostics() == diagnostics


def test_scpo_matches_with_real_encoder_by_default_model():
    token_level_rewards, response_mask, non_tensor_batch = rollout_batch()
    config = {"gamma": 0.95, "scpo": {"theta": 0.8, "alpha": 1.0, "matcher": "static"}}  # static MiniLM vectors
    advantages, returns, diagnostics = compute_step_advantage(
        "scpo", token_level_rewards, response_mask, None, config, non_tensor_batch
    )
    assert torch.isfinite(advantages).all()
    assert diagnostics["scpo/matched_pairs"] >= 1  # "go to fridge 1" repeats the success's first step
    assert 0 < diagnostics["scpo/mean_credit"] <= 1


def test_missing_metadata_names_keys_and_remedy():
    token_level_rewards, response_mask, non_tensor_batch = rollout_batch()
    del non_tensor_batch["traj_uid"], non_tensor_batch["episode_success"]
    with pytest.raises(ValueError, match=r"\['traj_uid', 'episode_success'\].*agent loop"):
        get_adv_estimator_fn("gigpo")(
            token_level_rewards, response_mask, config=ALGORITHM, non_tensor_batch=non_tensor_batch
        )
    with pytest.raises(ValueError, match="without non_tensor_batch"):
        get_adv_estimator_fn("scpo")(token_level_rewards, response_mask, config=ALGORITHM)


def test_config_errors_list_valid_values():
    token_level_rewards, response_mask, non_tensor_batch = rollout_batch()
    bad_mode = OmegaConf.create({"gamma": 0.95, "gigpo": {"mode": "foo"}})
    with pytest.raises(ValueError, match=r"gigpo.mode='foo'.*mean_norm.*mean_std_norm"):
        compute_step_advantage("gigpo", token_level_rewards, response_mask, None, bad_mode, non_tensor_batch)
    bad_key = OmegaConf.create({"scpo": {"thetta": 0.5}})
    with pytest.raises(ValueError, match=r"thetta.*valid keys"):
        compute_step_advantage("scpo", token_level_rewards, response_mask, None, bad_key, non_tensor_batch)
    with pytest.raises(ValueError, match=r"valid: \['3spo', 'empg', 'gigpo', 'istar', 'scpo', 'sspo'\]"):
        compute_step_advantage("gipo", token_level_rewards, response_mask, None, None, non_tensor_batch)


def test_index_must_agree_with_uid():
    token_level_rewards, response_mask, non_tensor_batch = rollout_batch()
    wrong_index = np.asarray(["x"] * len(non_tensor_batch["uid"]), dtype=object)
    with pytest.raises(ValueError, match="disagree"):
        compute_step_advantage("gigpo", token_level_rewards, response_mask, wrong_index, None, non_tensor_batch)


def test_contract_keys_are_stable():
    assert REQUIRED_METADATA_KEYS == (
        "uid",
        "traj_uid",
        "step_index",
        "anchor_obs",
        "action_text",
        "step_reward",
        "is_action_valid",
        "episode_success",
    )
    # The agent loop writes exactly these keys (verl sets `uid` itself), plus the optional ones of 3SPO.
    from verl_agent_ext.credit.sspo import SSPO_METADATA_KEYS

    assert ("uid", *STEP_METADATA_KEYS) == (*REQUIRED_METADATA_KEYS, *SSPO_METADATA_KEYS)


def test_verl_algo_config_dataclass_is_read():
    from verl.trainer.config import AlgoConfig

    from verl_agent_ext.credit import gigpo_config_from, scpo_config_from

    assert gigpo_config_from(AlgoConfig(gamma=0.9)).gamma == 0.9
    assert scpo_config_from(AlgoConfig(gamma=0.9)).gigpo.gamma == 0.9
