"""3SPO's adaptive branching rollout: one agent-loop session grows a tree of trajectories from the task's start.

At each state s of a path the session allots n(s) = ceil(g_max * S(s)) continuations, S from the state-score
table (`agent.state_score_store`, the snapshot of the current iteration):
- n = 0: the path stops here (a truncated trajectory; the episode's very first state always gets n >= 1);
- n = 1: one action is sampled and the path continues;
- n > 1: n actions are sampled at once (one prompt, n generations) and the path forks into n branches. The first
  continues in the environment now; the others wait on a stack (depth first). A waiting branch restores the
  environment by deterministic replay of its action prefix, and the restored observation must equal the one
  recorded there (else RuntimeError: the environment is not deterministic).
Each branch is a trajectory with its own traj_uid, `credit.sspo.branch_uid(parent, depth, k)`: steps before the fork
are its parent's rows (trained once), so one session returns any number of rows.

Caps. A group (`rollout.n` sessions of one task) may finish at most `max_trajectories_per_group` trajectories and
take at most `max_env_steps_per_group` env steps (default rollout.n x env.max_steps, the most a GRPO group can
take); each session gets an even share. Every step is one generation, so the group's generation count is bounded
like GRPO's (plus the sampled actions of dropped siblings, below). The budget is spent depth first, as the released
3SPO's backtracking search does: at a fork (n is clipped to the branch's trajectories and steps) the played branch
keeps every step left and all its trajectories but one per waiting sibling; a branch that ends (won, lost, stopped,
truncated) hands its unused steps and trajectories to the next waiting sibling, which restores its state by replay
and plays on them; a sibling that nothing was handed down to is dropped (no leaf, its sampled action unused). An
even split of the steps at each fork would truncate every branch of an unseen start (S = 1 forks into g_max) long
before it could finish: with the arena's budget no group ever held a success (docs/arena.md).

Rows: every step of the tree is one output. Its `reward_score` (the episode channel's outcome) is the mean return
of the trajectories through that step; its episode fields (success, length, truncated) are those of the branch
that owns it (its traj_uid).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from verl_agent_ext.agent.config import EnvLoopConfig
from verl_agent_ext.credit.config import SSPOConfig, sspo_config_from
from verl_agent_ext.credit.sspo import branch_uid
from verl_agent_ext.credit.state_scores import state_key
from verl_agent_ext.envs.base import Observation, Task, Turn

if TYPE_CHECKING:
    from verl.experimental.agent_loop.agent_loop import AgentLoopOutput

    from verl_agent_ext.agent.env_sessions import EnvLeaser

SSPO_ESTIMATORS = ("sspo", "3spo")


@dataclass(frozen=True)
class BranchingPlan:
    """The 3SPO settings of one session and its share of the group's caps."""

    sspo: SSPOConfig
    max_trajectories: int
    max_env_steps: int
    max_steps: int


def branching_plan(config: Any, env_config: EnvLoopConfig) -> BranchingPlan | None:
    """The branching plan of a trainer config, or None when the estimator is not 3SPO or branching is off."""
    algorithm = config.get("algorithm") or {}
    name = str(getattr(algorithm.get("adv_estimator"), "value", algorithm.get("adv_estimator")))
    if name not in SSPO_ESTIMATORS:
        return None
    sspo = sspo_config_from(algorithm)
    if not sspo.branching:
        return None
    sessions = int(((config.get("actor_rollout_ref") or {}).get("rollout") or {}).get("n", 1) or 1)
    group_steps = sspo.max_env_steps_per_group or sessions * env_config.max_steps
    return BranchingPlan(
        sspo=sspo,
        max_trajectories=max(1, sspo.max_trajectories_per_group // sessions),
        max_env_steps=max(1, group_steps // sessions),
        max_steps=env_config.max_steps,
    )


def continuations(score: float, g_max: int) -> int:
    """n(s) = ceil(g_max * S(s)): any S > 0 gives at least one continuation."""
    return math.ceil(g_max * score)


@dataclass
class _Branch:
    """A path waiting to take its next step."""

    traj_uid: str
    observation: Observation
    actions: list[str]
    history: list[Turn]
    rows: list[int]  # the path's step rows so far (shared prefix included)
    max_trajectories: int
    max_env_steps: int
    pending: Any = None  # the _Decision sampled for this branch at its fork, not yet played
    restore: bool = False  # the environment must be replayed to `actions` first


@dataclass
class _Leaf:
    traj_uid: str
    rows: list[int]
    won: bool
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class TreeStats:
    """What one session's tree did (for tests and train-local metrics)."""

    forks: int = 0
    stops: int = 0
    replays: int = 0
    replayed_steps: int = 0  # env steps spent restoring forks (no generation)
    dropped: int = 0  # waiting branches that no finished branch left a step to (their sampled action unused)
    env_steps: int = 0  # steps taken by the policy (one generation each)


async def play_branching(
    loop: Any, pool: EnvLeaser, task: Task, sampling_params: dict[str, Any]
) -> list[AgentLoopOutput]:
    """Grow the session's tree (module docstring); returns one output per step of any of its trajectories."""
    from verl_agent_ext.agent.state_score_store import state_score_store

    plan: BranchingPlan = loop.branching
    table = await state_score_store(plan.sspo).snapshot_async()
    steps: list[Any] = []
    owner: list[str] = []
    leaves: list[_Leaf] = []
    stats = TreeStats()
    async with pool.lease() as env:
        first = await env.reset(task)
        stack = [_Branch(uuid4().hex, first, [], [], [], plan.max_trajectories, plan.max_env_steps)]
        while stack:
            branch = stack.pop()
            if branch.max_env_steps < 1 and branch.pending is not None:
                # nothing was handed down: the sibling is never played (no leaf; its sampled action is dropped)
                stats.dropped += 1
                if stack:
                    stack[-1].max_trajectories += branch.max_trajectories
                continue
            if branch.restore:
                restored = await env.replay(branch.actions)
                stats.replays += 1
                stats.replayed_steps += len(branch.actions)
                if restored != branch.observation:
                    raise RuntimeError(
                        f"environment {task.env!r} is not deterministic: replaying {len(branch.actions)} actions of "
                        f"task {task.task_id!r} gave {restored.anchor!r}, recorded {branch.observation.anchor!r}"
                    )
            while True:
                depth = len(branch.actions)
                decision, branch.pending = branch.pending, None
                if decision is None:
                    if depth >= plan.max_steps or branch.max_env_steps < 1:
                        _finish(branch, stack, leaves, _Leaf(branch.traj_uid, branch.rows, False, {"truncated": True}))
                        break
                    n = continuations(float(table.scores([state_key(branch.observation.anchor)])[0]), plan.sspo.g_max)
                    n = min(max(n, 1) if depth == 0 else n, branch.max_trajectories, branch.max_env_steps)
                    if n == 0:
                        stats.stops += 1
                        _finish(branch, stack, leaves, _Leaf(branch.traj_uid, branch.rows, False, {"truncated": True}))
                        break
                    # each branch keeps one request id for all its steps (sticky routing in verl's server manager)
                    request_ids = [branch.traj_uid] + [branch_uid(branch.traj_uid, depth, k) for k in range(1, n)]
                    decisions = await asyncio.gather(
                        *(
                            loop.decide(env, branch.observation, branch.history, depth, request_id, sampling_params)
                            for request_id in request_ids
                        )
                    )
                    decision = decisions[0]
                    if n > 1:
                        stats.forks += 1
                        # depth first: the played branch keeps every step left and all but one trajectory per
                        # waiting sibling; a sibling plays on what finished branches hand down (_finish)
                        branch.max_trajectories -= n - 1
                        for k in range(n - 1, 0, -1):  # pushed last-first: branch 1 is played next
                            stack.append(
                                _Branch(
                                    request_ids[k],
                                    branch.observation,
                                    list(branch.actions),
                                    list(branch.history),
                                    list(branch.rows),
                                    max_trajectories=1,
                                    max_env_steps=0,
                                    pending=decisions[k],
                                    restore=True,
                                )
                            )
                result = await env.step(decision.action)
                stats.env_steps += 1
                branch.max_env_steps -= 1
                branch.rows.append(len(steps))
                steps.append(decision.played(branch.observation, result))
                owner.append(branch.traj_uid)
                branch.actions.append(decision.action)
                branch.history.append(Turn(observation=branch.observation.text, action=decision.action))
                branch.observation = result.observation
                if result.done:
                    _finish(branch, stack, leaves, _Leaf(branch.traj_uid, branch.rows, result.won, result.info))
                    break
    loop.last_tree_stats = stats
    return _tree_outputs(loop, task, steps, owner, leaves)


def _finish(branch: _Branch, stack: list[_Branch], leaves: list[_Leaf], leaf: _Leaf) -> None:
    """End `branch` as `leaf`; its unused budgets go to the next waiting branch (the caps are unchanged)."""
    leaves.append(leaf)
    if stack:
        stack[-1].max_env_steps += branch.max_env_steps
        stack[-1].max_trajectories += branch.max_trajectories - 1


def _tree_outputs(
    loop: Any, task: Task, steps: list[Any], owner: list[str], leaves: list[_Leaf]
) -> list[AgentLoopOutput]:
    """One output per step row: the owner branch's episode fields, the mean return of the trajectories through it."""
    infos = {leaf.traj_uid: loop.episode_info([steps[r] for r in leaf.rows], leaf.won, leaf.info) for leaf in leaves}
    return_sum = [0.0] * len(steps)
    through = [0] * len(steps)
    for leaf in leaves:
        for row in leaf.rows:
            return_sum[row] += infos[leaf.traj_uid]["episode_return"]
            through[row] += 1
    depth = {row: index for leaf in leaves for index, row in enumerate(leaf.rows)}
    return [
        loop.step_output(step, depth[row], owner[row], task, infos[owner[row]], return_sum[row] / through[row])
        for row, step in enumerate(steps)
    ]
