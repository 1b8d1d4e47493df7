"""WebShop environment speed on a generated catalog: catalog build, BM25 search latency, environment steps/s.

    python benchmarks/bench_webshop_env.py [--products 10000] [--queries 500] [--episodes 300] [--seed 0]

Prints one markdown table of medians (and p95 for search latency). Search queries are the goals' instructions
(without the price clause), as the expert policy sends them. Steps/s counts every `env.step` of whole episodes
(search, result pages, item pages, option clicks, purchase with the reward), for the expert and random policies.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from tqdm import tqdm

from verl_agent_ext.envs.registry import make_env, make_policy
from verl_agent_ext.envs.webshop.generate import generate_catalog
from verl_agent_ext.envs.webshop.policies import instruction_query
from verl_agent_ext.envs.webshop.search import BM25Index
from verl_agent_ext.envs.webshop.tasks import list_tasks

REPEATS = 3


def _steps_per_second(env, policy_name: str, tasks, seed: int) -> tuple[float, float, float]:
    """(env steps per second, mean steps per episode, success rate) over `tasks`, timing `env.step` only."""
    policy = make_policy("webshop", policy_name, env, seed)
    steps, seconds, wins = 0, 0.0, 0
    for task in tqdm(tasks, desc=f"{policy_name} episodes", leave=False):
        observation = env.reset(task)
        done = False
        while not done:
            action = policy.act(observation)
            start = time.perf_counter()
            result = env.step(action)
            seconds += time.perf_counter() - start
            observation, done = result.observation, result.done
            steps += 1
        wins += result.won
    return steps / seconds, steps / len(tasks), wins / len(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    generate_catalog(args.products, args.seed)
    generate_seconds = time.perf_counter() - start
    start = time.perf_counter()
    env = make_env("webshop", generated_products=args.products, seed=args.seed)
    load_seconds = time.perf_counter() - start
    catalog = env.catalog
    start = time.perf_counter()
    BM25Index([p.search_text() for p in catalog.products])
    index_seconds = time.perf_counter() - start
    catalog.search("warm up", 50)

    queries = [instruction_query(goal.instruction_text) for goal in catalog.goals[: args.queries]]
    latencies_ms = []  # per query: the median of REPEATS runs (the machine may be shared)
    for query in tqdm(queries, desc="search", leave=False):
        runs = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            catalog.search(query, 50)
            runs.append(1000 * (time.perf_counter() - start))
        latencies_ms.append(statistics.median(runs))

    tasks = list_tasks("train", limit=args.episodes, generated_products=args.products, seed=args.seed)
    expert_rate, expert_length, expert_success = _steps_per_second(env, "expert", tasks, args.seed)
    random_rate, random_length, random_success = _steps_per_second(env, "random", tasks, args.seed)

    print(f"\nWebShop env, generated catalog of {len(catalog.products):,} products, {len(catalog.goals):,} goals\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| generate catalog (s) | {generate_seconds:.2f} |")
    print(f"| generate + parse + goals + BM25 index, env ready (s) | {load_seconds:.2f} |")
    print(f"| build BM25 index alone (s) | {index_seconds:.2f} |")
    print(f"| search latency, median (ms, top 50, {len(queries)} queries) | {statistics.median(latencies_ms):.2f} |")
    print(f"| search latency, p95 (ms) | {np.percentile(latencies_ms, 95):.2f} |")
    for name, rate, length, success in (
        ("expert", expert_rate, expert_length, expert_success),
        ("random", random_rate, random_length, random_success),
    ):
        print(f"| env steps/s, {name} ({len(tasks)} episodes, {length:.1f} steps each) | {rate:,.0f} |")
        print(f"| success rate, {name} (score == 1) | {success:.1%} |")


if __name__ == "__main__":
    main()
