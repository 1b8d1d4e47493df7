"""EnvPool, in-process backend: leasing, concurrent episodes equal to sequential ones, crash -> truncated."""

from __future__ import annotations

import asyncio

import pytest

from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.alfworld.games import generated_tasks
from verl_agent_ext.envs.alfworld.policies import RandomPolicy
from verl_agent_ext.envs.base import Task
from verl_agent_ext.envs.pool import EnvPool


@pytest.fixture(scope="module")
def tasks():
    return generated_tasks("train", per_type=10, seed=0)[::10][:4]


def play_sync(task, seed, steps=8):
    env, policy = AlfworldEnv(), RandomPolicy(seed)
    obs, trace = env.reset(task), []
    for _ in range(steps):
        result = env.step(policy.act(obs))
        obs = result.observation
        trace.append((obs.text, result.reward, result.done))
        if result.done:
            break
    return trace


async def play_pooled(pool, task, seed, steps=8):
    policy = RandomPolicy(seed)
    async with pool.lease() as env:
        obs, trace = await env.reset(task), []
        for _ in range(steps):
            result = await env.step(policy.act(obs))
            obs = result.observation
            trace.append((obs.text, result.reward, result.done))
            if result.done:
                break
        return trace


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="inprocess"):
        EnvPool("alfworld", num_envs=1, backend="threads")


def test_concurrent_pooled_episodes_match_sequential_ones(tasks):
    pool = EnvPool("alfworld", num_envs=2)  # 4 episodes on 2 envs: two wait for a lease

    async def main():
        return await asyncio.gather(*(play_pooled(pool, task, seed) for seed, task in enumerate(tasks)))

    try:
        pooled = asyncio.run(main())
    finally:
        pool.close()
    assert pooled == [play_sync(task, seed) for seed, task in enumerate(tasks)]


def test_handle_prompt_parse_and_replay_are_served(tasks):
    pool = EnvPool("alfworld", num_envs=1, env_kwargs={"max_steps": 5})

    async def main():
        async with pool.lease() as env:
            first = await env.reset(tasks[0])
            action = first.admissible_actions[0]
            after = (await env.step(action)).observation
            assert await env.replay([action]) == after
            assert await env.replay([]) == first
            assert "<action>" in env.format_prompt(first, [], 0)
            assert env.parse_action(f"<action>{action}</action>", first).valid

    try:
        asyncio.run(main())
    finally:
        pool.close()


def test_environment_crash_truncates_episode_and_slot_recovers(tasks, monkeypatch):
    pool = EnvPool("alfworld", num_envs=2)

    def explode(action):
        raise OSError("engine died")

    async def main():
        a, b = await pool.acquire(), await pool.acquire()
        obs_a, obs_b = await a.reset(tasks[0]), await b.reset(tasks[1])
        with monkeypatch.context() as patch:
            patch.setattr(pool._workers[0].worker.group.envs[a.slot], "step", explode)
            crashed = await a.step(obs_a.admissible_actions[0])
        assert crashed.done and crashed.info["truncated"] and "engine died" in crashed.info["error"]
        assert crashed.observation == obs_a and crashed.reward == 0.0
        # The other episode goes on; the crashed slot was replaced and serves a new episode.
        assert not (await b.step(obs_b.admissible_actions[0])).info["truncated"]
        again = await a.reset(tasks[0])
        assert again == obs_a and not (await a.step(again.admissible_actions[0])).done
        assert pool.restarts == 1
        await a.release()
        await b.release()

    try:
        asyncio.run(main())
    finally:
        pool.close()


def test_pool_serves_one_event_loop_after_another(tasks):
    pool = EnvPool("alfworld", num_envs=1)  # every second lease waits, in each loop

    async def two_episodes():
        return await asyncio.gather(play_pooled(pool, tasks[0], 0, steps=2), play_pooled(pool, tasks[1], 1, steps=2))

    try:
        first, second = asyncio.run(two_episodes()), asyncio.run(two_episodes())
    finally:
        pool.close()
    assert first == second


def test_reset_errors_of_the_environment_reach_the_caller(tasks):
    pool = EnvPool("alfworld", num_envs=1)

    async def main():
        async with pool.lease() as env:
            with pytest.raises(FileNotFoundError, match="game file not found"):
                await env.reset(Task("alfworld", task_id="/nonexistent/game"))
            assert (await env.reset(tasks[0])).admissible_actions

    try:
        asyncio.run(main())
    finally:
        pool.close()
