"""Episode metrics from per-step columns, worked by hand."""

import numpy as np
import pytest

from verl_agent_ext.verl_plugin.metrics import combine_credit_diagnostics, episode_metrics


def test_episode_metrics_hand_worked():
    # t0: 3 steps, won (pick); t1: 2 steps, lost (pick), one invalid; t2: 1 step, won (heat)
    columns = {
        "traj_uid": np.array(["t0", "t0", "t0", "t1", "t1", "t2"], dtype=object),
        "episode_success": np.array([True, True, True, False, False, True], dtype=object),
        "task_type": np.array(["pick", "pick", "pick", "pick", "pick", "heat"], dtype=object),
        "episode_length": np.array([3, 3, 3, 2, 2, 1], dtype=object),
        "is_action_valid": np.array([True, True, True, False, True, True], dtype=object),
        "episode_truncated": np.array([False, False, False, True, True, False], dtype=object),
    }
    assert episode_metrics(columns) == pytest.approx(
        {
            "env/success_rate": 2 / 3,
            "env/success_rate/pick": 1 / 2,
            "env/success_rate/heat": 1.0,
            "env/episode_length/mean": 2.0,
            "env/invalid_action_rate": 1 / 6,
            "env/num_episodes": 3.0,
            "env/truncated_rate": 1 / 3,
        }
    )


def test_empty_batch_has_no_metrics():
    empty = np.array([], dtype=object)
    keys = ("traj_uid", "episode_success", "task_type", "episode_length", "is_action_valid")
    assert episode_metrics(dict.fromkeys(keys, empty)) == {}


def test_credit_diagnostics_of_several_estimator_calls_combine_exactly():
    """Two calls (verl sub-steps): counts add up, shares are pooled over their denominators, maxima are maxima."""
    first = {
        "credit/gigpo/step_groups": 4.0,
        "credit/gigpo/step_group_size_mean": 2.0,  # 8 rows
        "credit/gigpo/step_group_size_max": 3.0,
        "credit/scpo/failed_steps": 10.0,
        "credit/scpo/credited_failed_step_share": 0.5,  # 5 credited
        "credit/scpo/mean_credit": 0.2,
    }
    second = {
        "credit/gigpo/step_groups": 6.0,
        "credit/gigpo/step_group_size_mean": 3.0,  # 18 rows
        "credit/gigpo/step_group_size_max": 5.0,
        "credit/scpo/failed_steps": 30.0,
        "credit/scpo/credited_failed_step_share": 0.1,  # 3 credited
        "credit/scpo/mean_credit": 0.6,
    }
    combined = combine_credit_diagnostics([first, second], rows=[8, 18])
    assert combined["credit/gigpo/step_groups"] == 10
    assert combined["credit/gigpo/step_group_size_mean"] == pytest.approx(26 / 10)
    assert combined["credit/gigpo/step_group_size_max"] == 5
    assert combined["credit/scpo/failed_steps"] == 40
    assert combined["credit/scpo/credited_failed_step_share"] == pytest.approx(8 / 40)
    assert combined["credit/scpo/mean_credit"] == pytest.approx((5 * 0.2 + 3 * 0.6) / 8)
    assert combine_credit_diagnostics([{"credit/x/other": 1.0}, {"credit/x/other": 4.0}], rows=[1, 3]) == {
        "credit/x/other": pytest.approx(3.25)  # unknown keys: verl's rule, weighted by rows
    }


def test_scpo_matcher_cost_of_several_calls_adds_up():
    first = {"credit/scpo/encode_seconds": 1.5, "credit/scpo/distinct_texts": 100.0, "credit/scpo/cache_hit_rate": 0.2}
    second = {"credit/scpo/encode_seconds": 0.5, "credit/scpo/distinct_texts": 300.0, "credit/scpo/cache_hit_rate": 0.6}
    combined = combine_credit_diagnostics([first, second], rows=[10, 10])
    assert combined["credit/scpo/encode_seconds"] == 2.0 and combined["credit/scpo/distinct_texts"] == 400
    assert combined["credit/scpo/cache_hit_rate"] == pytest.approx((20 + 180) / 400)
