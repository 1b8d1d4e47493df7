"""The env agent loop's rows inside verl's real V1 code: stored by AgentLoopWorkerTQ in a real TransferQueue, then
read by PPOTrainer._compute_advantage (rollout correction, multi-trajectory GRPO) and PPOTrainer._validate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

ROW = {"env_name": "corridor", "task_id": "corridor-3", "task_type": "walk", "split": "train"}
WIN = ["<action>go right</action>"] * 3


def play_session(tokenizer, loop_config, scripted_server, corridor_pool, answers, sampling_params=None, **server):
    """One corridor episode answering `answers` in turn; `server` fields override each TokenOutput's."""
    from verl_agent_ext.agent.env_agent_loop import build_agent_loop

    script = iter(answers)
    manager = scripted_server(lambda prompt: next(script))
    if server:
        respond = manager.generate

        async def generate(*args, **kwargs):
            return (await respond(*args, **kwargs)).model_copy(update=server)

        manager.generate = generate
    loop = build_agent_loop(loop_config(), manager, tokenizer, env_pools=[corridor_pool])
    return asyncio.run(loop.run(sampling_params or {"temperature": 1.0, "logprobs": True}, **ROW))


def compute_advantages(transfer_queue, trainer, keys: list[str]) -> tuple[list[torch.Tensor], dict]:
    from transfer_queue import KVBatchMeta

    metrics: dict = {}
    trainer._compute_advantage(KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train"), metrics)
    stored = transfer_queue.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])
    return list(stored["advantages"].unbind()), metrics


def test_empty_log_prob_lists_of_async_modes_do_not_break_rollout_correction(
    transfer_queue, store_sessions, v1_trainer, tokenizer, loop_config, scripted_server, corridor_pool
):
    """colocate_async / separate_async with rollout.calculate_log_probs=False: verl's FullyAsyncLLMServerClient
    returns log_probs=[] (not None); verl's default rollout_correction section then runs in _compute_advantage."""
    import verl.trainer.config
    from tensordict import TensorDict

    no_log_probs = {"temperature": 1.0, "logprobs": False}
    sessions = {
        ("g", 0): play_session(tokenizer, loop_config, scripted_server, corridor_pool, WIN, no_log_probs, log_probs=[]),
        ("g", 1): play_session(
            tokenizer, loop_config, scripted_server, corridor_pool, ["", *WIN], no_log_probs, log_probs=[]
        ),
    }
    keys = store_sessions(sessions)
    lengths = [len(output.response_ids) for outputs in sessions.values() for output in outputs]
    old_log_probs = torch.nested.as_nested_tensor([torch.zeros(n) for n in lengths], layout=torch.jagged)
    transfer_queue.kv_batch_put(
        keys=keys, partition_id="train", fields=TensorDict({"old_log_probs": old_log_probs}, batch_size=len(keys))
    )
    defaults = Path(verl.trainer.config.__file__).parent / "algorithm" / "rollout_correction.yaml"
    trainer = v1_trainer("gigpo", rollout_correction=OmegaConf.load(defaults))
    advantages, _ = compute_advantages(transfer_queue, trainer, keys)
    assert [len(row) for row in advantages] == lengths
    assert all(output.response_logprobs is None for outputs in sessions.values() for output in outputs)
    transfer_queue.kv_clear(keys=keys, partition_id="train")


def test_log_probs_are_kept_when_they_cover_the_response(tokenizer, loop_config, scripted_server, corridor_pool):
    outputs = play_session(tokenizer, loop_config, scripted_server, corridor_pool, ["", *WIN])
    assert outputs[0].response_logprobs == [0.0]  # the masked EOS of the empty answer (log-probs requested)
    assert all(o.response_logprobs == [-0.25] * len(o.response_ids) for o in outputs[1:])
    short = play_session(tokenizer, loop_config, scripted_server, corridor_pool, WIN, log_probs=[-0.25])
    assert all(output.response_logprobs is None for output in short)


def test_grpo_gives_an_episode_ending_in_an_empty_answer_its_advantage(
    transfer_queue, store_sessions, v1_trainer, tokenizer, loop_config, scripted_server, corridor_pool
):
    """verl's multi-trajectory GRPO broadcasts the advantage of each session's last row (highest output index)
    from its first unmasked token: an empty last answer (engine abort) has none."""
    losing = ["<action>go left</action>"] * 5 + [""]  # cut at env.max_steps=6, last answer empty
    sessions = {
        ("g", 0): play_session(tokenizer, loop_config, scripted_server, corridor_pool, WIN),
        ("g", 1): play_session(tokenizer, loop_config, scripted_server, corridor_pool, losing),
    }
    loser = sessions[("g", 1)]
    assert len(loser) == 6 and sorted(o.extra_fields["step_index"] for o in loser) == list(range(6))
    assert loser[-1].response_mask == [1] * len(loser[-1].response_ids)  # a step with real tokens comes last
    keys = store_sessions(sessions)
    advantages, _ = compute_advantages(transfer_queue, v1_trainer("grpo"), keys)
    per_row = {key: row[0].item() for key, row in zip(keys, advantages, strict=True) if len(row)}
    winner = [value for key, value in per_row.items() if key.startswith("g_0_")]
    loser_values = [value for key, value in per_row.items() if key.startswith("g_1_") and value != 0.0]
    assert len(set(winner)) == 1 and winner[0] > 0
    assert len(loser_values) == 5 and set(loser_values) == {-winner[0]}  # GRPO: +/- the same for 2 sessions
    transfer_queue.kv_clear(keys=keys, partition_id="train")


def test_validation_counts_a_session_that_raised_as_a_failure(
    transfer_queue, store_sessions, tokenizer, loop_config, scripted_server, corridor_pool
):
    """verl's real PPOTrainer._validate, val_kwargs.n=2: one session of one task raises (no rows)."""
    from verl.trainer.ppo.v1 import PPOTrainerSync
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    losing = ["<action>go left</action>"] * 6
    plans = [(WIN, WIN), (losing, losing), (WIN, None)]  # None: the session raised

    class Manager:
        def generate_sequences(self, batch):
            for uid, plan in zip(batch["uid"], plans, strict=True):
                played = {
                    (uid, session): play_session(tokenizer, loop_config, scripted_server, corridor_pool, answers)
                    for session, answers in enumerate(plan)
                    if answers is not None
                }
                store_sessions(played, validate=True, global_steps=0, data_source="corridor/walk", reward_model={})
                status = "failure" if None in plan else "finished"
                transfer_queue.kv_batch_put(
                    keys=[uid], partition_id="val", tags=[{"is_prompt": True, "status": status, "global_steps": 0}]
                )

    trainer = object.__new__(PPOTrainerSync)
    trainer.config = OmegaConf.create(
        {
            "actor_rollout_ref": {"rollout": {"val_kwargs": {"n": 2}}},
            "trainer": {"log_val_generations": 0, "validation_data_dir": None},
        }
    )
    trainer.global_steps = 0
    trainer.tokenizer = tokenizer
    trainer.agent_loop_manager = Manager()
    trainer.reward_loop_manager = type("RewardLoopManager", (), {"reward_loop_worker_handles": []})()
    trainer.replay_buffer = ReplayBuffer(
        trainer_mode="sync",
        trainer_config={},
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs={},
    )
    trainer.val_dataloader = [
        {
            "raw_prompt": np.array([[{"role": "user", "content": "walk"}]] * len(plans), dtype=object),
            "data_source": np.array(["corridor/walk"] * len(plans), dtype=object),
            "index": torch.arange(len(plans)),
        }
    ]
    metrics = trainer._validate()
    # 3 of 6 sessions won; the session that raised counts as lost
    assert metrics["val-core/corridor/walk/acc/mean@2"] == pytest.approx(3 / 6)


@pytest.mark.parametrize("estimator", ["gigpo", "scpo"])
def test_step_estimators_on_real_agent_loop_rows_equal_the_direct_call(
    estimator, transfer_queue, store_sessions, v1_trainer, tokenizer, loop_config, scripted_server, corridor_pool
):
    """The hook fed by the real EnvAgentLoop's outputs (value types and reward_score as the loop makes them): the
    advantages verl's patched _compute_advantage stores equal the estimator called directly on the same rows."""
    from verl_agent_ext.agent import STEP_METADATA_KEYS
    from verl_agent_ext.estimators import compute_step_advantage

    detour = ["<action>go right</action>", "<action>go left</action>", "nonsense", *WIN]
    sessions = {
        ("g", 0): play_session(tokenizer, loop_config, scripted_server, corridor_pool, WIN),
        ("g", 1): play_session(tokenizer, loop_config, scripted_server, corridor_pool, detour),
    }
    keys = store_sessions(sessions)
    trainer = v1_trainer(estimator)
    hooked, metrics = compute_advantages(transfer_queue, trainer, keys)

    outputs = [output for session in sessions.values() for output in session]
    width = max(len(output.response_ids) for output in outputs)
    rewards, mask = torch.zeros(len(outputs), width), torch.zeros(len(outputs), width)
    for row, output in enumerate(outputs):
        mask[row, : len(output.response_ids)] = torch.tensor(output.response_mask, dtype=torch.float32)
        rewards[row, len(output.response_ids) - 1] = output.reward_score
    columns = {"uid": np.asarray(["g"] * len(outputs), dtype=object)}
    for key in STEP_METADATA_KEYS:
        columns[key] = np.asarray([output.extra_fields[key] for output in outputs], dtype=object)
    expected, _, _ = compute_step_advantage(estimator, rewards, mask, columns["uid"], trainer.config.algorithm, columns)
    assert float(expected.abs().sum()) > 0
    for row, advantage in enumerate(hooked):
        torch.testing.assert_close(advantage, expected[row, : len(advantage)], rtol=0, atol=1e-6)
    assert metrics["env/success_rate"] == 1.0 and metrics["env/num_episodes"] == 2
    transfer_queue.kv_clear(keys=keys, partition_id="train")
