"""Issue 25 finding 10: seeded train-local rollouts reproduce whatever the load. The same iteration rolled out twice,
once with environments slowed down at random (so other episodes share each generation batch, in another order),
gives the same steps, tokens, rewards, advantages and metrics."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import torch
from test_trainer_tiny_run import tiny_config

from verl_agent_ext.envs.pool import EnvHandle
from verl_agent_ext.local.trainer import LocalTrainer

COMPARED_COLUMNS = ("step_index", "anchor_obs", "action_text", "is_action_valid", "episode_success", "step_reward")


def test_the_same_iteration_rolls_out_identically_under_different_timing(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, groups_per_iter=1, group_size=3, response_length=8, estimator="gigpo")
    trainer = LocalTrainer(config, log=lambda line: None, progress=lambda line: None)
    step = EnvHandle.step
    delays = random.Random(1)

    async def slow_step(self, action):
        await asyncio.sleep(delays.choice([0.0, 0.3]))
        return await step(self, action)

    try:
        torch.manual_seed(0)  # the global generator as a fresh run leaves it (only timing differs below)
        quick, quick_metrics = trainer.rollout(1)
        getattr(trainer.server, "restart_streams", lambda: None)()  # as in a fresh run: the episodes start over
        monkeypatch.setattr(EnvHandle, "step", slow_step)
        trainer.server.batch_wait_s = 0.05  # as on a busy machine: slow steps miss the batch, which runs without them
        torch.manual_seed(0)
        slowed, slowed_metrics = trainer.rollout(1)
        assert trainer.server.stats["batches"] > 4  # 2 steps x 3 episodes ran in more than the quick run's 2 batches
        torch.testing.assert_close(slowed.responses, quick.responses, rtol=0, atol=0)
        torch.testing.assert_close(slowed.token_level_rewards, quick.token_level_rewards, rtol=0, atol=0)
        for key in COMPARED_COLUMNS:
            np.testing.assert_array_equal(slowed.non_tensor_batch[key], quick.non_tensor_batch[key])
        untimed = {key: value for key, value in quick_metrics.items() if not key.startswith("time/")}
        assert {key: slowed_metrics[key] for key in untimed} == untimed
        advantages, _ = trainer.compute_advantages(quick)
        torch.testing.assert_close(trainer.compute_advantages(slowed)[0], advantages, rtol=0, atol=0)
    finally:
        monkeypatch.setattr(EnvHandle, "step", step)
        trainer.close()
