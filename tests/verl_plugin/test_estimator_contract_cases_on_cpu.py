"""The estimator contract case by case (issue 25 findings 1, 4, 7, 9): refuse or mask, never a silent NaN."""

import numpy as np
import pytest
import torch

from verl_agent_ext.credit import GiGPOConfig, StepBatch, compute_gigpo, gigpo_config_from, scpo_config_from
from verl_agent_ext.credit.batch import checked_step_batch
from verl_agent_ext.credit.config import EMPGConfig, empg_config_from
from verl_agent_ext.estimators import compute_step_advantage

STEP_ESTIMATORS = ("gigpo", "scpo", "sspo", "empg", "istar")


def batch(returns=None, rewards=None, dtype=torch.float32):
    """g0: t0 won (2 steps), t1 lost (2 steps); g1: t2, t3 lost (1 step each). verl tensors + metadata."""
    traj = ["t0", "t0", "t1", "t1", "t2", "t3"]
    ret = returns or {"t0": 10.0, "t1": 0.0, "t2": 0.0, "t3": 0.0}
    tlr = torch.zeros(6, 2, dtype=dtype)
    tlr[:, -1] = torch.as_tensor([ret[t] for t in traj], dtype=torch.float64).to(dtype)
    metadata = {
        "uid": np.asarray(["g0"] * 4 + ["g1"] * 2, dtype=object),
        "traj_uid": np.asarray(traj, dtype=object),
        "step_index": np.asarray([0, 1, 0, 1, 0, 0]),
        "anchor_obs": np.asarray(["room", "fridge", "room", "fridge", "hall", "hall"], dtype=object),
        "action_text": np.asarray(["go", "open", "go", "look", "go", "look"], dtype=object),
        "step_reward": np.asarray(rewards or [0.0, 10.0, 0.0, 0.0, 0.0, 0.0], dtype=object),
        "is_action_valid": np.ones(6, dtype=bool),
        "episode_success": np.asarray([t == "t0" and ret["t0"] > 0 for t in traj]),
        "next_anchor_obs": np.asarray(["fridge", "end", "fridge", "end", "end", "end"], dtype=object),
        "step_entropy": np.linspace(0.1, 1.0, 6),
        "prm_step_reward": np.linspace(-1.0, 1.0, 6),
    }
    return tlr, torch.ones(6, 2), metadata


@pytest.mark.parametrize("name", STEP_ESTIMATORS)
@pytest.mark.parametrize("fault", ["nan_return", "inf_return", "none_reward", "nan_reward"])
def test_nonfinite_input_is_refused_naming_key_rows_and_trajectory(name, fault):  # finding 1
    returns = {"t0": 10.0, "t1": float("nan" if fault == "nan_return" else "inf"), "t2": 0.0, "t3": 0.0}
    rewards = [0.0, 10.0, 0.0, None if fault == "none_reward" else float("nan"), 0.0, 0.0]
    tlr, mask, metadata = batch(**({"returns": returns} if "return" in fault else {"rewards": rewards}))
    key = "episode_return" if "return" in fault else "step_reward"
    with pytest.raises(ValueError, match=rf"{key}.*NaN, inf or None on \d of 6 rows \(trajectories \['t1'\]\)"):
        compute_step_advantage(name, tlr, mask, None, None, metadata)


@pytest.mark.parametrize("name", STEP_ESTIMATORS)
def test_masked_trajectories_get_zero_and_are_counted(name):  # finding 1, on_nonfinite=mask
    tlr, mask, metadata = batch(rewards=[0.0, 10.0, 0.0, float("nan"), 0.0, 0.0])
    section = {"on_nonfinite": "mask"}
    advantages, _, diagnostics = compute_step_advantage(name, tlr, mask, None, {name: section}, metadata)
    assert torch.isfinite(advantages).all()
    assert (advantages[2:4] == 0).all() and diagnostics[f"{name}/masked_trajectories"] == 1.0
    assert diagnostics[f"{name}/masked_rows"] == 2.0


@pytest.mark.parametrize("name", STEP_ESTIMATORS)
def test_integer_rewards_give_float_advantages_equal_to_float_rewards(name):  # finding 4
    tlr, mask, metadata = batch()
    as_float, _, _ = compute_step_advantage(name, tlr, mask, None, None, metadata)
    as_int, _, _ = compute_step_advantage(name, tlr.long(), mask, None, None, batch()[2])
    assert as_int.dtype == torch.float32
    torch.testing.assert_close(as_int, as_float)


@pytest.mark.parametrize("name", STEP_ESTIMATORS)
def test_traj_uid_under_two_uids_is_refused(name):  # finding 7
    tlr, mask, metadata = batch()
    metadata["traj_uid"] = np.asarray(["t0", "t0", "t1", "t1", "t0", "t3"], dtype=object)
    with pytest.raises(ValueError, match=r"traj_uid must belong to one uid.*\['t0'\]"):
        compute_step_advantage(name, tlr, mask, None, None, metadata)


@pytest.mark.parametrize("name", STEP_ESTIMATORS)
def test_empty_batch_gives_empty_advantages(name):  # finding 9
    tlr, mask, metadata = batch()
    advantages, returns, _ = compute_step_advantage(
        name, tlr[:0], mask[:0], None, None, {key: value[:0] for key, value in metadata.items()}
    )
    assert advantages.shape == (0, 2) and returns.shape == (0, 2)


def test_flags_as_strings_are_parsed_strictly():  # finding 9
    tlr, mask, metadata = batch()
    metadata["is_action_valid"] = np.asarray(["True", "False", "true", "TRUE", "1", "0"], dtype=object)
    checked = checked_step_batch(metadata, tlr.sum(-1).numpy())
    np.testing.assert_array_equal(checked.batch.is_action_valid, [True, False, True, True, True, False])
    metadata["is_action_valid"] = np.asarray(["True", "nope", "true", "TRUE", "1", "0"], dtype=object)
    with pytest.raises(ValueError, match="is_action_valid must be a boolean.*'nope' at row 1"):
        checked_step_batch(metadata, tlr.sum(-1).numpy())
    assert empg_config_from({"norm_adv_by_std_in_grpo": "False"}).norm_by_std is False


@pytest.mark.parametrize("name", STEP_ESTIMATORS)
def test_lone_surrogates_negative_steps_and_narrow_masks(name):  # finding 9
    tlr, mask, metadata = batch()
    metadata["anchor_obs"] = metadata["anchor_obs"] + "\ud800"
    metadata["next_anchor_obs"] = metadata["next_anchor_obs"] + "\udfff"
    advantages, _, _ = compute_step_advantage(name, tlr, mask, None, None, metadata)
    assert torch.isfinite(advantages).all()
    metadata["step_index"] = np.asarray([0, -1, 0, 1, 0, 0])
    with pytest.raises(ValueError, match="step_index must be an integer >= 0.*-1 at row 1"):
        compute_step_advantage(name, tlr, mask, None, None, metadata)
    with pytest.raises(ValueError, match=r"response_mask \(6, 1\) must have the same shape"):
        compute_step_advantage(name, tlr, mask[:, :1], None, None, batch()[2])


def test_sspo_refuses_a_slash_traj_uid_that_is_not_a_branch():  # finding 9
    tlr, mask, metadata = batch()
    metadata["traj_uid"] = np.asarray(["env/a", "env/a", "t1", "t1", "t2", "t3"], dtype=object)
    with pytest.raises(ValueError, match="'env/a'.*reserve"):
        compute_step_advantage("sspo", tlr, mask, None, None, metadata)
    compute_step_advantage("gigpo", tlr, mask, None, None, metadata)  # a plain label elsewhere


@pytest.mark.parametrize(
    "section, message",
    [
        ({"gigpo": {"step_advantage_w": "1"}}, r"gigpo.step_advantage_w='1' must be a finite number"),
        ({"gigpo": {"step_advantage_w": float("nan")}}, r"gigpo.step_advantage_w=nan must be a finite number"),
        ({"gamma": "high"}, r"gamma='high' must be a finite number"),
        ({"scpo": {"theta": "0.8"}}, r"scpo.theta='0.8' must be a finite number"),
        ({"gigpo": 5}, r"algorithm.gigpo must be a section of keys"),
        ({"gigpo": {"on_nonfinite": "drop"}}, r"gigpo.on_nonfinite='drop' is not a valid option"),
    ],
)
def test_settings_of_the_wrong_type_name_the_key(section, message):  # finding 9
    with pytest.raises(ValueError, match=message):
        scpo_config_from(section)


def test_zero_epsilon_with_std_normalisation_stays_finite():  # finding 9
    equal = StepBatch.from_columns(
        uid=["g"] * 4,
        traj_uid=["a", "a", "b", "b"],
        step_index=[0, 1, 0, 1],
        step_reward=[0.0] * 4,
        anchor_obs=["x", "y", "x", "y"],
    )
    result = compute_gigpo(equal, GiGPOConfig(mode="mean_std_norm", epsilon=0.0))
    assert np.isfinite(result.advantage).all() and (result.advantage == 0).all()
    assert gigpo_config_from({"gigpo": {"threads": 2}}).threads == 2
    assert EMPGConfig(epsilon=0.0).epsilon == 0.0
