"""EMPG: a hand-worked case, config reading, and hypothesis properties of the entropy modulation."""

import math

import numpy as np
import pytest
from credit_strategies import permuted, step_batches
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from verl_agent_ext.credit import (
    EMPGConfig,
    StepBatch,
    compute_empg,
    compute_episode_level,
    compute_gigpo,
    empg_config_from,
    step_entropy_from_metadata,
)
from verl_agent_ext.credit.batch import contiguous_ids, trajectory_layout
from verl_agent_ext.credit.empg import entropy_modulation, next_step_rows

LN2 = math.log(2.0)


def hand_batch() -> StepBatch:
    """One group, two trajectories: a succeeds (return 1) in 3 steps, b fails in 2. Rows in shuffled order."""
    return StepBatch.from_columns(
        uid=["g"] * 5,
        traj_uid=["b", "a", "a", "b", "a"],
        step_index=[1, 0, 2, 0, 1],
        step_reward=[0.0, 0.0, 1.0, 0.0, 0.0],
    )


def token_entropy(probabilities: list[float]) -> float:
    return -sum(p * math.log(p) for p in probabilities if p > 0)


def test_hand_worked_two_trajectories():
    # Step entropies from the tokens of each step's response (mean over tokens):
    #   a0: two certain tokens                       -> 0
    #   a1: one coin-flip token, one certain token     -> ln2 / 2
    #   a2: one certain token                          -> 0
    #   b0: two tokens uniform over 2 choices          -> ln2
    #   b1: one certain token                          -> 0
    certain, coin = [1.0], [0.5, 0.5]
    step_tokens = {
        "a0": [certain, certain],
        "a1": [coin, certain],
        "a2": [certain],
        "b0": [coin, coin],
        "b1": [certain],
    }
    h = {step: np.mean([token_entropy(t) for t in tokens]) for step, tokens in step_tokens.items()}
    assert (h["a1"], h["b0"]) == pytest.approx((LN2 / 2, LN2))
    rows = ["b1", "a0", "a2", "b0", "a1"]  # the row order of hand_batch()
    entropy = np.asarray([h[row] for row in rows])

    config = EMPGConfig(norm_by_std=False, epsilon=0.0, zeta=0.1)
    result = compute_empg(hand_batch(), entropy, config)

    # Base (GRPO over step rows, no std): scores a: 1, 1, 1; b: 0, 0 -> mean 0.6.
    base = {"a0": 0.4, "a1": 0.4, "a2": 0.4, "b0": -0.6, "b1": -0.6}
    # Min-max over the batch: min 0, max ln2 -> H~: a1 0.5, b0 1, the rest 0.
    norm = {"a0": 0.0, "a1": 0.5, "a2": 0.0, "b0": 1.0, "b1": 0.0}
    mean_scale = (3 + math.exp(-0.5) + math.exp(-1.0)) / 5
    g = {step: math.exp(-norm[step]) / mean_scale for step in rows}
    # Future clarity: exp(-H~ of the next step); none after a trajectory's last step (a2, b1).
    f = {"a0": math.exp(-0.5), "a1": 1.0, "a2": 0.0, "b0": 1.0, "b1": 0.0}
    modulated = {step: g[step] * base[step] + 0.1 * f[step] for step in rows}
    shift = sum(modulated.values()) / 5
    np.testing.assert_allclose(result.advantage, [modulated[row] - shift for row in rows], atol=1e-12)
    np.testing.assert_allclose(result.episode_advantage, [base[row] for row in rows], atol=1e-6)
    assert result.diagnostics["empg/step_entropy_max"] == pytest.approx(LN2)
    assert result.diagnostics["empg/centring_shift"] == pytest.approx(shift)
    # a confident success step gains, an uncertain failure step is attenuated
    assert g["a0"] > 1 > g["b0"]


def test_default_base_is_grpo_with_std_and_gigpo_base_is_the_full_gigpo_advantage():
    batch, entropy = hand_batch(), np.full(5, 0.3)
    zero = EMPGConfig(k=0.0, zeta=0.0)  # g = 1, no bonus: A = A_base - its batch mean
    grpo = compute_episode_level(batch, over="steps", use_std=True, invalid_action_penalty=0.1)
    empg = compute_empg(batch, entropy, zero)
    np.testing.assert_allclose(empg.advantage, grpo.advantage - grpo.advantage.mean(), atol=1e-7)
    gigpo = compute_gigpo(batch)
    empg = compute_empg(batch, entropy, EMPGConfig(base="gigpo", k=0.0, zeta=0.0))
    np.testing.assert_allclose(empg.advantage, gigpo.advantage - gigpo.advantage.mean(), atol=1e-7)


def test_config_from_verl_algorithm_section():
    algorithm = OmegaConf.create(
        {
            "gamma": 0.9,
            "norm_adv_by_std_in_grpo": False,
            "gigpo": {"invalid_action_penalty": 0.2},
            "scpo": {"matcher": "exact"},
            "empg": {"base": "scpo", "k": 2.0, "zeta": 0.05},
        }
    )
    config = empg_config_from(algorithm)
    assert (config.base, config.k, config.k_next, config.zeta, config.norm_by_std) == ("scpo", 2.0, 1.0, 0.05, False)
    assert config.gigpo.gamma == 0.9 and config.scpo.matcher == "exact"
    assert config.scpo.gigpo.invalid_action_penalty == 0.2
    assert empg_config_from(None) == EMPGConfig()
    with pytest.raises(ValueError, match=r"valid: \['grpo', 'gigpo', 'scpo'\]"):
        empg_config_from({"empg": {"base": "ppo"}})
    with pytest.raises(ValueError, match="valid keys"):
        empg_config_from({"empg": {"kk": 1.0}})
    with pytest.raises(ValueError, match="empg.zeta"):
        EMPGConfig(zeta=-0.1)


def test_missing_or_malformed_step_entropy_is_explained():
    with pytest.raises(ValueError, match="'step_entropy'.*bypass_mode.*train-local"):
        step_entropy_from_metadata({"uid": np.zeros(3)}, 3)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        step_entropy_from_metadata({"step_entropy": np.zeros(2)}, 3)
    with pytest.raises(ValueError, match="non-finite"):
        compute_empg(hand_batch(), np.asarray([0.1, np.nan, 0.2, 0.3, 0.4]))


def test_inactive_rows_stay_out_of_the_statistics():
    batch = hand_batch()
    entropy = np.asarray([0.2, 0.1, 0.5, 0.9, 0.3])
    alone = compute_empg(batch, entropy)
    padded = StepBatch.from_columns(
        uid=[*batch.uid, "pad"],
        traj_uid=[*batch.traj_uid, "padding-0"],
        step_index=[*batch.step_index, 0],
        step_reward=[*batch.step_reward, 0.0],
    )
    active = np.asarray([True] * 5 + [False])
    with_padding = compute_empg(padded, np.append(entropy, 0.0), active=active)
    np.testing.assert_allclose(with_padding.advantage[:5], alone.advantage)
    assert with_padding.advantage[5] == 0.0


def entropies(n: int, draw) -> np.ndarray:
    values = draw(st.lists(st.floats(0.0, 5.0, allow_nan=False), min_size=n, max_size=n))
    return np.asarray(values)


@st.composite
def batch_with_entropy(draw, max_steps: int = 5):
    batch = draw(step_batches(max_steps=max_steps))
    return batch, entropies(len(batch), draw)


def layout(batch: StepBatch) -> np.ndarray:
    traj = contiguous_ids(batch.traj_uid)
    position, _ = trajectory_layout(traj, batch.step_index)
    return next_step_rows(traj, position)


@settings(max_examples=60, deadline=None)
@given(data=batch_with_entropy(), k=st.floats(0.0, 5.0))
def test_g_has_batch_mean_one(data, k):
    batch, entropy = data
    g, f = entropy_modulation(entropy, layout(batch), np.ones(len(batch), bool), EMPGConfig(k=k))
    assert g.mean() == pytest.approx(1.0, abs=1e-6)
    assert np.all(g > 0) and np.all((f >= 0) & (f <= 1))


@settings(max_examples=60, deadline=None)
@given(data=batch_with_entropy(), value=st.floats(0.0, 5.0), zeta=st.floats(0.0, 1.0))
def test_uniform_entropy_gives_the_base_advantage_up_to_centring(data, value, zeta):
    batch, _ = data
    uniform = np.full(len(batch), value)
    result = compute_empg(batch, uniform, EMPGConfig(zeta=zeta))
    base = compute_episode_level(batch, over="steps", use_std=True, invalid_action_penalty=0.1).advantage
    # H~ = 0 everywhere: g = 1 / (1 + eps), f = 1 where a next step exists (the bonus is not constant: a
    # trajectory's last step gets none), so A = g A_base + zeta 1[t+1 exists], centred.
    has_next = (layout(batch) >= 0).astype(float)
    modulated = base / (1 + 1e-8) + zeta * has_next
    np.testing.assert_allclose(result.advantage, modulated - modulated.mean(), atol=1e-6)
    if zeta == 0:
        np.testing.assert_allclose(result.advantage, base - base.mean(), atol=1e-6)
    assert abs(result.advantage.mean()) < 1e-9


@settings(max_examples=40, deadline=None)
@given(data=batch_with_entropy(max_steps=1), equal=st.booleans())
def test_no_nan_with_equal_entropies_or_one_step_trajectories(data, equal):
    batch, entropy = data
    if equal:
        entropy = np.full(len(batch), entropy[0])
    result = compute_empg(batch, entropy)
    assert np.all(np.isfinite(result.advantage))
    assert all(math.isfinite(value) for value in result.diagnostics.values())
    # one-step trajectories: no step t+1, so no bonus at all
    assert result.diagnostics["empg/bonus_mean"] == 0.0


@settings(max_examples=40, deadline=None)
@given(data=batch_with_entropy(), seed=st.integers(0, 10_000))
def test_row_permutation_permutes_the_advantages(data, seed):
    batch, entropy = data
    shuffled, perm = permuted(batch, seed)
    moved, original = compute_empg(shuffled, entropy[perm]), compute_empg(batch, entropy)
    # the base's episode statistics are float32 sums (reference numerics): their order changes the last bits
    np.testing.assert_allclose(moved.advantage, original.advantage[perm], rtol=1e-4, atol=1e-5)
