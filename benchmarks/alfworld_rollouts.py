"""Epsilon-expert ALFWorld rollouts at the published batch shape, as a StepBatch (cached on disk as JSON).

Each of `groups` generated training games is played `group_size` times: at every step the planner expert's action
with probability 1 - epsilon, else a uniformly random admissible action, until success or `max_steps`. Epsilon
cycles over `epsilons` by trajectory, so groups mix successes and long failures (as a policy mid-training).
Used by benchmarks/bench_scpo_encoding.py; the rollouts take minutes (Fast Downward replans), hence the cache.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from verl_agent_ext.credit import StepBatch
from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.alfworld.games import generated_tasks
from verl_agent_ext.envs.alfworld.generator import cache_root
from verl_agent_ext.envs.alfworld.policies import PlannerExpert

COLUMNS = ("uid", "traj_uid", "step_index", "step_reward", "episode_success", "anchor_obs", "action_text")


def play_group(env: AlfworldEnv, task, g: int, group_size: int, epsilons: tuple[float, ...], seed: int) -> dict:
    """Step columns of `group_size` epsilon-expert rollouts of one game (group `g`)."""
    rng = random.Random(seed * 1_000_003 + g)
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    for t in range(group_size):
        epsilon = epsilons[(g * group_size + t) % len(epsilons)]
        observation = env.reset(task)
        expert = PlannerExpert(env)
        rows = []
        done, won = False, False
        while not done:
            if rng.random() < epsilon or not observation.admissible_actions:
                action = rng.choice(observation.admissible_actions) if observation.admissible_actions else "look"
            else:
                action = expert.act(observation)
            result = env.step(action)
            rows.append((observation.anchor, action, result.reward))
            observation, done, won = result.observation, result.done, result.won
        for step, (anchor, action, reward) in enumerate(rows):
            columns["uid"].append(f"g{g}")
            columns["traj_uid"].append(f"g{g}-t{t}")
            columns["step_index"].append(step)
            columns["step_reward"].append(reward)
            columns["episode_success"].append(won)
            columns["anchor_obs"].append(anchor)
            columns["action_text"].append(action)
    return columns


def alfworld_batch(
    groups: int = 16,
    group_size: int = 8,
    max_steps: int = 50,
    epsilons: tuple[float, ...] = (0.5, 0.75, 0.9),
    seed: int = 0,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> StepBatch:
    """The rollouts as a StepBatch; each group is cached as JSON (keyed by the arguments), so runs resume."""
    folder = (cache_dir or cache_root() / "bench_rollouts") / (
        f"alfworld_n{group_size}_s{max_steps}_eps{'-'.join(f'{e:g}' for e in epsilons)}_seed{seed}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    tasks = random.Random(seed).sample(generated_tasks("train", per_type=10, seed=0), groups)
    env = AlfworldEnv(max_steps=max_steps)
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    for g, task in enumerate(tasks):
        path = folder / f"group{g}.json"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(play_group(env, task, g, group_size, epsilons, seed)))
            tmp.replace(path)
            if progress:
                print(f"  rollouts: group {g + 1}/{groups} played", flush=True)
        for name, values in json.loads(path.read_text()).items():
            columns[name].extend(values)
    env.close()
    return StepBatch.from_columns(**columns)
