"""ALFWorld environment speed through the env pool: resets/s and steps/s for 1, 8, 32 envs, in-process and Ray.

    python benchmarks/bench_alfworld_env.py [--sizes 1 8 32] [--steps 10] [--repeats 3] [--workers 2]

Games: 8 games of the cached generated training set (mixed task types). In round r, client i of N concurrent
clients leases an environment, resets it on game (i + r) mod 8 and takes `--steps` random admissible steps.
resets/s and steps/s are (resets or steps of all N clients) / wall time, medians over `--repeats` rounds, after
one untimed round that loads all 8 games into every environment (a game's first reset in a process translates
its PDDL; later resets and replays, as in group rollouts and branching, reuse the translation). That first,
cold reset is timed separately. Memory per env: resident memory of the processes holding the environments after
the run minus before the first reset, divided by N (Ray: includes each actor's engine imports).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import time

import psutil
import ray

from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.alfworld.games import generated_tasks
from verl_agent_ext.envs.pool import EnvPool

NUM_GAMES = 8


async def _round(pool: EnvPool, games, steps: int, round_index: int) -> tuple[float, float]:
    """(seconds for all N resets, seconds for all N x steps steps) with N concurrent clients."""
    handles = [await pool.acquire() for _ in range(pool.num_envs)]
    chosen = [games[(i + round_index) % len(games)] for i in range(len(handles))]
    start = time.perf_counter()
    observations = await asyncio.gather(*(h.reset(task) for h, task in zip(handles, chosen, strict=True)))
    reset_seconds = time.perf_counter() - start

    async def walk(handle, task, observation, rng):
        for _ in range(steps):
            result = await handle.step(rng.choice(observation.admissible_actions))
            observation = result.observation
            if result.done:
                observation = await handle.reset(task)

    clients = [
        walk(handle, task, obs, random.Random(round_index * 1000 + i))
        for i, (handle, task, obs) in enumerate(zip(handles, chosen, observations, strict=True))
    ]
    start = time.perf_counter()
    await asyncio.gather(*clients)
    step_seconds = time.perf_counter() - start
    for handle in handles:
        await handle.release()
    return reset_seconds, step_seconds


async def _load_all_games(pool: EnvPool, games) -> None:
    handles = [await pool.acquire() for _ in range(pool.num_envs)]

    async def load(handle):
        for task in games:
            await handle.reset(task)

    await asyncio.gather(*(load(h) for h in handles))
    for handle in handles:
        await handle.release()


def _rss(pids: list[int]) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


def _pool_pids(pool: EnvPool) -> list[int]:
    if pool.backend == "inprocess":
        return [os.getpid()]
    return ray.get([state.worker.actor.pid.remote() for state in pool._workers])


def measure(backend: str, size: int, games, steps: int, repeats: int, workers: int) -> dict[str, float]:
    pool = EnvPool("alfworld", num_envs=size, backend=backend, num_workers=min(workers, size))
    asyncio.run(pool.wait_ready())
    gc.collect()
    pids = _pool_pids(pool)
    baseline = _rss(pids)
    asyncio.run(_load_all_games(pool, games))
    rounds = [asyncio.run(_round(pool, games, steps, r)) for r in range(repeats)]
    memory = (_rss(pids) - baseline) / size
    pool.close()
    return {
        "resets": statistics.median(size / r for r, _ in rounds),
        "steps": statistics.median(size * steps / s for _, s in rounds),
        "memory_mb": memory / 2**20,
    }


def cold_reset_seconds(games) -> float:
    """Median first-reset time of a game in a fresh cache (load + PDDL translation), one environment."""
    import fast_downward

    env = AlfworldEnv()
    env.reset(games[0])  # imports and patches the engine
    seconds = []
    for task in games:
        fast_downward.pddl2sas.cache_clear()
        start = time.perf_counter()
        env.reset(task)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=10, help="random steps per client per round")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (medians)")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (each holds size/workers envs)")
    parser.add_argument("--backends", nargs="+", default=["inprocess", "ray"])
    args = parser.parse_args()

    tasks = generated_tasks("train", per_type=10, seed=0)
    games = random.Random(0).sample(tasks, NUM_GAMES)
    cold = cold_reset_seconds(games)
    if "ray" in args.backends:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    rows = []
    for backend in args.backends:
        for size in args.sizes:
            print(f"[bench] {backend} x{size} ...", flush=True)
            rows.append((backend, size, measure(backend, size, games, args.steps, args.repeats, args.workers)))
    if "ray" in args.backends:
        ray.shutdown()

    print(
        f"\nALFWorld env pool on {os.cpu_count()} CPU cores: {NUM_GAMES} generated games, {args.steps} random steps"
        f" per env per round, medians of {args.repeats} rounds; Ray: {args.workers} actors\n"
    )
    print("| backend | envs | resets/s | steps/s | memory / env (MB) |")
    print("|---|---:|---:|---:|---:|")
    for backend, size, m in rows:
        print(f"| {backend} | {size} | {m['resets']:.1f} | {m['steps']:.1f} | {m['memory_mb']:.1f} |")
    print(f"\nFirst reset of a game in a process (PDDL translation): {cold:.2f} s (median of {NUM_GAMES} games)")


if __name__ == "__main__":
    main()
