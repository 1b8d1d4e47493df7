"""`verl-agent-ext play`: play episodes with a scripted policy and print success rate and mean steps per task type.

    verl-agent-ext play --env alfworld --policy expert --episodes 60              # cached generated games
    verl-agent-ext play --env alfworld --policy random --episodes 20 --games DIR  # a folder of games
    verl-agent-ext play --env alfworld --official --split eval_out_of_distribution  # $ALFWORLD_DATA
    verl-agent-ext play --env webshop --policy expert --episodes 50 [--data DIR]

Environments and policies come from `envs/registry.py`; the episodes cycle over the task types so a short run
still covers every type.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from itertools import zip_longest
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "play",
        help="play episodes with a scripted policy (expert, random): success rate and steps per task type",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--env", required=True, help="environment name: alfworld, webshop")
    parser.add_argument(
        "--policy", default="expert", help="scripted policy: expert, random; ALFWorld also searcher (default expert)"
    )
    parser.add_argument("--episodes", type=int, default=12, help="number of episodes (default 12)")
    parser.add_argument("--split", default=None, help="task split (default: train for alfworld, test for webshop)")
    parser.add_argument("--games", default=None, help="alfworld: folder of games (generated or official layout)")
    parser.add_argument("--official", action="store_true", help="alfworld: the official split under $ALFWORLD_DATA")
    parser.add_argument("--data", default=None, help="webshop: catalog folder (original files or generated)")
    parser.add_argument("--max-steps", type=int, default=None, help="step limit per episode (env default if unset)")
    parser.add_argument("--seed", type=int, default=0, help="policy seed (default 0)")
    parser.set_defaults(func=run)


def _alfworld_setup(args: argparse.Namespace) -> tuple[dict[str, Any], list]:
    from tqdm import tqdm

    from verl_agent_ext.envs.alfworld.games import generated_tasks, list_tasks

    split = args.split or "train"
    if args.games is not None:
        return {}, list_tasks(split, games_dir=args.games)
    if args.official:
        return {}, list_tasks(split)
    # Generated on first use only (then cached): the bar shows that one-off cost.
    with tqdm(desc="generating the default games (once)", unit="game", leave=False) as bar:
        return {}, generated_tasks(split, progress=lambda game: bar.update())


def _webshop_setup(args: argparse.Namespace) -> tuple[dict[str, Any], list]:
    from verl_agent_ext.envs.webshop.tasks import list_tasks

    kwargs = {"data_dir": args.data}
    return kwargs, list_tasks(args.split or "test", limit=max(args.episodes, 1), data_dir=args.data)


# Per environment: (environment kwargs, tasks) from the command line.
SETUPS = {"alfworld": _alfworld_setup, "webshop": _webshop_setup}


def interleave_by_type(tasks: list) -> list:
    """Round-robin over task types, keeping each type's order: the first N tasks cover the types evenly."""
    by_type: dict[str, list] = defaultdict(list)
    for task in tasks:
        by_type[task.task_type].append(task)
    rounds = zip_longest(*(by_type[t] for t in sorted(by_type)))
    return [task for round_ in rounds for task in round_ if task is not None]


def run(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from verl_agent_ext.envs.registry import make_env, make_policy
    from verl_agent_ext.errors import UserError, existing_folder, user_input_errors

    if args.env not in SETUPS:
        raise UserError(f"unknown environment {args.env!r}; valid names: {sorted(SETUPS)}")
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    for option, folder in (("--games", args.games), ("--data", args.data)):
        if folder is not None:
            existing_folder(folder, option)
    with user_input_errors():  # unknown policy or split, no games in the folder, missing optional extra
        env_kwargs, tasks = SETUPS[args.env](args)
        if args.max_steps is not None:
            env_kwargs["max_steps"] = args.max_steps
        env = make_env(args.env, **env_kwargs)
        policy = make_policy(args.env, args.policy, env, seed=args.seed)
    tasks = interleave_by_type(tasks)
    episodes = [tasks[i % len(tasks)] for i in range(args.episodes)]

    stats: dict[str, list[tuple[bool, int]]] = defaultdict(list)
    start = time.perf_counter()
    total_steps = 0
    for task in tqdm(episodes, desc=f"{args.env}/{args.policy}", unit="episode"):
        observation, steps, won = env.reset(task), 0, False
        while True:
            result = env.step(policy.act(observation))
            observation, steps = result.observation, steps + 1
            if result.done:
                won = result.won
                break
        stats[task.task_type].append((won, steps))
        total_steps += steps
    elapsed = time.perf_counter() - start
    env.close()

    print(f"{'task type':<34} {'episodes':>8} {'success':>8} {'mean steps':>10}")
    for task_type in sorted(stats) + ["all"]:
        rows = [row for rows in stats.values() for row in rows] if task_type == "all" else stats[task_type]
        success = sum(won for won, _ in rows) / len(rows)
        mean_steps = sum(steps for _, steps in rows) / len(rows)
        print(f"{task_type:<34} {len(rows):>8d} {success:>8.1%} {mean_steps:>10.1f}")
    print(f"{len(episodes)} episodes, {total_steps} steps in {elapsed:.1f} s ({total_steps / elapsed:.1f} steps/s)")
    return 0
