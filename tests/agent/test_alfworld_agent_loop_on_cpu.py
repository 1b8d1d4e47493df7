"""The agent loop on generated ALFWorld games through the env pool (in-process), with a real tokenizer and a
server manager that answers with real token ids: the planner expert's actions, or unparseable text."""

from __future__ import annotations

import asyncio

import pytest

from verl_agent_ext.agent import STEP_METADATA_KEYS
from verl_agent_ext.agent.env_agent_loop import build_agent_loop
from verl_agent_ext.envs.alfworld.games import generated_tasks
from verl_agent_ext.envs.pool import EnvPool
from verl_agent_ext.envs.registry import make_env, make_policy


@pytest.fixture(scope="module")
def alfworld_task():
    """A generated pick_and_place_simple game (the cached set the ALFWorld tests use)."""
    tasks = generated_tasks("train", per_type=10, seed=0)
    return next(task for task in tasks if task.task_type == "pick_and_place_simple")


@pytest.fixture(scope="module")
def alfworld_pool():
    pool = EnvPool("alfworld", num_envs=2, backend="inprocess", env_kwargs={"max_steps": 50})
    yield pool
    pool.close()


class ExpertServer:
    """Answers each step with the planner expert's action, tracked on a shadow copy of the same game."""

    def __init__(self, tokenizer, task):
        self.tokenizer = tokenizer
        self.env = make_env("alfworld")
        self.observation = self.env.reset(task)
        self.expert = make_policy("alfworld", "expert", self.env)
        self.actions: list[str] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        action = self.expert.act(self.observation)
        self.actions.append(action)
        self.observation = self.env.step(action).observation
        text = f"<think>The expert plan says {action}.</think><action>{action}</action>"
        token_ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=token_ids, log_probs=[-0.1] * len(token_ids), extra_fields={})


class RamblingServer:
    """Never produces an action tag."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        return TokenOutput(token_ids=self.tokenizer.encode("Let me think about the room.", add_special_tokens=False))


def play(loop, task):
    row = {"env_name": task.env, "task_id": task.task_id, "task_type": task.task_type, "split": task.split}
    return asyncio.run(loop.run({"temperature": 1.0}, **row))


def test_expert_episode_on_a_generated_game(tokenizer, loop_config, alfworld_task, alfworld_pool):
    server = ExpertServer(tokenizer, alfworld_task)
    config = loop_config(prompt_length=1024, response_length=96, max_steps=50)
    outputs = play(build_agent_loop(config, server, tokenizer, env_pools=[alfworld_pool]), alfworld_task)

    assert len(outputs) == len(server.actions) >= 2
    assert [o.extra_fields["action_text"] for o in outputs] == server.actions
    assert all(o.extra_fields["is_action_valid"] for o in outputs)
    assert [o.extra_fields["step_reward"] for o in outputs] == [0.0] * (len(outputs) - 1) + [10.0]
    assert all(o.extra_fields["episode_success"] is True and o.reward_score == 10.0 for o in outputs)
    assert all(o.extra_fields["task_type"] == "pick_and_place_simple" for o in outputs)
    assert all(set(STEP_METADATA_KEYS) <= set(o.extra_fields) for o in outputs)
    first_prompt = tokenizer.decode(outputs[0].prompt_ids)
    assert outputs[0].extra_fields["anchor_obs"] and "go to" in first_prompt
    assert all(len(o.prompt_ids) <= 1024 for o in outputs)


def test_unparseable_responses_are_penalised_not_fatal(tokenizer, loop_config, alfworld_task, alfworld_pool):
    config = loop_config(prompt_length=1024, response_length=32, max_steps=3)
    outputs = play(
        build_agent_loop(config, RamblingServer(tokenizer), tokenizer, env_pools=[alfworld_pool]), alfworld_task
    )
    assert len(outputs) == 3
    assert [o.extra_fields["is_action_valid"] for o in outputs] == [False, False, False]
    assert all(o.extra_fields["episode_success"] is False and o.reward_score == 0.0 for o in outputs)
    # the state never changed: the environment's feedback (the anchor of later steps) says so
    assert [o.extra_fields["anchor_obs"] for o in outputs[1:]] == ["Nothing happens."] * 2


def test_default_pool_comes_from_the_env_config(tokenizer, loop_config, alfworld_task):
    """Without env_pools the loop builds the process-wide EnvPool from `env.pool` (as in a verl worker)."""
    from verl_agent_ext.agent import env_sessions

    config = loop_config(
        prompt_length=1024, response_length=32, max_steps=2, pool={"backend": "inprocess", "num_envs": 1}
    )
    loop = build_agent_loop(config, RamblingServer(tokenizer), tokenizer)
    try:
        assert len(play(loop, alfworld_task)) == 2
        pool = env_sessions.shared_env_pool(loop.env_config, "alfworld")
        assert isinstance(pool, EnvPool) and pool.num_envs == 1
        assert play(loop, alfworld_task)  # the same pool serves the next episode
    finally:
        env_sessions._shared_pools.clear()
        pool.close()
