"""Property: every estimator (verl's grpo and the plugin's five) gives finite float advantages or a clear error.

Random step batches with injected NaN / inf / None rewards, returns, entropies and PRM rewards, wrong dtypes (int
rewards, flags as strings, lists) and traj_uid collisions go through `local.advantages.compute_advantages`, the
path train-local and credit-eval use (verl's registry for grpo, the plugin's `compute_step_advantage` for the rest).
"""

import numpy as np
import pytest
import torch
from credit_strategies import OBSERVATIONS, step_batches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from verl_agent_ext.credit.batch import STEP_BATCH_FIELDS
from verl_agent_ext.local.advantages import compute_advantages
from verl_agent_ext.local.batch import StepRows

ESTIMATORS = ("grpo", "gigpo", "scpo", "sspo", "empg", "istar")
RESPONSE_LEN = 3
BAD_VALUES = (float("nan"), float("inf"), -float("inf"), None)


def _python(value):
    return value.item() if isinstance(value, np.generic) else value


@st.composite
def faulty_batches(draw):
    """(StepRows, what was injected): a random batch (`credit_strategies.step_batches`) with zero or more faults."""
    rows = []
    if draw(st.integers(0, 9)):  # one batch in ten is empty
        batch = draw(step_batches(max_trajectories=3, max_steps=4))
        for i in range(len(batch)):
            row = {key: _python(getattr(batch, key)[i]) for key in STEP_BATCH_FIELDS}
            row.update(
                next_anchor_obs=draw(st.sampled_from(OBSERVATIONS)),
                step_entropy=draw(st.floats(0.0, 3.0)),
                prm_step_reward=draw(st.floats(-1.0, 1.0)),
            )
            rows.append(row)
    faults = set()
    if rows:
        for fault in draw(st.sets(st.sampled_from(["reward", "return", "entropy", "prm", "collision"]), max_size=2)):
            row = draw(st.integers(0, len(rows) - 1))
            bad = draw(st.sampled_from(BAD_VALUES))
            if fault == "reward":
                rows[row]["step_reward"] = bad
            elif fault == "return" and bad is not None:
                rows[row]["episode_return"] = bad
            elif fault == "entropy" and bad is not None:
                rows[row]["step_entropy"] = bad
            elif fault == "prm" and bad is not None:
                rows[row]["prm_step_reward"] = bad
            elif fault == "collision" and len({r["uid"] for r in rows}) > 1:
                other = next(r["traj_uid"] for r in rows if r["uid"] != rows[row]["uid"])
                rows[row]["traj_uid"] = other
            else:
                continue
            faults.add(fault)
    n = len(rows)
    integer_rewards = draw(st.booleans()) and not faults & {"return"}
    rewards = torch.zeros((n, RESPONSE_LEN), dtype=torch.int64 if integer_rewards else torch.float32)
    rewards[:, -1] = torch.as_tensor([r["episode_return"] for r in rows], dtype=torch.float64).to(rewards.dtype)
    string_flags = draw(st.booleans())
    columns = {}
    for key in rows[0] if rows else ("uid", "traj_uid", "step_index", "step_reward", "is_action_valid"):
        values = [r[key] for r in rows]
        if string_flags and key in ("is_action_valid", "episode_success"):
            values = [str(v) for v in values]
        columns[key] = np.asarray(values, dtype=object) if draw(st.booleans()) else values
    for key in ("episode_success", "anchor_obs", "action_text", "next_anchor_obs", "step_entropy", "prm_step_reward"):
        columns.setdefault(key, np.zeros(0, dtype=object))
    columns["uid"] = np.asarray(columns["uid"], dtype=object)
    rows_ = StepRows(
        prompts=[[0]] * n,
        responses=torch.zeros((n, RESPONSE_LEN), dtype=torch.long),
        response_mask=torch.ones((n, RESPONSE_LEN), dtype=torch.long),
        token_level_rewards=rewards,
        non_tensor_batch=columns,
    )
    return rows_, faults


def algorithm(name: str, policy: str):
    section = {"grpo": {}, "sspo": {"on_nonfinite": policy}}.get(name, {"on_nonfinite": policy})
    return OmegaConf.create({"adv_estimator": name, "gamma": 0.95, "norm_adv_by_std_in_grpo": True, name: section})


NONFINITE_FAULTS = {"reward", "return", "entropy", "prm"}
READS = {"grpo": {"return"}, "empg": {"reward", "return", "entropy"}, "istar": {"reward", "return", "prm"}}


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("policy", ["raise", "mask"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=faulty_batches())
def test_finite_float_advantages_or_a_clear_error(name, policy, case):
    rows, faults = case
    if name == "grpo":
        faults = faults - {"collision"}  # verl's grpo reads uid only
    reads = READS.get(name, {"reward", "return"})
    try:
        advantages, metrics = compute_advantages(name, rows, algorithm(name, policy))
    except ValueError as error:
        message = str(error)
        if "collision" in faults:
            assert "traj_uid must belong to one uid" in message
        else:
            assert faults & reads & NONFINITE_FAULTS, f"unexpected error without a fault: {message}"
            assert "NaN, inf or None" in message and "rows (trajectories [" in message
            assert policy == "raise" or name == "grpo"
        return
    assert "collision" not in faults
    assert advantages.dtype.is_floating_point and advantages.shape == rows.token_level_rewards.shape
    assert bool(torch.isfinite(advantages).all())
    if policy == "raise" or name == "grpo":
        assert not faults & reads & NONFINITE_FAULTS, "a non-finite input was accepted silently"
    elif faults & reads & NONFINITE_FAULTS:
        assert metrics[f"credit/{name}/masked_trajectories"] >= 1
