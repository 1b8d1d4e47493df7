"""3SPO exploration: unique states visited with the branching rollout on vs off, on the same env-step budget.

    python benchmarks/bench_sspo_exploration.py [--env alfworld] [--tasks 4] [--group-size 8] [--max-steps 15]
        [--iterations 4] [--seed 0]

A random-action policy (uniform over the admissible actions) plays `--tasks` tasks x `--group-size` sessions per
iteration through the project's branching rollout (`agent.branching.play_branching`, real environments in an
in-process `EnvPool`, deterministic replay). "off": every session plays one episode (GRPO's rollout).
"on": 3SPO's adaptive rollout with the published defaults (alpha 50, xi 10, zeta 0.1, G_max 8) and the group caps
32 trajectories and group-size x max-steps env steps, i.e. the most a GRPO group can take. After each iteration
the state-score table learns that iteration's trajectories (as the estimator does), so later iterations branch
where states are unseen or rarely solved, and stop at states with >= xi failures and success rate <= zeta.

A state is an (task, anchor observation) pair. Reported per mode and iteration: policy steps (one per
generation in training), replayed steps (env steps spent restoring forks), trajectories, forks, stops, unique
states this iteration and cumulative, and unique states per 100 policy steps.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass

import numpy as np

from verl_agent_ext.agent.branching import BranchingPlan, play_branching
from verl_agent_ext.agent.env_agent_loop import EnvAgentLoop, _Decision
from verl_agent_ext.agent.state_score_store import run_score_store
from verl_agent_ext.credit import StepBatch
from verl_agent_ext.credit.config import SSPOConfig
from verl_agent_ext.credit.sspo import trajectory_states
from verl_agent_ext.envs.base import ParsedAction
from verl_agent_ext.envs.pool import EnvPool


@dataclass
class RandomPolicyLoop:
    """The parts of `EnvAgentLoop` the branching rollout uses, with a random-action policy instead of a model."""

    branching: BranchingPlan
    rng: random.Random
    episode_info = staticmethod(EnvAgentLoop.episode_info)

    async def decide(self, env, observation, history, step_index, request_id, sampling_params) -> _Decision:
        action = self.rng.choice(observation.admissible_actions)
        return _Decision([], [], None, ParsedAction(action, True), 0.0, -1, {})

    def step_output(self, step, step_index, traj_uid, task, reward_extra_info, reward_score) -> dict:
        return {
            "traj_uid": traj_uid,
            "step_index": step_index,
            "anchor": step.anchor_obs,
            "next_anchor": step.next_anchor_obs,
            "reward": step.reward,
            "success": bool(reward_extra_info["success"]),
        }


def load_tasks(env: str, count: int, seed: int):
    if env == "alfworld":
        from verl_agent_ext.envs.alfworld.games import generated_tasks

        tasks = generated_tasks("train", per_type=2, seed=0)
    else:
        from verl_agent_ext.envs.base import Task

        tasks = [Task(env="webshop", task_id=str(i), split="train") for i in range(count * 4)]
    return random.Random(seed).sample(tasks, count)


def run_mode(args, branching: bool, tasks) -> list[dict]:
    # off: one trajectory per session that never stops (xi so large that no state is ever cut: n = 1 everywhere)
    sspo = SSPOConfig() if branching else SSPOConfig(xi=1e18)
    store = run_score_store("sspo", sspo)
    trajectories_per_session = sspo.max_trajectories_per_group // args.group_size if branching else 1
    plan = BranchingPlan(sspo, trajectories_per_session, max_env_steps=args.max_steps, max_steps=args.max_steps)
    pool = EnvPool(args.env, num_envs=1, backend="inprocess", env_kwargs={"max_steps": args.max_steps})
    seen: set[tuple[str, str]] = set()
    records = []
    try:
        for iteration in range(1, args.iterations + 1):
            rng = random.Random(args.seed * 1000 + iteration)
            record = {
                "iteration": iteration,
                "policy_steps": 0,
                "replayed_steps": 0,
                "trajectories": 0,
                "forks": 0,
                "stops": 0,
            }
            states: set[tuple[str, str]] = set()
            trajectories = []
            started = time.perf_counter()
            for task in tasks:
                for _ in range(args.group_size):
                    loop = RandomPolicyLoop(plan, rng)
                    rows = asyncio.run(play_branching(loop, pool, task, {}))
                    tree = loop.last_tree_stats
                    record["policy_steps"] += tree.env_steps
                    record["forks"] += tree.forks
                    record["stops"] += tree.stops
                    record["replayed_steps"] += tree.replayed_steps
                    record["trajectories"] += len({row["traj_uid"] for row in rows})
                    states.update((task.task_id, row[key]) for row in rows for key in ("anchor", "next_anchor"))
                    batch = StepBatch.from_columns(
                        uid=[task.task_id] * len(rows),
                        traj_uid=[row["traj_uid"] for row in rows],
                        step_index=[row["step_index"] for row in rows],
                        step_reward=[row["reward"] for row in rows],
                        episode_success=[row["success"] for row in rows],
                        anchor_obs=[row["anchor"] for row in rows],
                    )
                    trajectories += trajectory_states(batch, np.asarray([row["next_anchor"] for row in rows]))
            store.update(trajectories)  # the table learns after the batch, as the estimator does
            seen |= states
            record.update(
                unique_states=len(states),
                cumulative_states=len(seen),
                states_per_100_steps=100 * len(states) / max(record["policy_steps"], 1),
                seconds=time.perf_counter() - started,
            )
            records.append(record)
    finally:
        pool.close()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="alfworld", choices=["alfworld", "webshop"])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tasks = load_tasks(args.env, args.tasks, args.seed)
    columns = (
        "iteration",
        "policy_steps",
        "replayed_steps",
        "trajectories",
        "forks",
        "stops",
        "unique_states",
        "cumulative_states",
        "states_per_100_steps",
        "seconds",
    )
    print(f"{args.env}: {args.tasks} tasks x {args.group_size} sessions, <= {args.max_steps} steps, random actions")
    for branching in (False, True):
        print(f"\nbranching {'on' if branching else 'off'}")
        print(" | ".join(columns))
        for record in run_mode(args, branching, tasks):
            print(" | ".join(f"{record[c]:.1f}" if isinstance(record[c], float) else str(record[c]) for c in columns))


if __name__ == "__main__":
    main()
