"""The registered verl estimator `istar`: tensors and masking, the missing PRM key, parity with verl's rloo."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import compute_rloo_outcome_advantage, get_adv_estimator_fn

from verl_agent_ext.credit import IStarConfig, StepBatch, compute_istar
from verl_agent_ext.credit.batch import contiguous_ids

RESPONSE_LEN = 5


def verl_batch(seed: int):
    """Random groups of 1-4 trajectories of 1-4 steps, shuffled rows; a success returns 10 on every step row."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(rng.integers(1, 4)):
        for t in range(rng.integers(1, 5)):
            won = bool(rng.integers(0, 2))
            rows += [(f"g{g}", f"g{g}t{t}", s, won) for s in range(rng.integers(1, 5))]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    uid, traj, step, won = (np.asarray(column, dtype=object) for column in zip(*rows, strict=True))
    n = len(rows)
    lengths = rng.integers(1, RESPONSE_LEN + 1, size=n)
    response_mask = (torch.arange(RESPONSE_LEN)[None, :] < torch.as_tensor(lengths)[:, None]).float()
    token_level_rewards = torch.zeros(n, RESPONSE_LEN)
    token_level_rewards[torch.arange(n), torch.as_tensor(lengths) - 1] = torch.as_tensor(
        [10.0 if w else 0.0 for w in won]
    )
    non_tensor_batch = {
        "uid": uid,
        "traj_uid": traj,
        "step_index": step,
        "anchor_obs": np.asarray(["room"] * n, dtype=object),
        "action_text": np.asarray(["look"] * n, dtype=object),
        "step_reward": np.zeros(n, dtype=object),
        "is_action_valid": np.asarray([True] * n, dtype=object),
        "episode_success": won,
        "prm_step_reward": rng.normal(size=n),
    }
    return token_level_rewards, response_mask, non_tensor_batch


ALGORITHM = OmegaConf.create({"adv_estimator": "istar", "istar": {"step_advantage_w": 0.5}})


@pytest.mark.parametrize("seed", range(5))
def test_registered_function_broadcasts_the_pure_result_over_the_mask(seed):
    token_level_rewards, response_mask, ntb = verl_batch(seed)
    advantages, returns = get_adv_estimator_fn("istar")(
        token_level_rewards, response_mask, index=ntb["uid"], config=ALGORITHM, non_tensor_batch=ntb
    )
    batch = StepBatch.from_columns(
        uid=ntb["uid"],
        traj_uid=ntb["traj_uid"],
        step_index=ntb["step_index"],
        step_reward=np.zeros(len(ntb["uid"])),
        episode_return=token_level_rewards.sum(-1).double().numpy(),
        episode_success=ntb["episode_success"].astype(bool),
    )
    expected = compute_istar(batch, IStarConfig(step_advantage_w=0.5), prm_step_reward=ntb["prm_step_reward"])
    assert advantages.shape == returns.shape == response_mask.shape
    assert torch.all(advantages[response_mask == 0] == 0)
    per_row = advantages.sum(-1) / response_mask.sum(-1)
    np.testing.assert_allclose(per_row.numpy(), expected.advantage, atol=1e-5)
    np.testing.assert_allclose((returns.sum(-1) / response_mask.sum(-1)).numpy(), ntb["prm_step_reward"], atol=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_episode_channel_equals_verls_rloo_on_one_row_per_trajectory(seed):
    token_level_rewards, _, ntb = verl_batch(seed)
    batch = StepBatch.from_columns(
        uid=ntb["uid"],
        traj_uid=ntb["traj_uid"],
        step_index=ntb["step_index"],
        step_reward=np.zeros(len(ntb["uid"])),
        episode_return=token_level_rewards.sum(-1).double().numpy(),
    )
    result = compute_istar(batch, prm_step_reward=np.zeros(len(batch)))
    traj = contiguous_ids(batch.traj_uid)
    _, first = np.unique(traj, return_index=True)
    scores = torch.as_tensor(batch.episode_return[first], dtype=torch.float32)[:, None]
    expected, _ = compute_rloo_outcome_advantage(scores, torch.ones_like(scores), batch.uid[first])
    np.testing.assert_allclose(result.episode_advantage, expected[:, 0].numpy()[traj], atol=1e-4)


def test_missing_step_reward_key_names_it_and_its_provider():
    token_level_rewards, response_mask, ntb = verl_batch(0)
    del ntb["prm_step_reward"]
    with pytest.raises(ValueError, match=r"adv_estimator=istar needs .*'prm_step_reward'.*PRM"):
        get_adv_estimator_fn("istar")(token_level_rewards, response_mask, config=ALGORITHM, non_tensor_batch=ntb)
    with pytest.raises(ValueError, match="without non_tensor_batch"):
        get_adv_estimator_fn("istar")(token_level_rewards, response_mask, config=ALGORITHM)
