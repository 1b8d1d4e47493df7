"""SCPO: hand-worked credit, reference choice, and hypothesis properties against GiGPO."""

import numpy as np
import pytest
from credit_strategies import permuted, step_batches
from hypothesis import given, settings

from verl_agent_ext.credit import GiGPOConfig, SCPOConfig, StepBatch, compute_gigpo, compute_scpo, scpo_config_from
from verl_agent_ext.credit.scpo import step_texts
from verl_agent_ext.semantic import Matcher


class TableMatcher(Matcher):
    """A fixed similarity table over single-letter texts (hand-worked cases)."""

    def __init__(self, table: dict[tuple[str, str], float]) -> None:
        self.table = table

    def similarity(self, queries, keys):
        return np.asarray([[1.0 if q == k else self.table.get((q, k), 0.0) for k in keys] for q in queries])


def hand_batch() -> StepBatch:
    """Group g: success s = steps A B C (reward 10 at C); failure f = steps A X B. Group h: two failures."""
    return StepBatch.from_columns(
        uid=["g"] * 6 + ["h"] * 2,
        traj_uid=["s", "s", "s", "f", "f", "f", "p", "q"],
        step_index=[0, 1, 2, 0, 1, 2, 0, 0],
        step_reward=[0, 0, 10, 0, 0, 0, 0, 0],
        anchor_obs=["o0", "o1", "o2", "o0", "o3", "o4", "o0", "o0"],
        action_text=["A", "B", "C", "A", "X", "B", "A", "A"],
    )


def config(**scpo) -> SCPOConfig:
    """Hand-worked cases: the paper's formula (alpha in reward units) and one reference, the longest."""
    defaults = dict(
        theta=0.5,
        alpha=2.0,
        alpha_scale="reward",
        reference="longest",
        step_text="action",
        gigpo=GiGPOConfig(gamma=1.0),
    )
    return SCPOConfig(**{**defaults, **scpo})


def test_hand_worked_soft_credit_and_shaping():
    matcher = TableMatcher({("X", "B"): 0.75, ("X", "C"): 0.9})
    result = compute_scpo(hand_batch(), config(), matcher)
    # f = A X B against s = A B C. Candidates (score > 0.5): A-A 1.0, X-B 0.75, X-C 0.9, B-B 1.0.
    # credits (M - 0.5) / 0.5: A-A 1, X-B 0.5, X-C 0.8, B-B 1. Best monotone set: A-A, X-B, ... B cannot follow
    # X-B at B again, so A-A + X-C? no: C comes after B, B-B needs j=1 < 2. Options: {A-A, X-B} = 1.5,
    # {A-A, X-C} = 1.8, {A-A, B-B} = 2.0 (X skipped). Optimum 2.0.
    np.testing.assert_allclose(result.credit, [0, 0, 0, 1.0, 0, 1.0, 0, 0])
    gigpo = compute_gigpo(hand_batch(), GiGPOConfig(gamma=1.0))
    np.testing.assert_allclose(result.step_return - gigpo.step_return, 2.0 * result.credit)
    np.testing.assert_allclose(result.episode_advantage, gigpo.episode_advantage)
    assert result.diagnostics["scpo/matched_pairs"] == 2.0
    assert result.diagnostics["scpo/credited_failed_step_share"] == pytest.approx(2 / 5)


def test_reference_choice_longest_shortest_all():
    # success s1 = A B (short), s2 = A C D (long); failure f = A C.
    batch = StepBatch.from_columns(
        uid=["g"] * 7,
        traj_uid=["s1", "s1", "s2", "s2", "s2", "f", "f"],
        step_index=[0, 1, 0, 1, 2, 0, 1],
        step_reward=[0, 10, 0, 0, 10, 0, 0],
        action_text=["A", "B", "A", "C", "D", "A", "C"],
    )
    matcher = TableMatcher({})
    longest = compute_scpo(batch, config(reference="longest"), matcher)
    shortest = compute_scpo(batch, config(reference="shortest"), matcher)
    every = compute_scpo(batch, config(reference="all"), matcher)
    np.testing.assert_allclose(longest.credit[5:], [1, 1])
    np.testing.assert_allclose(shortest.credit[5:], [1, 0])
    np.testing.assert_allclose(every.credit[5:], [1, 1])


def test_inconsistent_success_inside_a_trajectory_raises():
    batch = StepBatch.from_columns(
        uid=["g", "g"], traj_uid=["a", "a"], step_index=[0, 1], step_reward=[0, 1], episode_success=[False, True]
    )
    with pytest.raises(ValueError, match=r"same on every step.*\['a'\]"):
        compute_scpo(batch, SCPOConfig(matcher="exact"))


def test_step_text_options():
    batch = hand_batch()
    assert step_texts(batch, "obs_action")[0] == "o0\nA"
    assert step_texts(batch, "obs")[0] == "o0" and step_texts(batch, "action")[0] == "A"
    with pytest.raises(ValueError, match="obs_response needs each step's response text"):
        step_texts(batch, "obs_response")
    responses = [f"<think>t{i}</think><action>{a}</action>" for i, a in enumerate(batch.action_text)]
    with_responses = StepBatch(**{**batch.__dict__, "response_text": np.asarray(responses, dtype=object)})
    assert step_texts(with_responses, "obs_response")[0] == "o0\n<think>t0</think><action>A</action>"
    result = compute_scpo(with_responses, SCPOConfig(matcher="exact", step_text="obs_response"))
    assert np.isfinite(result.advantage).all()
    # matcher=auto: exact string matching, static vectors for free-text responses
    assert SCPOConfig().matcher == "exact" and SCPOConfig(step_text="obs_response").matcher == "static"
    assert SCPOConfig(step_text="obs_response").theta == 0.99


def test_scpo_keys_override_gigpo_keys_and_bad_values_list_valid_ones():
    parsed = scpo_config_from({"gamma": 0.9, "gigpo": {"step_advantage_w": 1.0}, "scpo": {"step_advantage_w": 0.5}})
    assert parsed.gigpo.step_advantage_w == 0.5 and parsed.gigpo.gamma == 0.9
    with pytest.raises(ValueError, match=r"valid: \['longest', 'shortest', 'all'\]"):
        scpo_config_from({"scpo": {"reference": "median"}})
    valid = r"valid: \['auto', 'embedding', 'static', 'cross_encoder', 'exact', 'difflib'\]"
    with pytest.raises(ValueError, match=valid):
        scpo_config_from({"scpo": {"matcher": "bm25"}})
    with pytest.raises(ValueError, match="theta"):
        SCPOConfig(theta=1.0)


EXACT = dict(matcher="exact", theta=0.5, alpha=0.7, alpha_scale="reward")  # alpha in reward units: shaped = 0.7 c


def assert_same_advantages(a, b):
    np.testing.assert_allclose(a.advantage, b.advantage, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.step_advantage, b.step_advantage, rtol=0, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(step_batches())
def test_scpo_equals_gigpo_with_alpha_zero(batch):
    assert_same_advantages(compute_scpo(batch, SCPOConfig(**{**EXACT, "alpha": 0.0})), compute_gigpo(batch))


@settings(max_examples=50, deadline=None)
@given(step_batches())
def test_scpo_equals_gigpo_without_successes(batch):
    failed = StepBatch(**{**batch.__dict__, "episode_success": np.zeros(len(batch), dtype=bool)})
    result = compute_scpo(failed, SCPOConfig(**EXACT))
    assert_same_advantages(result, compute_gigpo(failed))
    assert not result.credit.any() and result.diagnostics["scpo/matched_pairs"] == 0


@settings(max_examples=100, deadline=None)
@given(step_batches())
def test_groups_without_a_success_equal_gigpo_in_mixed_batches(batch):
    """Rows of a group with no success are GiGPO's exactly, whatever the other groups of the batch contain."""
    result, gigpo = compute_scpo(batch, SCPOConfig(**EXACT)), compute_gigpo(batch)
    groups_with_success = set(batch.uid[batch.episode_success].tolist())
    no_success = np.asarray([uid not in groups_with_success for uid in batch.uid.tolist()])
    np.testing.assert_allclose(result.advantage[no_success], gigpo.advantage[no_success], rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.step_advantage[no_success], gigpo.step_advantage[no_success], atol=1e-9)
    assert not result.credit[no_success].any()


@settings(max_examples=100, deadline=None)
@given(step_batches())
def test_successful_rows_keep_returns_and_episode_advantage(batch):
    result, gigpo = compute_scpo(batch, SCPOConfig(**EXACT)), compute_gigpo(batch)
    success = batch.episode_success
    np.testing.assert_allclose(result.step_return[success], gigpo.step_return[success], rtol=0, atol=0)
    np.testing.assert_allclose(result.episode_advantage[success], gigpo.episode_advantage[success], rtol=0, atol=0)


def test_shaping_can_move_a_successful_steps_advantage():
    """The successful step s0 shares anchor group (g, o0) with the credited failed step f0: f0's shaped return
    (0 + 2 * 1) raises the group mean from 5 to 6, so s0's step advantage drops from 5 to 4 (mean_norm)."""
    matcher = TableMatcher({("X", "B"): 0.75, ("X", "C"): 0.9})
    result = compute_scpo(hand_batch(), config(), matcher)
    gigpo = compute_gigpo(hand_batch(), GiGPOConfig(gamma=1.0))
    assert result.step_return[0] == gigpo.step_return[0] == 10.0
    assert gigpo.step_advantage[0] == pytest.approx(5.0)
    assert result.step_advantage[0] == pytest.approx(4.0)


@settings(max_examples=50, deadline=None)
@given(step_batches())
def test_only_failed_steps_get_credit_never_negative(batch):
    result = compute_scpo(batch, SCPOConfig(**EXACT))
    assert np.all(result.credit >= 0) and np.all(result.credit <= 1)
    assert not result.credit[batch.episode_success].any()
    gigpo = compute_gigpo(batch)
    np.testing.assert_allclose(result.step_return - gigpo.step_return, 0.7 * result.credit, atol=1e-12)
    np.testing.assert_allclose(result.episode_advantage, gigpo.episode_advantage)


@settings(max_examples=50, deadline=None)
@given(step_batches())
def test_no_nan_or_inf_in_any_output(batch):
    for result in (
        compute_gigpo(batch),
        compute_gigpo(batch, GiGPOConfig(mode="mean_std_norm")),
        compute_scpo(batch, SCPOConfig(**EXACT)),
    ):
        for values in (result.advantage, result.episode_advantage, result.step_advantage, result.step_return):
            assert np.isfinite(values).all()
        assert all(np.isfinite(v) for v in result.diagnostics.values())


@settings(max_examples=50, deadline=None)
@given(step_batches(), step_batches().map(len))
def test_row_permutation_permutes_outputs(batch, seed):
    shuffled, perm = permuted(batch, seed)
    for estimator, cfg in (
        (compute_gigpo, GiGPOConfig(mode="mean_std_norm", episode_norm_over="trajectories")),
        (compute_scpo, SCPOConfig(**EXACT, reference="all")),
    ):
        original, moved = estimator(batch, cfg), estimator(shuffled, cfg)
        # episode statistics are float32 sums (reference numerics): their order changes the last bits
        np.testing.assert_allclose(moved.advantage, original.advantage[perm], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(moved.credit, original.credit[perm], atol=1e-12)


def test_real_encoder_credits_a_paraphrased_step():
    batch = StepBatch.from_columns(
        uid=["g"] * 4,
        traj_uid=["s", "s", "f", "f"],
        step_index=[0, 1, 0, 1],
        step_reward=[0, 10, 0, 0],
        anchor_obs=["You are in the kitchen.", "The fridge 1 is open.", "You are in the kitchen.", "☕ ünïcode"],
        action_text=["go to fridge 1", "take apple 1 from fridge 1", "go to the fridge 1", ""],
    )
    result = compute_scpo(batch, SCPOConfig(matcher="embedding", theta=0.8, alpha=1.0))
    assert result.credit[2] > 0 and result.credit[3] == 0
    assert result.credit[:2].sum() == 0


@pytest.mark.parametrize("matcher", ["static", "embedding"])  # obs_response's default, and the bi-encoder
@settings(max_examples=15, deadline=None)
@given(batch=step_batches(max_groups=2))
def test_properties_hold_with_the_real_encoder(matcher, batch):
    result = compute_scpo(batch, SCPOConfig(matcher=matcher))  # each matcher's default theta, default settings
    assert np.isfinite(result.advantage).all() and np.all((result.credit >= 0) & (result.credit <= 1))
    assert not result.credit[batch.episode_success].any()
    np.testing.assert_allclose(result.episode_advantage, compute_gigpo(batch).episode_advantage)


def test_alpha_scale_success_return_is_a_fraction_of_a_success():
    matcher = TableMatcher({("X", "B"): 0.75, ("X", "C"): 0.9})
    absolute = compute_scpo(hand_batch(), config(alpha=2.0), matcher)
    relative = compute_scpo(hand_batch(), config(alpha=0.2, alpha_scale="success_return"), matcher)
    np.testing.assert_allclose(relative.step_return, absolute.step_return)  # 0.2 x the success return 10 = 2.0
    np.testing.assert_allclose(relative.advantage, absolute.advantage)
    # rewards 10x smaller: the relative credit shrinks with them, so every advantage is exactly 10x smaller
    small = hand_batch()
    small = StepBatch(
        **{**small.__dict__, "step_reward": small.step_reward / 10, "episode_return": small.episode_return / 10}
    )
    scaled = compute_scpo(small, config(alpha=0.2, alpha_scale="success_return"), matcher)
    np.testing.assert_allclose(scaled.advantage * 10, relative.advantage, atol=1e-5)
    with pytest.raises(ValueError, match="alpha_scale"):
        SCPOConfig(alpha_scale="episode")


def step_cost_batch(success_return: float, failure_return: float) -> StepBatch:
    """hand_batch with step costs: every step costs 1, so the success s returns `success_return`."""
    return StepBatch.from_columns(
        uid=["g"] * 6,
        traj_uid=["s", "s", "s", "f", "f", "f"],
        step_index=[0, 1, 2, 0, 1, 2],
        step_reward=[-1, -1, success_return + 2, -1, -1, failure_return + 2],
        episode_success=[True] * 3 + [False] * 3,
        anchor_obs=["o0", "o1", "o2", "o0", "o3", "o4"],
        action_text=["A", "B", "C", "A", "X", "B"],
    )


@pytest.mark.parametrize(
    "success_return, failure_return, unit", [(-2.0, -3.0, 1.0), (5.0, -3.0, 8.0), (10.0, 0.0, 10.0)]
)
def test_alpha_unit_is_the_success_height_and_credit_agrees_with_its_metrics(success_return, failure_return, unit):
    """Finding 5: with step costs (non-positive success returns) credit used to be multiplied by 0 while the
    diagnostics reported it; alpha's unit is now the success's height above min(0, lowest return)."""
    batch = step_cost_batch(success_return, failure_return)
    scpo_config = config(alpha=1.0, alpha_scale="success_return")
    result = compute_scpo(batch, scpo_config, TableMatcher({}))
    gigpo = compute_gigpo(batch, GiGPOConfig(gamma=1.0))
    np.testing.assert_allclose(result.step_return - gigpo.step_return, unit * result.credit)
    credited = result.credit > 0
    assert credited.sum() == 2
    assert result.diagnostics["scpo/mean_credit"] == pytest.approx(result.credit[credited].mean())
    assert not np.allclose(result.advantage, gigpo.advantage)


def test_a_success_no_higher_than_the_floor_gives_no_credit_and_says_so():
    batch = step_cost_batch(-3.0, -3.0)  # the success returns no more than the failure: u = 0
    result = compute_scpo(batch, config(alpha=1.0, alpha_scale="success_return"), TableMatcher({}))
    np.testing.assert_allclose(result.advantage, compute_gigpo(batch, GiGPOConfig(gamma=1.0)).advantage)
    assert (result.credit == 0).all()
    assert result.diagnostics["scpo/mean_credit"] == 0.0
    assert result.diagnostics["scpo/credited_failed_step_share"] == 0.0
