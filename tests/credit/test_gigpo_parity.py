"""Parity with the published GiGPO reference: every case of tests/fixtures/gigpo_reference_cases.json."""

import json

import numpy as np
import pytest

from verl_agent_ext.credit import GiGPOConfig, StepBatch, compute_gigpo

SIMILARITY_NAMES = {"exact": "exact", "difflib_ratio": "difflib"}


def batch_of(samples: list[dict]) -> StepBatch:
    return StepBatch.from_columns(
        uid=[s["uid"] for s in samples],
        traj_uid=[s["traj_uid"] for s in samples],
        step_index=[s["step"] for s in samples],
        step_reward=[s["env_reward"] for s in samples],
        is_action_valid=[not s["invalid"] for s in samples],
        anchor_obs=[s["anchor_obs"] for s in samples],
    )


def config_of(params: dict) -> GiGPOConfig:
    thresh = params["similarity_thresh"]
    return GiGPOConfig(
        gamma=params["gamma"],
        step_advantage_w=params["step_advantage_w"],
        mode=params["mode"],
        episode_norm_over=params["episode_stats_over"],
        similarity=SIMILARITY_NAMES[params["similarity"]],
        similarity_thresh=0.95 if thresh is None else thresh,
        invalid_action_penalty=params["invalid_action_penalty"],
        epsilon=params["epsilon"],
    )


@pytest.fixture(scope="module")
def reference_cases(fixtures_dir):
    return json.loads((fixtures_dir / "gigpo_reference_cases.json").read_text())["cases"]


def check_case(case: dict) -> None:
    result = compute_gigpo(batch_of(case["samples"]), config_of(case["params"]))
    expected = case["expected"]
    np.testing.assert_array_equal(result.step_group, expected["step_group"], err_msg="step_group")
    for ours, theirs in [
        (result.episode_score, "episode_score"),
        (result.step_return, "step_return"),
        (result.episode_advantage, "episode_advantage"),
        (result.step_advantage, "step_advantage"),
        (result.advantage, "advantage"),
    ]:
        np.testing.assert_allclose(ours, expected[theirs], rtol=0, atol=1e-5, err_msg=theirs)


def test_every_reference_case_within_1e5(reference_cases):
    assert len(reference_cases) == 24
    failures = []
    for case in reference_cases:
        try:
            check_case(case)
        except AssertionError as error:
            failures.append(f"{case['name']}: {error}")
    assert not failures, "\n".join(failures)


def test_fixture_covers_every_option(reference_cases):
    params = [case["params"] for case in reference_cases]
    assert {p["mode"] for p in params} == {"mean_norm", "mean_std_norm"}
    assert {p["episode_stats_over"] for p in params} == {"steps", "trajectories"}
    assert {p["similarity"] for p in params} == {"exact", "difflib_ratio"}
    assert any(s["invalid"] for case in reference_cases for s in case["samples"])
