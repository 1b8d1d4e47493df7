"""EnvPool on Ray: many envs per actor, parallel episodes, a killed actor is restarted and its episodes truncated."""

from __future__ import annotations

import asyncio

import pytest
import ray

from verl_agent_ext.envs.alfworld.games import generated_tasks
from verl_agent_ext.envs.base import Task
from verl_agent_ext.envs.pool import EnvPool


@pytest.fixture(scope="module")
def ray_pool():
    tasks = generated_tasks("train", per_type=10, seed=0)[::10][:4]
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    pool = EnvPool("alfworld", num_envs=4, backend="ray", num_workers=2)
    asyncio.run(pool.wait_ready())
    yield pool, tasks
    pool.close()
    if started_here:
        ray.shutdown()


def test_envs_are_spread_over_few_actors(ray_pool):
    pool, _ = ray_pool
    assert pool.num_workers == 2 and pool.num_envs == 4


def test_parallel_episodes_on_actors(ray_pool):
    pool, tasks = ray_pool

    async def play(task):
        async with pool.lease() as env:
            obs = await env.reset(task)
            result = await env.step(obs.admissible_actions[0])
            return obs, result

    async def main():
        return await asyncio.gather(*(play(task) for task in tasks))

    for (obs, result), task in zip(asyncio.run(main()), tasks, strict=True):
        assert obs.task_description and not result.invalid and not result.info["truncated"]
        assert result.info["task_type"] == task.task_type


def test_killed_actor_is_restarted_and_its_episodes_truncated(ray_pool):
    pool, tasks = ray_pool

    async def main():
        handles = [await pool.acquire() for _ in range(4)]
        observations = [await h.reset(t) for h, t in zip(handles, tasks, strict=True)]
        victim = handles[0].worker_index
        ray.kill(pool._workers[victim].worker.actor, no_restart=True)
        results = await asyncio.gather(
            *(h.step(obs.admissible_actions[0]) for h, obs in zip(handles, observations, strict=True))
        )
        for handle, obs, result in zip(handles, observations, results, strict=True):
            lost = handle.worker_index == victim
            assert result.info.get("truncated", False) == lost
            if lost:
                assert result.done and result.info["error"] and result.observation == obs
        # The restarted actor serves new episodes.
        assert await handles[0].reset(tasks[0]) == observations[0]
        assert not (await handles[0].step(observations[0].admissible_actions[0])).done
        for handle in handles:
            await handle.release()

    restarts = pool.restarts
    asyncio.run(main())
    assert pool.restarts == restarts + 1


def test_environment_errors_come_back_with_their_type(ray_pool):
    pool, tasks = ray_pool

    async def main():
        async with pool.lease() as env:
            with pytest.raises(FileNotFoundError, match="game file not found"):
                await env.reset(Task("alfworld", task_id="/nonexistent/game"))
            assert (await env.reset(tasks[0])).admissible_actions

    asyncio.run(main())


def test_a_hung_worker_counts_as_crashed(ray_pool):
    _, tasks = ray_pool
    pool = EnvPool("alfworld", num_envs=1, backend="ray", num_workers=1, call_timeout_s=60)

    async def main():
        async with pool.lease() as env:
            obs = await env.reset(tasks[0])
            pool._workers[0].worker.timeout_s = 1e-3  # no step answers this fast: the worker is treated as hung
            result = await env.step(obs.admissible_actions[0])
            assert result.done and result.info["truncated"] and "did not answer" in result.info["error"]
            pool._workers[0].worker.timeout_s = 60
            assert await env.reset(tasks[0]) == obs

    try:
        asyncio.run(main())
        assert pool.restarts == 1
    finally:
        pool.close()
