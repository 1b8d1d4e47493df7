"""train-local's episode metrics come from the one shared function (`agent.metrics`), under train-local's names."""

from types import SimpleNamespace

import pytest

from verl_agent_ext.local.trainer import episode_metrics


def _output(traj, success, task_type, length, valid):
    fields = dict(
        traj_uid=traj, episode_success=success, task_type=task_type, episode_length=length, is_action_valid=valid
    )
    return SimpleNamespace(extra_fields=fields)


def test_hand_worked_counts_per_trajectory():
    episodes = [
        ("g0", [_output("a", True, "pick", 2, True), _output("a", True, "pick", 2, False)]),
        ("g0", [_output("b", False, "pick", 3, True)] * 3),
        # a 3SPO branching session: two trajectories in one episode list
        ("g1", [_output("c", True, "heat", 1, True), _output("d", False, "heat", 1, False)]),
    ]
    assert episode_metrics(episodes, "rollout") == pytest.approx(
        {
            "rollout/episodes": 4.0,
            "rollout/success_rate": 0.5,
            "rollout/invalid_action_rate": 2 / 7,
            "rollout/episode_length": (2 + 3 + 1 + 1) / 4,
            "rollout/success_rate/heat": 0.5,
            "rollout/success_rate/pick": 0.5,
        }
    )
