"""The arena's whole loop on one core: rollout (policy + environment), verl's estimator, verl's actor loss, evaluation.

    python benchmarks/bench_arena_loop.py [--env alfworld|webshop] [--estimator grpo] [--episodes 200] [--repeats 3]

Every repeat is one `run_arena` of the same seed, so after the first the ALFWorld transition tables hold every
state the run visits (warm: no engine call; the first, cold, repeat shows the engine's cost). Prints steps/s =
training env steps / wall seconds of the run (evaluation, warm start and estimator included), median and min-max of
the warm repeats. Environment throughput alone: benchmarks/bench_arena_envs.py.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="alfworld", choices=("alfworld", "webshop"))
    parser.add_argument("--estimator", default="grpo")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)

    from verl_agent_ext.arena.train import ArenaConfig, run_arena, verl_base_overrides
    from verl_agent_ext.credit_eval.estimators import parse_estimators, verl_config

    settings = {"train_per_type": 48, "heldout_per_type": 48, "max_steps": 10} if args.env == "webshop" else {}
    config = ArenaConfig(env=args.env, episodes=args.episodes, eval_every=args.episodes, **settings)
    spec = parse_estimators(args.estimator)[0]
    composed = verl_config(spec, [], verl_base_overrides(config, spec.name))
    rates = []
    for repeat in range(args.repeats + 1):
        run = run_arena(config, spec.name, composed, seed=0)
        rate = run["total_env_steps"] / run["wall_seconds"]
        kind = "cold (first)" if repeat == 0 else "warm"
        print(f"{kind:>12}: {run['total_env_steps']} steps in {run['wall_seconds']:.1f} s = {rate:,.0f} steps/s")
        if repeat:
            rates.append(rate)
    print(
        f"{args.env} {args.estimator}: median {statistics.median(rates):,.0f} steps/s "
        f"[{min(rates):,.0f}-{max(rates):,.0f}] over {len(rates)} warm repeats, 1 core"
    )


if __name__ == "__main__":
    main()
