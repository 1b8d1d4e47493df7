"""Episodes of the light policy as training rows with the agent loop's `non_tensor_batch` fields.

Every step becomes one row with the estimator contract (`credit.REQUIRED_METADATA_KEYS`), the agent loop's episode
fields (`agent.EPISODE_KEYS`), `next_anchor_obs` (3SPO), `step_entropy` (EMPG: the policy's entropy over the
candidates at that step) and `episode_return` (what verl's `token_level_rewards` sum to), plus what the update
needs: the step's features, the chosen candidate and its log-prob under the rollout policy (verl's
`old_log_prob`).

Groups: `group_size` sessions of one task share a `uid`, as in GRPO training. For 3SPO with branching, each session
is grown by the agent loop's own `agent.branching.play_branching` (same state-score table, same caps), driven by
this policy through a small loop adapter; its rows' `episode_return` is the mean return of the trajectories
through the step, as the agent loop's `reward_score`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verl_agent_ext.agent import EPISODE_KEYS, STEP_METADATA_KEYS
from verl_agent_ext.arena.policy import CandidatePolicy, Context, FeatureHasher, StepFeatures
from verl_agent_ext.envs.base import Observation, StepResult, Task, TextEnv, Turn

ROW_KEYS = ("uid", *STEP_METADATA_KEYS, *EPISODE_KEYS, "step_entropy", "episode_return")
"""Columns of every row (the estimator reads them; `prm_step_reward` is added for istar)."""


class Actor:
    """Samples actions of a `CandidatePolicy` at single states (no gradient); `candidates(observation)` gives the
    actions to choose among (`arena.envs.ArenaEnvironment.candidates`)."""

    def __init__(
        self, policy: CandidatePolicy, hasher: FeatureHasher, candidates: Callable[[Observation], tuple[str, ...]]
    ) -> None:
        self.policy, self.hasher, self.candidates = policy, hasher, candidates

    def decide(self, observation: Observation, past_actions: Sequence[str], rng: np.random.Generator) -> _Decision:
        """Sample one candidate at `observation`."""
        candidates = self.candidates(observation)
        context = Context(observation.task_description, observation.text, tuple(candidates), tuple(past_actions))
        features = self.hasher.features(context)
        log_p, entropy = self.policy.step_log_probs(features)
        probabilities = np.exp(log_p)
        index = int(rng.choice(len(candidates), p=probabilities / probabilities.sum()))
        return _Decision(candidates[index], features, index, float(log_p[index]), entropy)


@dataclass
class _Decision:
    action: str
    features: StepFeatures
    chosen: int
    log_prob: float
    entropy: float

    def played(self, observation: Observation, result: StepResult) -> _Step:
        return _Step(self, observation.anchor, result.observation.anchor, float(result.reward), not result.invalid)


@dataclass
class _Step:
    decision: _Decision
    anchor_obs: str
    next_anchor_obs: str
    reward: float
    valid: bool


def episode_info(steps: Sequence[_Step], won: bool, final_info: dict[str, Any]) -> dict[str, Any]:
    return {
        "success": float(won),
        "episode_length": len(steps),
        "episode_return": sum(step.reward for step in steps),
        "truncated": float(bool(final_info.get("truncated", False))),
    }


def step_row(
    step: _Step, step_index: int, traj_uid: str, task: Task, info: dict[str, Any], reward_score: float
) -> dict[str, Any]:
    """The training row of one step (the agent loop's `step_output` fields, without token ids)."""
    decision = step.decision
    return {
        "traj_uid": traj_uid,
        "step_index": step_index,
        "anchor_obs": step.anchor_obs,
        "next_anchor_obs": step.next_anchor_obs,
        "action_text": decision.action,
        "step_reward": step.reward,
        "is_action_valid": step.valid,
        "episode_success": bool(info["success"]),
        "task_type": task.task_type,
        "episode_length": int(info["episode_length"]),
        "episode_truncated": bool(info["truncated"]),
        "step_entropy": decision.entropy,
        "episode_return": float(reward_score),
        "features": decision.features,
        "chosen": decision.chosen,
        "old_log_prob": decision.log_prob,
    }


def play_episode(
    env: TextEnv, task: Task, actor: Actor, rng: np.random.Generator, traj_uid: str, max_steps: int
) -> tuple[list[dict[str, Any]], int]:
    """One episode of at most `max_steps` steps. Returns (its rows, env steps)."""
    observation = env.reset(task)
    steps: list[_Step] = []
    past: list[str] = []
    result = None
    for _ in range(max_steps):
        decision = actor.decide(observation, past, rng)
        result = env.step(decision.action)
        steps.append(decision.played(observation, result))
        past.append(decision.action)
        observation = result.observation
        if result.done:
            break
    won = bool(result is not None and result.won)
    truncated = result is None or not result.done or bool(result.info.get("truncated", False))
    info = episode_info(steps, won, {"truncated": truncated})
    rows = [step_row(step, k, traj_uid, task, info, info["episode_return"]) for k, step in enumerate(steps)]
    return rows, len(steps)


def play_group(
    env: TextEnv,
    task: Task,
    actor: Actor,
    rng: np.random.Generator,
    uid: str,
    group_size: int,
    max_steps: int,
    branching: Any = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`group_size` sessions of `task` sharing `uid`; with a 3SPO `branching` plan each session is a tree.

    Returns (rows, counts: env_steps taken by the policy, replayed_steps spent restoring forks, trajectories).
    """
    rows: list[dict[str, Any]] = []
    counts = {"env_steps": 0, "replayed_steps": 0, "trajectories": 0}
    for member in range(group_size):
        if branching is None:
            session, steps = play_episode(env, task, actor, rng, f"{uid}-r{member}", max_steps)
            counts["env_steps"] += steps
            counts["trajectories"] += 1
        else:
            loop = _BranchingLoop(actor, branching, rng, f"{uid}-r{member}")
            session = asyncio.run(_play_branching(loop, env, task))
            stats = loop.last_tree_stats
            counts["env_steps"] += stats.env_steps
            counts["replayed_steps"] += stats.replayed_steps
            counts["trajectories"] += len({row["traj_uid"] for row in session})
        for row in session:
            row["uid"] = uid
        rows += session
    return rows, counts


async def _play_branching(loop: _BranchingLoop, env: TextEnv, task: Task) -> list[dict[str, Any]]:
    from verl_agent_ext.agent.branching import play_branching

    return await play_branching(loop, _OneEnv(env), task, {})


class _BranchingLoop:
    """The part of `EnvAgentLoop` that `play_branching` calls, backed by the light policy."""

    def __init__(self, actor: Actor, branching: Any, rng: np.random.Generator, session: str) -> None:
        self.actor, self.branching, self.rng, self.session = actor, branching, rng, session
        self.last_tree_stats: Any = None

    async def decide(
        self, env: Any, observation: Observation, history: list[Turn], depth: int, request_id: str, sampling: dict
    ) -> _Decision:
        return self.actor.decide(observation, [turn.action for turn in history], self.rng)

    episode_info = staticmethod(episode_info)

    def step_output(self, step: _Step, step_index: int, traj_uid: str, task: Task, info: dict, reward: float) -> dict:
        # play_branching names trajectories with random hex ids: prefix the session for readable, unique ids
        return step_row(step, step_index, f"{self.session}:{traj_uid}", task, info, reward)


class _AsyncEnv:
    """A `TextEnv` behind the async session interface the agent loop uses (everything runs inline)."""

    def __init__(self, env: TextEnv) -> None:
        self.env = env

    async def reset(self, task: Task) -> Observation:
        return self.env.reset(task)

    async def step(self, action: str) -> StepResult:
        return self.env.step(action)

    async def replay(self, actions: Sequence[str]) -> Observation:
        return self.env.replay(actions)


class _OneEnv:
    """An env pool of one environment (`lease()` as `agent.env_sessions.EnvLeaser`)."""

    def __init__(self, env: TextEnv) -> None:
        self.env_name = env.name
        self.session = _AsyncEnv(env)

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[_AsyncEnv]:
        yield self.session


def columns(rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The estimator's (n,) columns of `rows` (object arrays; episode_return / step_entropy float)."""
    out = {}
    for key in ROW_KEYS:
        column = np.empty(len(rows), dtype=object)
        column[:] = [row[key] for row in rows]
        out[key] = column
    for key in ("episode_return", "step_entropy", "step_reward"):
        out[key] = out[key].astype(np.float64)
    return out
