"""The step-metadata hook inside verl's real V1 code path: AgentLoopWorkerTQ puts per-step outputs into a real
TransferQueue, PPOTrainer._compute_advantage (patched) reads them back and calls the estimator. The advantages
must equal the estimator called directly on the same rows. Also iStar's PRM wrapper inside the hook: the driver
step with a recorder in place of the PRM worker group (values derived by hand)."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

from verl_agent_ext.credit import StepBatch, compute_istar
from verl_agent_ext.estimators import compute_step_advantage
from verl_agent_ext.verl_plugin import istar_prm, step_metadata

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


# iStar: the PRM's wrapper of _compute_advantage inside the hook (verl_plugin/istar_prm.py)


class RecordingPRMGroup:
    """Stands in for the PRM worker group: writes log pi_phi = a constant per row, records the update call."""

    def __init__(self, tq, prm_value: dict[str, float]):
        self.tq, self.prm_value, self.trained = tq, prm_value, []

    def infer_batch(self, batch):
        data = self.tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["prompts"])
        prompt_lens = data["prompts"].offsets().diff().tolist()
        lens = self.tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["response_mask"])
        response_lens = lens["response_mask"].offsets().diff().tolist()
        rows = [
            torch.full((p + r,), self.prm_value[key.rsplit("_", 1)[0]])
            for key, p, r in zip(batch.keys, prompt_lens, response_lens, strict=True)
        ]
        fields = TensorDict({"log_probs": torch.nested.as_nested_tensor(rows, layout=torch.jagged)}, len(rows))
        self.tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
        return SimpleNamespace(futures=[])

    def train_mini_batch(self, batch):
        # what verl's TrainingWorker receives: its tqbridge fetches the fields the batch meta lists
        from verl.utils.transferqueue_utils import _meta_to_realdata, kv_batch_meta2batch_meta

        data = _meta_to_realdata(kv_batch_meta2batch_meta(batch))
        self.trained.append((dict(batch.extra_info), data[istar_prm.PRM_TOKEN_WEIGHT]))
        return SimpleNamespace(get=lambda: {"metrics": {"grad_norm": [0.5], "loss": [0.1]}})


PRM_VALUE = {"g0_0": -0.5, "g0_1": -1.5, "g0_2": -1.0, "g1_0": -0.8, "g1_1": -1.2}
"""log pi_phi per token of each session's rows (old log-probs are -1 everywhere): winners g0_0, g1_0 score higher."""


def run_istar_advantage(tq, store_sessions, istar: dict):
    """The stored rows with old log-probs, through verl's patched PPOTrainer._compute_advantage with a recorder."""
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1 import PPOTrainerSync
    from verl.workers.utils.padding import response_to_nested

    keys = put_rollouts(store_sessions)
    masks = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["response_mask"])["response_mask"]
    old = torch.full((len(keys), int(masks.offsets().diff().max())), -1.0)
    fields = TensorDict({"old_log_probs": response_to_nested(old, masks)}, len(keys))
    stored = tq.kv_batch_put(keys=keys, partition_id="train", fields=fields)  # lists the fields, as in the trainer
    trainer = object.__new__(PPOTrainerSync)
    trainer.config = algorithm_config("istar")
    trainer.config.actor_rollout_ref.rollout.temperature = 1.0
    trainer.config.algorithm.istar = istar
    trainer.istar_prm_wg = RecordingPRMGroup(tq, PRM_VALUE)
    metrics: dict[str, float] = {}
    batch = KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train", fields=stored.fields)
    trainer._compute_advantage(batch, metrics)
    return trainer, keys, metrics


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_driver_scores_updates_and_feeds_the_estimator(transfer_queue, store_sessions):
    trainer, keys, metrics = run_istar_advantage(transfer_queue, store_sessions, {"step_advantage_w": 1.0})
    sessions = [key.rsplit("_", 1)[0] for key in keys]
    # By hand. Session s of task g, step t has 3 + t + s response tokens; log pi_old = -1 on each, so each token
    # adds PRM_VALUE + 1 and r = 0.05 * (PRM_VALUE + 1) * tokens:
    #   g0_0 (won):  0.025 * (3, 4, 5) = 0.075, 0.1, 0.125    Q = 0.1
    #   g0_1 (lost): -0.025 * (4, 5)   = -0.1, -0.125         Q = -0.1125
    #   g0_2 (lost): 0 * 5             = 0                    Q = 0
    #   g1_0 (won):  0.01 * (3, 4)     = 0.03, 0.04           Q = 0.035
    #   g1_1 (lost): -0.01 * (4, 5)    = -0.04, -0.05         Q = -0.045
    raw = {"g0_0": [0.075, 0.1, 0.125], "g0_1": [-0.1, -0.125], "g0_2": [0.0], "g1_0": [0.03, 0.04]}
    raw["g1_1"] = [-0.04, -0.05]
    # pairs (won, lost) within a task: margins Q_w - Q_l = 0.2125, 0.1 (task g0) and 0.08 (task g1)
    margins = {("g0_0", "g0_1"): 0.2125, ("g0_0", "g0_2"): 0.1, ("g1_0", "g1_1"): 0.08}
    pair_loss = sum(softplus(-m) for m in margins.values()) / 3  # mean of -log sigmoid(margin) = 0.63029...
    # c_i = dL/dr_i = sum over the trajectory's pairs of -+sigmoid(-margin) / 3 pairs / steps of the trajectory
    c = {session: 0.0 for session in raw}
    for (won, lost), m in margins.items():
        c[won] -= sigmoid(-m) / 3 / len(raw[won])
        c[lost] += sigmoid(-m) / 3 / len(raw[lost])
    assert metrics["istar/pairs"] == 3 and metrics["istar/updated"] == 1.0
    assert metrics["istar/raw_reward_abs_max"] == pytest.approx(0.125)
    assert metrics["istar/loss"] == pytest.approx(pair_loss, rel=1e-6)  # r is summed from float32 log-probs
    assert pair_loss == pytest.approx(0.6302916, abs=1e-7)
    # the worker's own metrics keep their names; its "loss" is the surrogate's value, not the pair loss
    assert (metrics["istar/grad_norm"], metrics["istar/surrogate_loss"]) == (0.5, 0.1)
    ((extra_info, token_weight),) = trainer.istar_prm_wg.trained
    assert (extra_info["mini_batch_size"], extra_info["epochs"]) == (len(keys), 1)
    for session, weight in zip(sessions, token_weight.unbind(), strict=True):
        torch.testing.assert_close(weight, torch.full_like(weight, 0.05 * c[session]))
    rows = {session: iter(values) for session, values in raw.items()}
    hand_raw = np.asarray([next(rows[session]) for session in sessions])
    uid = np.asarray([s.split("_")[0] for s in sessions], dtype=object)
    success = np.asarray([s in ("g0_0", "g1_0") for s in sessions])
    # the estimator received the normalised step rewards
    stored = transfer_queue.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])
    batch = StepBatch.from_columns(
        uid=uid,
        traj_uid=sessions,
        step_index=[int(key.rsplit("_", 1)[1]) for key in keys],
        step_reward=np.zeros(len(keys)),
        episode_return=np.where(success, 10.0, 0.0),
        is_action_valid=[key != "g0_1_1" for key in keys],
    )
    normalised = hand_raw / (0.125 + 1e-6)  # batch_max: the largest |r| is 0.125
    direct = compute_istar(batch, trainer.config.algorithm, prm_step_reward=normalised)
    for row, advantage in enumerate(stored["advantages"].unbind()):
        torch.testing.assert_close(advantage, torch.full_like(advantage, float(direct.advantage[row])))
    transfer_queue.kv_clear(keys=keys, partition_id="train")


def test_frozen_prm_scores_without_training(transfer_queue, store_sessions):
    trainer, keys, metrics = run_istar_advantage(transfer_queue, store_sessions, {"freeze_prm": True})
    assert metrics["istar/updated"] == 0.0 and metrics["istar/pairs"] == 3 and not trainer.istar_prm_wg.trained
    transfer_queue.kv_clear(keys=keys, partition_id="train")
