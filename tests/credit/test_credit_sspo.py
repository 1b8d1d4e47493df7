"""3SPO: state scores, step rewards and advantages worked by hand; branches; persistence; degenerate batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_agent_ext.credit import StepBatch
from verl_agent_ext.credit.config import sspo_config_from
from verl_agent_ext.credit.sspo import branch_lineage, branch_uid, compute_sspo, trajectory_paths, trajectory_states
from verl_agent_ext.credit.state_scores import ScoreParams, StateScoreTable, scores_from_counts, state_key, state_keys

A, B, C, WIN = (state_key(text) for text in ("a", "b", "c", "win"))


def small_table() -> StateScoreTable:
    """alpha = 1 (lambda(t) = log t) after two trajectories: a, b, a (success) and a, c (failure); t = 3."""
    table = StateScoreTable(ScoreParams(alpha=1.0))
    table.add_trajectories([([A, B, A], True), ([A, C], False)])
    return table


def test_scores_by_hand():
    table = small_table()
    assert table.t == 3
    n_succ, n_tot = table.counts([A, B, C, WIN])
    assert n_succ.tolist() == [1, 1, 0, 0] and n_tot.tolist() == [2, 1, 1, 0]  # a counted once per trajectory
    # S = exp(-log(3) * rate): a 3^-0.5, b 3^-1, c (no success) 1, unseen 1
    np.testing.assert_allclose(table.scores([A, B, C, WIN]), [3**-0.5, 1 / 3, 1.0, 1.0], rtol=1e-5)


def test_unseen_and_first_trajectory_score_one():
    table = StateScoreTable()  # alpha 50
    assert table.scores([A]).tolist() == [1.0]
    table.add_trajectories([([A], True)])
    assert table.t == 2
    assert table.scores([A])[0] == pytest.approx(math.exp(-50 * math.log(2) / (1 + 1e-6)))


@pytest.mark.parametrize(
    ("n_succ", "n_tot", "alive"),
    [
        (0, 9, True),  # 9 failures < xi = 10
        (0, 10, False),  # 10 failures, success rate 0 <= zeta: cut
        (1, 11, False),  # 10 failures, rate 1/11 = 0.09 <= 0.1: cut
        (2, 12, True),  # 10 failures, rate 2/12 = 0.17 > 0.1: kept
    ],
)
def test_indicator_cuts_hopeless_states(n_succ, n_tot, alive):
    params = ScoreParams(alpha=1.0, xi=10, zeta=0.1)
    score = scores_from_counts(np.array([n_succ]), np.array([n_tot]), t=5, params=params)[0]
    expected = math.exp(-math.log(5) * n_succ / (n_tot + 1e-6)) if alive else 0.0
    assert score == pytest.approx(expected)


def test_step_rewards_and_advantages_by_hand():
    # One group, T1: a -> b -> win (success, env reward 10 on the last step); T2: a -> a (invalid) -> c.
    batch = StepBatch.from_columns(
        uid=["g"] * 4,
        traj_uid=["T1", "T1", "T2", "T2"],
        step_index=[0, 1, 0, 1],
        step_reward=[0, 10, 0, 0],
        is_action_valid=[True, True, False, True],
        anchor_obs=["a", "b", "a", "a"],
    )
    result = compute_sspo(batch, ["b", "win", "a", "c"], small_table(), {"sspo": {"alpha": 1.0}})
    s_a, s_b = 3**-0.5, 1 / 3
    w_a, w_b = 0.5 * math.exp(-0.1 * 2), 0.5 * math.exp(-0.1 * 1)  # N_tot(a) = 2, N_tot(b) = 1
    rewards = [
        w_a + (0.5 - w_a) * (s_a - s_b),  # novel, score drops
        w_b + (0.5 - w_b) * (s_b - 1.0) + 0.5,  # novel, into an unseen state, success
        0.0 - 0.1,  # not novel, same score, invalid-action penalty
        w_a + (0.5 - w_a) * (s_a - 1.0),
    ]
    np.testing.assert_allclose(result.step_return, rewards, atol=1e-6)
    mean_a = (rewards[0] + rewards[2] + rewards[3]) / 3  # step group (g, a); (g, b) is a singleton
    step_adv = [rewards[0] - mean_a, 0.0, rewards[2] - mean_a, rewards[3] - mean_a]
    np.testing.assert_allclose(result.step_advantage, step_adv, atol=1e-6)
    scores = [10.0, 10.0, -0.1, 0.0]  # episode return minus the invalid penalty, every step row
    episode_adv = [s - np.mean(scores) for s in scores]
    np.testing.assert_allclose(result.episode_advantage, episode_adv, atol=1e-5)
    np.testing.assert_allclose(result.advantage, np.add(episode_adv, step_adv), atol=1e-5)
    step_only = compute_sspo(batch, ["b", "win", "a", "c"], small_table(), {"sspo": {"alpha": 1.0, "episode_w": 0}})
    np.testing.assert_allclose(step_only.advantage, step_adv, atol=1e-6)
    env_success = compute_sspo(
        batch, ["b", "win", "a", "c"], small_table(), {"sspo": {"alpha": 1.0, "success_reward": "env"}}
    )
    assert env_success.step_return[1] == pytest.approx(rewards[1] + 0.5 * (10 - 1))


def test_branch_paths_share_the_prefix():
    root = "r"
    child = branch_uid(root, 1, 1)  # forked at step 1 from r
    grandchild = branch_uid(child, 2, 1)
    assert branch_lineage(grandchild) == [("r", 0), (child, 1), (grandchild, 2)]
    # r: s0 -> s1 -> s2 (fail); child: shares r's step 0, then s1 -> x -> y; grandchild: child's 0-1, then x -> win
    batch = StepBatch.from_columns(
        uid=["g"] * 6,
        traj_uid=[root, root, child, child, grandchild, root],
        step_index=[0, 1, 1, 2, 2, 2],
        step_reward=[0] * 6,
        episode_success=[False, False, False, False, True, False],
        anchor_obs=["s0", "s1", "s1", "x", "x", "s2"],
    )
    paths = trajectory_paths(batch)
    assert paths[root].tolist() == [0, 1, 5]
    assert paths[child].tolist() == [0, 2, 3]
    assert paths[grandchild].tolist() == [0, 2, 4]
    nexts = np.asarray(["s1", "s2", "x", "y", "win", "end"], dtype=object)
    states = dict(zip(batch.traj_uid[[5, 3, 4]], trajectory_states(batch, nexts), strict=True))
    assert set(states[root][0].tolist()) == set(state_keys(["s0", "s1", "s2", "end"]).tolist())
    assert set(states[grandchild][0].tolist()) == set(state_keys(["s0", "s1", "x", "win"]).tolist())
    assert [success for _, success in states.values()] == [False, False, True]


def test_missing_ancestor_is_an_error():
    batch = StepBatch.from_columns(uid=["g"], traj_uid=[branch_uid("gone", 1, 1)], step_index=[1], step_reward=[0])
    with pytest.raises(ValueError, match="ancestor 'gone'"):
        trajectory_paths(batch)


def test_degenerate_batches_give_no_nan():
    table = StateScoreTable()
    empty = StepBatch.from_columns(uid=[], traj_uid=[], step_index=[], step_reward=[])
    assert len(compute_sspo(empty, [], table).advantage) == 0
    one = StepBatch.from_columns(uid=["g"], traj_uid=["t"], step_index=[0], step_reward=[0.0])
    assert compute_sspo(one, ["s"], table).advantage.tolist() == [0.0]
    same = StepBatch.from_columns(uid=["g"] * 3, traj_uid=["t", "u", "v"], step_index=[0] * 3, step_reward=[0.0] * 3)
    for mode in ("mean_norm", "mean_std_norm"):
        result = compute_sspo(same, [None] * 3, table, {"gigpo": {"mode": mode}})
        assert np.isfinite(result.advantage).all() and not result.advantage.any()


def test_persistence_round_trip_and_eviction():
    table = StateScoreTable(ScoreParams(alpha=2.0), max_states=10)
    table.add_trajectories([([state_key(f"s{i}") for i in range(8)], i % 2 == 0) for i in range(3)])
    restored = StateScoreTable.from_state_dict(table.state_dict())
    keys = state_keys([f"s{i}" for i in range(8)])
    assert restored.params == table.params and restored.t == table.t == 4
    np.testing.assert_array_equal(restored.scores(keys), table.scores(keys))
    # 8 + 5 new states > 10: the least recently updated are evicted down to 9; the newest stay
    table.add_trajectories([([state_key(f"n{i}") for i in range(5)], False)])
    assert len(table) == 9 and table.evicted == 4 and table.states_seen == 13
    assert table.counts(state_keys([f"n{i}" for i in range(5)]))[1].tolist() == [1] * 5


@settings(max_examples=40, deadline=None)
@given(
    n_tot=st.lists(st.integers(0, 40), min_size=1, max_size=20),
    share=st.floats(0, 1),
    t=st.integers(1, 10_000),
    alpha=st.floats(0, 100),
)
def test_scores_are_probabilities_and_fall_with_success(n_tot, share, t, alpha):
    n_tot = np.asarray(n_tot)
    n_succ = np.floor(n_tot * share).astype(int)
    params = ScoreParams(alpha=alpha, xi=1e9)  # indicator always on: score only falls with the success rate
    scores = scores_from_counts(n_succ, n_tot, t, params)
    assert ((scores >= 0) & (scores <= 1)).all()
    rate = n_succ / (n_tot + 1e-6)
    order = np.argsort(rate)
    assert (np.diff(scores[order]) <= 1e-12).all()


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="valid keys"):
        sspo_config_from({"sspo": {"alfa": 1}})
    with pytest.raises(ValueError, match="success_reward"):
        sspo_config_from({"sspo": {"success_reward": "won"}})
    assert sspo_config_from({"sspo": {"invalid_action_penalty": 0.5}}).gigpo.invalid_action_penalty == 0.5
