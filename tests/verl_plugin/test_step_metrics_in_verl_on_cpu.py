"""The plugin's env/ and credit/ metrics through verl's real V1 trainer: several sub-steps per training step
(`parameter_sync_step > 1`, verl's MetricsAggregator) and verl's synthetic padding rows."""

from __future__ import annotations

import numpy as np
import pytest


def episode(uid: str, session: int, length: int, won: bool) -> list:
    """The AgentLoopOutputs of one episode of `length` steps (anchors s0, s1, ... shared by the group)."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput

    episode_return = 10.0 if won else 0.0
    return [
        AgentLoopOutput(
            prompt_ids=[11, 12, 13],
            response_ids=[100 + step, 101],
            response_mask=[1, 1],
            response_logprobs=[-0.5, -0.5],
            reward_score=episode_return,
            num_turns=2,
            metrics=AgentLoopMetrics(),
            extra_fields={
                "min_global_steps": 1,
                "max_global_steps": 1,
                "traj_uid": f"{uid}-{session}",
                "step_index": step,
                "anchor_obs": f"s{step}",
                "next_anchor_obs": f"s{step + 1}",
                "action_text": f"act {(step + session) % 2}",
                "step_reward": episode_return if step == length - 1 else 0.0,
                "is_action_valid": True,
                "episode_success": won,
                "task_type": "pick",
                "episode_length": length,
                "episode_truncated": not won,
                "reward_extra_info": {},
            },
        )
        for step in range(length)
    ]


def test_metrics_of_a_step_with_several_sub_steps_are_over_the_whole_step(transfer_queue, store_sessions, v1_trainer):
    """verl's real PPOTrainer.step with parameter_sync_step=2 (separate_async's default is 4): sub-step 1 has two
    won 2-step episodes, sub-step 2 two failed 6-step episodes. verl averages sub-step metrics weighted by rows."""
    from transfer_queue import KVBatchMeta

    sub_steps = [
        store_sessions({("a", 0): episode("a", 0, 2, True), ("a", 1): episode("a", 1, 2, True)}),
        store_sessions({("b", 0): episode("b", 0, 6, False), ("b", 1): episode("b", 1, 6, False)}),
    ]
    trainer = v1_trainer("gigpo", parameter_sync_step=2)
    trainer.prepare_step = lambda: {}

    def step_once(metrics: dict, timing_raw: dict, sample_batch_size: int) -> KVBatchMeta:
        keys = sub_steps[trainer.local_trigger_step]
        return trainer._compute_advantage(
            KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train"), metrics
        )

    trainer._step_once = step_once
    metrics: dict = {}
    batch = trainer.step(metrics, {})
    assert len(batch) == 16
    assert metrics["env/success_rate"] == pytest.approx(0.5)  # verl's row-weighted average: 0.25
    assert metrics["env/num_episodes"] == 4  # averaged: 2
    assert metrics["env/episode_length/mean"] == pytest.approx(4.0)  # row-weighted: 5
    assert metrics["env/success_rate/pick"] == pytest.approx(0.5)
    assert metrics["credit/gigpo/step_groups"] == 8  # 2 + 6 anchor groups, averaged: 5
    assert metrics["credit/gigpo/step_group_size_mean"] == pytest.approx(2.0)
    assert metrics["credit/gigpo/step_group_size_max"] == 2
    transfer_queue.kv_clear(keys=[key for keys in sub_steps for key in keys], partition_id="train")


@pytest.mark.parametrize("estimator", ["gigpo", "scpo"])
def test_padding_rows_stay_out_of_the_credit_diagnostics(transfer_queue, store_sessions, v1_trainer, estimator):
    """verl pads the batch with synthetic rows (upsample_batch_to_divisible_size); the estimator's statistics
    must be those of the real rows."""
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size

    sessions = {("g", 0): episode("g", 0, 3, True), ("g", 1): episode("g", 1, 4, False)}
    keys = store_sessions(sessions)
    plain_metrics: dict = {}
    v1_trainer(estimator)._compute_advantage(
        KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train"), plain_metrics
    )
    plain = transfer_queue.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])["advantages"]
    batch = KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train")
    padded = upsample_batch_to_divisible_size(batch, batch_multiple=16, eos_token_id=2)
    assert len(padded) == 16
    padded_metrics: dict = {}
    v1_trainer(estimator)._compute_advantage(padded, padded_metrics)
    advantages = transfer_queue.kv_batch_get(keys=padded.keys, partition_id="train", select_fields=["advantages"])
    rows = list(advantages["advantages"].unbind())
    # all credit statistics, not the matcher's wall times (they differ from call to call)
    credit = sorted(key for key in plain_metrics if key.startswith("credit/") and not key.endswith("_seconds"))
    assert credit and {key: padded_metrics[key] for key in credit} == {key: plain_metrics[key] for key in credit}
    for row, expected in zip(rows, plain.unbind(), strict=False):
        np.testing.assert_allclose(row.numpy(), expected.numpy())
    assert all(float(row.abs().sum()) == 0.0 for row in rows[len(keys) :])
    transfer_queue.kv_clear(keys=padded.keys, partition_id="train")
