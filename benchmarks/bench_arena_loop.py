"""The arena's whole loop on one core: rollout (policy + environment), verl's estimator, verl's actor loss, evaluation.

    python benchmarks/bench_arena_loop.py [--env alfworld|webshop] [--estimator grpo] [--episodes 200] [--repeats 3]

Every repeat is one `run_arena` of the same seed, so after the first the ALFWorld transition tables hold every
state the run visits (warm: no engine call; the first, cold, repeat shows the engine's cost unless earlier runs
filled the tables on disk). Per repeat it prints three rates:

- loop: training env steps / wall seconds of the whole run (set-up, warm start, evaluation, estimator included);
- agent: training + evaluation env steps / wall seconds (every step the policy takes);
- train: training env steps / seconds of the training iterations alone (rollout, estimator, update: the run
  minus its set-up, warm start and evaluations), what a long run tends to per training step,

then the median and min-max of the warm repeats. Pinned to one core, one torch thread. Run it with another
checkout on PYTHONPATH to time that code with the same harness (docs/arena.md "Throughput" compares two).
Environment throughput alone: benchmarks/bench_arena_envs.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch


def _timed(module: Any, name: str, seconds: dict[str, float], label: str) -> None:
    """Wrap `module.name` so its calls add their wall time to seconds[label]."""
    function = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[label] += time.perf_counter() - start

    setattr(module, name, wrapper)


def _instrument(seconds: dict[str, float], counts: dict[str, int]) -> None:
    """Time the phases of `run_arena` that are not training iterations, and count evaluation steps."""
    import verl.utils.config

    import verl_agent_ext.arena.train as train

    _timed(train, "arena_environment", seconds, "setup")
    _timed(train, "demonstrations", seconds, "warm start")
    _timed(train, "behaviour_clone", seconds, "warm start")
    _timed(train, "evaluate", seconds, "evaluation")
    _timed(verl.utils.config, "omega_conf_to_dataclass", seconds, "setup")
    play_episode: Callable = train.play_episode  # used by `evaluate` only (training plays `play_group`)

    def counted(*args: Any, **kwargs: Any) -> Any:
        rows, steps = play_episode(*args, **kwargs)
        counts["evaluation steps"] += steps
        return rows, steps

    train.play_episode = counted


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

    seconds: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    _instrument(seconds, counts)
    # the sizes of the measurements in docs/arena.md (ALFWorld: 12 + 12 games, the arena's default before 2026-12-07)
    settings = (
        {"train_per_type": 48, "heldout_per_type": 48, "max_steps": 10}
        if args.env == "webshop"
        else {"train_per_type": 2, "heldout_per_type": 2}
    )
    config = ArenaConfig(env=args.env, episodes=args.episodes, eval_every=args.episodes, **settings)
    spec = parse_estimators(args.estimator)[0]
    composed = verl_config(spec, [], verl_base_overrides(config, spec.name))
    rates: dict[str, list[float]] = defaultdict(list)
    for repeat in range(args.repeats + 1):
        seconds.clear()
        counts.clear()
        run = run_arena(config, spec.name, composed, seed=0)
        wall, steps = run["wall_seconds"], run["total_env_steps"]
        training = wall - sum(seconds.values())
        rate = {
            "loop": steps / wall,
            "agent": (steps + counts["evaluation steps"]) / wall,
            "train": steps / training,
        }
        kind = "cold (first)" if repeat == 0 else "warm"
        phases = ", ".join(f"{label} {value:.2f} s" for label, value in sorted(seconds.items()))
        print(
            f"{kind:>12}: {steps} training + {counts['evaluation steps']} evaluation steps in {wall:.2f} s "
            f"({phases}, training iterations {training:.2f} s): "
            + ", ".join(f"{name} {value:,.0f}" for name, value in rate.items())
            + " steps/s",
            flush=True,
        )
        if repeat:
            for name, value in rate.items():
                rates[name].append(value)
    summary = ", ".join(
        f"{name} {statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"
        for name, values in rates.items()
    )
    print(f"{args.env} {args.estimator}: median [min-max] steps/s over {args.repeats} warm repeats, 1 core: {summary}")


if __name__ == "__main__":
    main()
