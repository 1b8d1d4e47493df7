"""Episode metrics from per-step columns, worked by hand."""

import numpy as np
import pytest

from verl_agent_ext.verl_plugin.metrics import episode_metrics


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
