"""The step-metadata hook inside verl's real V1 code path: AgentLoopWorkerTQ puts per-step outputs into a real
TransferQueue, PPOTrainer._compute_advantage (patched) reads them back and calls the estimator. The advantages
must equal the estimator called directly on the same rows."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from verl_agent_ext.verl_plugin import step_metadata
from verl_agent_ext.verl_plugin.estimators import compute_step_advantage

# (uid, session, step, anchor, action, step_reward, valid, success, task_type): two tasks, 3 + 2 sessions.
ROWS = [
    ("g0", 0, 0, "You are in the middle of a room.", "go to fridge 1", 0.0, True, True, "pick"),
    ("g0", 0, 1, "The fridge 1 is closed.", "open fridge 1", 0.0, True, True, "pick"),
    ("g0", 0, 2, "You open the fridge 1. You see an apple 1.", "take apple 1 from fridge 1", 10.0, True, True, "pick"),
    ("g0", 1, 0, "You are in the middle of a room.", "go to fridge 1", 0.0, True, False, "pick"),
    ("g0", 1, 1, "The fridge 1 is closed.", "open the fridge", 0.0, False, False, "pick"),
    ("g0", 2, 0, "You are in the middle of a room.", "go to sinkbasin 1", 0.0, True, False, "pick"),
    ("g1", 0, 0, "You are in the kitchen.", "go to cabinet 1", 0.0, True, True, "clean"),
    ("g1", 0, 1, "The cabinet 1 is closed.", "open cabinet 1", 10.0, True, True, "clean"),
    ("g1", 1, 0, "You are in the kitchen.", "go to cabinet 1", 0.0, True, False, "clean"),
    ("g1", 1, 1, "The cabinet 1 is closed.", "inventory", 0.0, True, False, "clean"),
]


def agent_loop_outputs():
    """Per (uid, session): the AgentLoopOutputs the env agent loop would return, in step order."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput

    sessions: dict[tuple[str, int], list] = {}
    for uid, session, step, anchor, action, reward, valid, success, task_type in ROWS:
        episode = [row for row in ROWS if row[0] == uid and row[1] == session]
        length = 3 + step + session  # responses of different lengths
        sessions.setdefault((uid, session), []).append(
            AgentLoopOutput(
                prompt_ids=[11, 12, 13, 14][: 2 + step],
                response_ids=list(range(100, 100 + length)),
                response_mask=[1] * length,
                response_logprobs=[-0.5] * length,
                reward_score=sum(row[5] for row in episode),
                num_turns=2,
                metrics=AgentLoopMetrics(),
                extra_fields={
                    "min_global_steps": 1,
                    "max_global_steps": 1,
                    "traj_uid": f"{uid}-{session}",
                    "step_index": step,
                    "anchor_obs": anchor,
                    "next_anchor_obs": f"after {action}",
                    "action_text": action,
                    "step_reward": reward,
                    "is_action_valid": valid,
                    "episode_success": success,
                    "task_type": task_type,
                    "episode_length": len(episode),
                    "reward_extra_info": {"success": float(success)},
                },
            )
        )
    return sessions


def put_rollouts(store_sessions) -> list[str]:
    """Store the outputs with verl's own AgentLoopWorkerTQ._agent_loop_postprocess; returns the row keys."""
    return store_sessions(agent_loop_outputs())


def algorithm_config(estimator: str):
    return OmegaConf.create(
        {
            "algorithm": {
                "adv_estimator": estimator,
                "gamma": 0.95,
                "lam": 1.0,
                "use_kl_in_reward": False,
                "norm_adv_by_std_in_grpo": True,
                "gigpo": {"mode": "mean_norm", "invalid_action_penalty": 0.1},
                "scpo": {"matcher": "exact"},
            },
            "actor_rollout_ref": {"rollout": {"n": 3}},
            "env": {"name": "alfworld"},
        }
    )


def run_hooked_trainer(tq, estimator: str, keys: list[str], tags: list[dict] | None = None):
    """verl's PPOTrainer._compute_advantage (patched by the plugin) on the stored rows."""
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1 import PPOTrainerSync

    trainer = object.__new__(PPOTrainerSync)
    trainer.config = algorithm_config(estimator)
    metrics: dict[str, float] = {}
    batch = KVBatchMeta(keys=keys, tags=tags or [{} for _ in keys], partition_id="train")
    trainer._compute_advantage(batch, metrics)
    stored = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])
    return [row for row in stored["advantages"].unbind()], metrics


def direct_advantages(estimator: str) -> torch.Tensor:
    """The estimator on the same rows, called directly: one scalar per row in ROWS order."""
    sessions = agent_loop_outputs()
    outputs = [output for session in sessions.values() for output in session]
    uids = np.asarray([uid for (uid, _), session in sessions.items() for _ in session], dtype=object)
    width = max(len(output.response_ids) for output in outputs)
    rewards = torch.zeros(len(outputs), width)
    mask = torch.zeros(len(outputs), width)
    for row, output in enumerate(outputs):
        mask[row, : len(output.response_ids)] = 1
        rewards[row, len(output.response_ids) - 1] = output.reward_score
    non_tensor_batch = {"uid": uids}
    for key in ("traj_uid", "step_index", "anchor_obs", "action_text", "step_reward", "is_action_valid"):
        non_tensor_batch[key] = np.asarray([output.extra_fields[key] for output in outputs], dtype=object)
    non_tensor_batch["episode_success"] = np.asarray(
        [output.extra_fields["episode_success"] for output in outputs], dtype=object
    )
    advantages, _, _ = compute_step_advantage(
        estimator, rewards, mask, uids, algorithm_config(estimator).algorithm, non_tensor_batch
    )
    return advantages[:, 0]


@pytest.mark.parametrize("estimator", ["gigpo", "scpo"])
def test_hook_matches_direct_estimator(transfer_queue, store_sessions, estimator):
    keys = put_rollouts(store_sessions)
    hooked, metrics = run_hooked_trainer(transfer_queue, estimator, keys)
    expected = direct_advantages(estimator)
    assert any(value != 0 for value in expected.tolist())
    for row, advantage in enumerate(hooked):
        # every response token of a step row carries that row's advantage
        torch.testing.assert_close(advantage, torch.full_like(advantage, float(expected[row])))
    assert metrics["env/success_rate"] == pytest.approx(2 / 5)
    assert metrics["env/success_rate/pick"] == pytest.approx(1 / 3)
    assert metrics["env/success_rate/clean"] == pytest.approx(1 / 2)
    assert metrics["env/episode_length/mean"] == pytest.approx((3 + 2 + 1 + 2 + 2) / 5)
    assert metrics["env/invalid_action_rate"] == pytest.approx(1 / 10)
    assert any(key.startswith(f"credit/{estimator}/") for key in metrics)
    transfer_queue.kv_clear(keys=keys, partition_id="train")


def test_padding_rows_do_not_join_real_trajectories(transfer_queue, store_sessions):
    keys = put_rollouts(store_sessions)
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size

    batch = KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train")
    padded = upsample_batch_to_divisible_size(batch, batch_multiple=4, eos_token_id=2)
    assert len(padded) == 12
    hooked, metrics = run_hooked_trainer(transfer_queue, "gigpo", padded.keys, padded.tags)
    expected = direct_advantages("gigpo")
    for row in range(len(keys)):
        torch.testing.assert_close(hooked[row], torch.full_like(hooked[row], float(expected[row])))
    assert all(float(advantage.abs().sum()) == 0.0 for advantage in hooked[len(keys) :])
    assert metrics["env/num_episodes"] == 5
    transfer_queue.kv_clear(keys=padded.keys, partition_id="train")


def test_grpo_is_untouched_but_gets_episode_metrics(transfer_queue, store_sessions):
    keys = put_rollouts(store_sessions)
    hooked, metrics = run_hooked_trainer(transfer_queue, "grpo", keys)
    assert metrics["env/success_rate"] == pytest.approx(2 / 5)
    assert not any(key.startswith("credit/") for key in metrics)
    # verl's multi-trajectory GRPO: each session's final reward, normalised within the uid, on all its steps
    g0 = [row for row, key in enumerate(keys) if key.startswith("g0_0_")]
    assert all(float(hooked[row][0]) > 0 for row in g0)

    # The same rows through verl's own, unwrapped _compute_advantage give exactly the same advantages.
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1 import PPOTrainerSync

    unwrapped = PPOTrainerSync._compute_advantage.__wrapped__
    assert unwrapped is not PPOTrainerSync._compute_advantage
    trainer = object.__new__(PPOTrainerSync)
    trainer.config = algorithm_config("grpo")
    unwrapped(trainer, KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train"), {})
    stored = transfer_queue.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])
    for hooked_row, verl_row in zip(hooked, stored["advantages"].unbind(), strict=True):
        torch.testing.assert_close(hooked_row, verl_row, rtol=0, atol=0)
    transfer_queue.kv_clear(keys=keys, partition_id="train")


def test_step_estimator_without_metadata_fails_clearly(transfer_queue, store_sessions):
    from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput

    output = AgentLoopOutput(
        prompt_ids=[1, 2],
        response_ids=[3, 4],
        response_mask=[1, 1],
        reward_score=1.0,
        metrics=AgentLoopMetrics(),
        extra_fields={"min_global_steps": 1, "max_global_steps": 1, "reward_extra_info": {}},
    )
    store_sessions({("single", 0): [output]})
    with pytest.raises(ValueError, match="verl_agent_ext_env"):
        run_hooked_trainer(transfer_queue, "gigpo", ["single_0_0"])
    transfer_queue.kv_clear(keys=["single_0_0"], partition_id="train")


def test_hook_is_installed_on_the_v1_trainer():
    from verl.trainer.ppo.v1 import trainer_base, utils

    assert step_metadata.hook_status == {
        step_metadata.V1_TRAINER_MODULE: "installed",
        step_metadata.V1_UTILS_MODULE: "installed",
    }
    assert trainer_base.PPOTrainer._compute_advantage.__verl_agent_ext_patch__
    assert utils.compute_advantage.__verl_agent_ext_patch__


def branched_session_outputs():
    """(uid, session) -> outputs of 3SPO sessions: g0/0 forked at step 1 into three trajectories (6 rows),
    g0/1 one path (2 rows): a variable number of rows per session, as the branching rollout returns them."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput

    from verl_agent_ext.credit.sspo import branch_uid

    root, other = "g0-0", "g0-1"
    left, right = branch_uid(root, 1, 1), branch_uid(root, 1, 2)
    # (session, traj_uid, step, anchor, next anchor, action, step reward, success of the owner, row score)
    rows = [
        (0, root, 0, "hall", "kitchen", "go to kitchen", 0.0, False, 10 / 3),  # shared by all three
        (0, root, 1, "kitchen", "kitchen", "look", 0.0, False, 0.0),
        (0, root, 2, "kitchen", "fridge", "go to fridge", 0.0, False, 0.0),
        (0, left, 1, "kitchen", "table", "go to table", 10.0, True, 10.0),
        (0, right, 1, "kitchen", "sink", "go to sink", 0.0, False, 0.0),
        (0, right, 2, "sink", "sink", "inventory", 0.0, False, 0.0),
        (1, other, 0, "hall", "garden", "go to garden", 0.0, False, 0.0),
        (1, other, 1, "garden", "hall", "go to hall", 0.0, False, 0.0),
    ]
    sessions: dict[tuple[str, int], list] = {}
    for session, traj, step, anchor, following, action, reward, success, score in rows:
        sessions.setdefault(("g0", session), []).append(
            AgentLoopOutput(
                prompt_ids=[11, 12, 13],
                response_ids=[100, 101, 102, 103][: 2 + step],
                response_mask=[1] * (2 + step),
                response_logprobs=[-0.5] * (2 + step),
                reward_score=score,
                num_turns=2,
                metrics=AgentLoopMetrics(),
                extra_fields={
                    "min_global_steps": 1,
                    "max_global_steps": 1,
                    "traj_uid": traj,
                    "step_index": step,
                    "anchor_obs": anchor,
                    "next_anchor_obs": following,
                    "action_text": action,
                    "step_reward": reward,
                    "is_action_valid": True,
                    "episode_success": success,
                    "task_type": "pick",
                    "episode_length": 3 if traj == root else 2,
                    "reward_extra_info": {"success": float(success)},
                },
            )
        )
    return sessions, rows


def test_sspo_takes_a_variable_row_count_per_session_and_updates_the_run_table(transfer_queue, store_sessions):
    """Branched sessions through verl's real AgentLoopWorkerTQ postprocess, TransferQueue and the hooked trainer
    (with verl's padding rows): advantages equal the estimator on the same rows, and the run's Ray-actor table
    learns each trajectory once (padding rows add none). verl's postprocess copies the session's last reward score
    onto all its rows; 3SPO's episode channel recomputes each row's outcome from the step rewards instead."""
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size

    from verl_agent_ext.agent.state_score_store import RayStateScoreStore, run_score_store
    from verl_agent_ext.credit import StepBatch
    from verl_agent_ext.credit.sspo import compute_sspo
    from verl_agent_ext.credit.state_scores import StateScoreTable, state_key

    config = algorithm_config("sspo")
    store = run_score_store("sspo", config.algorithm)  # the run's named actor, emptied
    assert isinstance(store, RayStateScoreStore)
    sessions, rows = branched_session_outputs()
    keys = store_sessions(sessions)
    assert [len(outputs) for outputs in sessions.values()] == [6, 2]
    padded = upsample_batch_to_divisible_size(
        KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train"), batch_multiple=5, eos_token_id=2
    )
    assert len(padded) == 10
    hooked, metrics = run_hooked_trainer(transfer_queue, "sspo", padded.keys, padded.tags)

    batch = StepBatch.from_columns(
        uid=["g0"] * len(rows),
        traj_uid=[row[1] for row in rows],
        step_index=[row[2] for row in rows],
        step_reward=[row[6] for row in rows],
        episode_return=[row[8] for row in rows],
        episode_success=[row[7] for row in rows],
        anchor_obs=[row[3] for row in rows],
        action_text=[row[5] for row in rows],
    )
    expected = compute_sspo(batch, [row[4] for row in rows], StateScoreTable(), config.algorithm).advantage
    assert np.abs(expected).max() > 0
    for row in range(len(rows)):
        torch.testing.assert_close(hooked[row], torch.full_like(hooked[row], float(expected[row])))
    assert metrics["credit/sspo/trajectories"] == 4  # verl's padding rows left out
    assert metrics["credit/sspo/branches"] == 2
    fetches = store.fetches
    table = store.snapshot()
    assert store.snapshot() is table and store.fetches == fetches  # cached: the estimator read this version
    assert asyncio.run(store.snapshot_async()) is table  # the agent loop's path, same cache
    assert table.t == 1 + 4  # each real trajectory counted once
    assert table.counts([state_key("hall")])[1].tolist() == [4]
    assert table.counts([state_key("kitchen")])[1].tolist() == [3]  # three trajectories share it
    assert table.counts([state_key("table")])[0].tolist() == [1]  # the winning branch's final state
    transfer_queue.kv_clear(keys=padded.keys, partition_id="train")
