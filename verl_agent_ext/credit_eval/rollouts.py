"""Epsilon-expert rollouts on ALFWorld, every step labelled by the planner oracle.

Behaviour: at each step, with probability 1 - epsilon the planner expert's next action, else a uniformly random
admissible action (the expert's own action included). `group_size` rollouts of each task share a group (`uid`),
as in training, so groups hold successes and failures, and failed episodes hold good steps.

Labels: d_before = d(s_t), d_after = d(s_{t+1}) (0 at the goal), progress = d_before - d_after; a step is good
when progress > 0, bad otherwise (invalid actions do not change the state: bad).

Each rollout yields one row per step with the estimator contract's columns (`credit.REQUIRED_METADATA_KEYS`),
the agent loop's episode columns (`task_type`, `episode_length`, `episode_truncated`), the optional columns of
later estimators (`step_entropy`: entropy in nats of the behaviour's action distribution at that step, the
epsilon mixture over the admissible actions, for EMPG; `next_anchor_obs`: the anchor observation after the step,
the terminal one included, for 3SPO), and the label columns.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from verl_agent_ext.credit_eval.oracle import PlanOracle, game_key
from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.base import Observation, Task
from verl_agent_ext.envs.play_cli import interleave_by_type

LABEL_COLUMNS = ("d_before", "d_after", "progress", "good")


@dataclass(frozen=True)
class RolloutSpec:
    """One batch of behaviour rollouts: `tasks` tasks x `group_size` rollouts of at most `max_steps` steps."""

    epsilon: float
    seed: int
    tasks: int = 12
    group_size: int = 8
    max_steps: int = 30

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        for name in ("tasks", "group_size", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def choose_tasks(tasks: Sequence[Task], count: int, seed: int) -> list[Task]:
    """`count` tasks, task types covered evenly (round-robin), which games of each type drawn by `seed`."""
    shuffled = list(tasks)
    random.Random(seed).shuffle(shuffled)
    chosen = interleave_by_type(shuffled)
    return [chosen[i % len(chosen)] for i in range(count)]


def mixture_entropy(num_actions: int, expert_admissible: bool, epsilon: float) -> float:
    """Entropy (nats) of "expert action w.p. 1 - epsilon, else uniform over num_actions admissible actions"."""
    if num_actions == 0:
        return 0.0
    uniform = epsilon / num_actions if expert_admissible else 1.0 / num_actions
    probabilities = [uniform] * num_actions
    if expert_admissible:
        probabilities[0] += 1.0 - epsilon
    return -sum(p * math.log(p) for p in probabilities if p > 0)


Behaviour = Callable[[int, Observation, list[str]], tuple[str, float] | None]
"""(step index, observation, the oracle's plan from it) -> (action, step_entropy), or None to end the episode."""


def rollout_rows(
    spec: RolloutSpec,
    pool: Sequence[Task],
    env: AlfworldEnv,
    oracle: PlanOracle,
    progress: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Labelled step rows of `spec`'s rollouts: a dict of (rows,) arrays (see the module docstring).

    Extra columns: `episode_return`, `seed`, `epsilon`, `task_id`. `env` must have `max_steps >= spec.max_steps`
    (the loop stops at spec.max_steps); `progress` is called once per finished rollout.
    """
    rows: list[dict] = []
    for task_index, task in enumerate(choose_tasks(pool, spec.tasks, spec.seed)):
        uid = f"s{spec.seed}-e{spec.epsilon:g}-t{task_index}"
        for member in range(spec.group_size):
            rng = np.random.default_rng([spec.seed, task_index, member, round(spec.epsilon * 1000)])
            behaviour = epsilon_expert(spec.epsilon, rng)
            steps, won = labelled_episode(env, oracle, task, (uid, f"{uid}-r{member}"), spec.max_steps, behaviour)
            rows.extend(finish_episode(steps, won, spec.seed, spec.epsilon))
            if progress is not None:
                progress()
    return columns_of(rows)


def epsilon_expert(epsilon: float, rng: np.random.Generator) -> Behaviour:
    """The module docstring's behaviour: the plan's next action w.p. 1 - epsilon, else a random admissible one."""

    def choose(step_index: int, observation: Observation, plan: list[str]) -> tuple[str, float]:
        admissible = observation.admissible_actions
        expert = plan[0] if plan and plan[0] in admissible else None
        if expert is None or rng.random() < epsilon:
            action = admissible[rng.integers(len(admissible))] if admissible else "look"
        else:
            action = expert
        others = len(admissible) if expert is not None else max(len(admissible), 1)
        return action, mixture_entropy(others, expert is not None, epsilon)

    return choose


def labelled_episode(
    env: AlfworldEnv,
    oracle: PlanOracle,
    task: Task,
    uids: tuple[str, str],
    max_steps: int,
    behaviour: Behaviour,
) -> tuple[list[dict], bool]:
    """One episode of `behaviour` on `task`, every step labelled by the oracle: (step rows, won).

    uids: (group uid, trajectory uid). The episode ends when the game does, after `max_steps` steps, or when
    `behaviour` returns None.
    """
    game = game_key(task.task_id)
    observation = env.reset(task)
    prefix: list[str] = []
    plan = oracle.plan(env, game, prefix)
    steps: list[dict] = []
    won = False
    for step_index in range(max_steps):
        choice = behaviour(step_index, observation, plan)
        if choice is None:
            break
        action, entropy = choice
        result = env.step(action)
        if not result.invalid:
            prefix.append(action)
        next_plan = [] if result.won else oracle.plan(env, game, prefix, None if result.invalid else plan)
        d_before = PlanOracle.distance(plan, won=False)
        d_after = PlanOracle.distance(next_plan, won=result.won)
        ids = (*uids, step_index)
        steps.append(labelled_step(ids, task, observation, action, result, entropy, (d_before, d_after)))
        plan, observation, won = next_plan, result.observation, result.won
        if result.done:
            break
    return steps, won


def labelled_step(
    ids: tuple[str, str, int],
    task: Task,
    observation,
    action: str,
    result,
    entropy: float,
    distances: tuple[float, float],
) -> dict:
    """One step row: ids = (uid, traj_uid, step_index), distances = (d_before, d_after) of the oracle."""
    d_before, d_after = distances
    return {
        "uid": ids[0],
        "traj_uid": ids[1],
        "step_index": ids[2],
        "anchor_obs": observation.anchor,
        "action_text": action,
        "step_reward": float(result.reward),
        "is_action_valid": not result.invalid,
        "task_type": task.task_type,
        "step_entropy": entropy,
        "next_anchor_obs": result.observation.anchor,
        "d_before": d_before,
        "d_after": d_after,
        "progress": 0.0 if d_before == d_after else d_before - d_after,
        "good": (not result.invalid) and d_after < d_before,
        "task_id": task.task_id,
    }


def finish_episode(steps: list[dict], won: bool, seed: int, epsilon: float) -> list[dict]:
    """Adds the episode columns (outcome, return, length, seed, epsilon) to every step row of one rollout."""
    episode_return = float(sum(step["step_reward"] for step in steps))
    for step in steps:
        step.update(
            episode_success=bool(won),
            episode_return=episode_return,
            episode_length=len(steps),
            episode_truncated=not won,
            seed=seed,
            epsilon=epsilon,
        )
    return steps


def columns_of(rows: list[dict]) -> dict[str, np.ndarray]:
    """Step-row dicts -> (rows,) columns: labels and rewards as float64, `good` as bool, the rest object."""
    columns = {}
    for key in rows[0]:
        column = np.empty(len(rows), dtype=object)
        column[:] = [row[key] for row in rows]
        columns[key] = column
    for key in ("d_before", "d_after", "progress", "episode_return", "step_reward", "step_entropy", "epsilon"):
        columns[key] = columns[key].astype(np.float64)
    columns["good"] = columns["good"].astype(bool)
    return columns


def concat_rows(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Row-wise concatenation of several `rollout_rows` results."""
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def split_batches(columns: dict[str, np.ndarray]) -> dict[tuple[float, int], dict[str, np.ndarray]]:
    """Rows split by (epsilon, seed), the batches one estimator call sees."""
    keys = list(zip(columns["epsilon"].tolist(), columns["seed"].tolist(), strict=True))
    batches = {}
    for key in dict.fromkeys(keys):
        rows = np.flatnonzero([k == key for k in keys])
        batches[float(key[0]), int(key[1])] = {name: column[rows] for name, column in columns.items()}
    return batches


def write_rows(path: str | os.PathLike, columns: dict[str, np.ndarray]) -> None:
    """Labelled rows as gzipped JSON lines (one object per step row), for `read_rows`."""
    keys = list(columns)
    with gzip.open(path, "wt") as stream:
        for values in zip(*(columns[key].tolist() for key in keys), strict=True):
            stream.write(json.dumps(dict(zip(keys, values, strict=True))) + "\n")


def read_rows(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Rows written by `write_rows` (d = Infinity for unreachable states survives the round trip)."""
    with gzip.open(path, "rt") as stream:
        return columns_of([json.loads(line) for line in stream if line.strip()])
