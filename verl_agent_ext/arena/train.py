"""One arena run: a warm-started light policy trained by one estimator from one seed, evaluated as it learns.

Per iteration (as GRPO training on verl):
  1. `groups_per_iter` training tasks, each played by `group_size` sessions sharing a uid (3SPO: branching trees);
  2. istar only: the implicit PRM (a second `CandidatePolicy`, started from the warm start) scores the rows,
     r_t = beta * (log pi_phi - log pi_old) of the chosen action, then takes one AdamW step on the pair loss
     (`credit.istar.score_prm_batch`: the same c_i = dL/dr_i surrogate as train-local);
  3. advantages from verl's registry with the `algorithm` config (`credit_eval.estimators.estimator_advantages`);
  4. `ppo_epochs` updates with verl's actor loss (`actor_loss`: core_algos' policy loss, PPO clip, KL optional).
Every `eval_every` episodes, and before the first update, the policy plays `eval_episodes` sampled episodes of
every held-out task.

Same seed = same training tasks per iteration, same held-out episodes' random streams, same warm start: runs of
different estimators from one seed are paired.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from verl_agent_ext.arena.envs import arena_environment
from verl_agent_ext.arena.policy import CandidatePolicy, FeatureHasher, chosen_log_probs, pack
from verl_agent_ext.arena.rollout import Actor, columns, play_episode, play_group
from verl_agent_ext.arena.row_adam import RowAdam
from verl_agent_ext.arena.warm_start import behaviour_clone, demonstrations

ISTAR = "istar"


ENV_DEFAULTS = {
    "alfworld": {"train_per_type": 8, "heldout_per_type": 4},
    "webshop": {"train_per_type": 48, "heldout_per_type": 48},
}
"""Training / held-out sizes when not set. ALFWorld: 48 training games, so that the policy generalises (with 12, a
one-seed GRPO probe reached 0.60 training success while its held-out success stayed at 0.17 from 1,000 to 4,000
episodes; with 48 it rose to 0.33: docs/arena.md); 24 held-out games x `eval_episodes` per evaluation."""


@dataclass(frozen=True)
class ArenaConfig:
    """The arena's own settings (`--set arena.KEY=VALUE`); verl's sections come from the composed config.

    env: environment; task_types: ALFWorld task types (comma-separated, "" = all six).
    train_per_type / heldout_per_type: generated games per task type in the training / held-out split (WebShop:
        goals of its train / test split); 0: the environment's default (ENV_DEFAULTS: ALFWorld 8 / 4 games per
        type, 48 / 24 games; WebShop 48 / 48 goals);
    train_games: play only the first N training games (0: all of them; a micro-task for tests).
    episodes: training episodes (sessions) per run; eval_every: episodes between held-out evaluations.
    group_size: sessions per task (rollout.n); groups_per_iter: tasks per iteration.
    max_steps: steps per episode; eval_episodes: sampled episodes per held-out task and evaluation.
    lr: Adam learning rate of the policy; ppo_epochs: passes over each batch (one optimizer step each).
    bc_steps / bc_lr / bc_batch: the warm start's behaviour cloning; buckets / dim: the policy's size.
    """

    env: str = "alfworld"
    task_types: str = ""
    train_per_type: int = 0
    heldout_per_type: int = 0
    train_games: int = 0
    episodes: int = 4000
    eval_every: int = 200
    group_size: int = 8
    groups_per_iter: int = 5
    max_steps: int = 20
    eval_episodes: int = 2
    lr: float = 0.05
    ppo_epochs: int = 2
    bc_steps: int = 30
    bc_lr: float = 0.1
    bc_batch: int = 32
    buckets: int = 1 << 16
    dim: int = 16

    def __post_init__(self) -> None:
        for name, default in ENV_DEFAULTS.get(self.env, {}).items():
            if getattr(self, name) == 0:
                object.__setattr__(self, name, default)
        positive = ("train_per_type", "heldout_per_type", "episodes", "eval_every", "group_size", "groups_per_iter")
        for name in (*positive, "max_steps", "eval_episodes", "ppo_epochs", "bc_batch", "buckets", "dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"arena.{name} must be >= 1, got {getattr(self, name)}")
        if self.train_games < 0 or self.bc_steps < 0 or self.lr <= 0 or self.bc_lr <= 0:
            raise ValueError("arena.train_games and arena.bc_steps must be >= 0, arena.lr, arena.bc_lr > 0")
        batch = self.group_size * self.groups_per_iter
        if self.eval_every % batch or self.episodes % self.eval_every:
            raise ValueError(
                f"arena.eval_every ({self.eval_every}) must be a multiple of the episodes per iteration "
                f"(group_size x groups_per_iter = {batch}) and arena.episodes ({self.episodes}) a multiple of it"
            )

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(t for t in self.task_types.split(",") if t)

    @classmethod
    def from_settings(cls, settings: Sequence[str], **defaults: Any) -> ArenaConfig:
        """ArenaConfig from `arena.KEY=VALUE` settings (values parsed as the field's type) over `defaults`."""
        types = {f.name: f.type for f in fields(cls)}
        values = dict(defaults)
        for setting in settings:
            key, _, value = setting.partition("=")
            name = key.strip()[len("arena.") :]
            if name not in types:
                raise ValueError(f"unknown arena setting {key.strip()!r}; valid: {sorted('arena.' + n for n in types)}")
            kind = {"int": int, "float": float, "str": str}[str(types[name])]
            try:
                values[name] = kind(float(value)) if kind is int and "e" in value.lower() else kind(value)
            except ValueError as error:
                raise ValueError(f"arena.{name}={value!r} is not a {kind.__name__}") from error
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verl_base_overrides(config: ArenaConfig, estimator: str) -> list[str]:
    """What the arena fixes in verl's config before the user's settings: the estimator and the group size."""
    return [f"algorithm.adv_estimator={estimator}", f"actor_rollout_ref.rollout.n={config.group_size}"]


def run_arena(
    config: ArenaConfig,
    estimator: str,
    verl_config: Any,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train one policy with `estimator` from `seed`; returns the run's curves (see `arena.report`).

    verl_config: verl's composed config (`credit_eval.estimators.verl_config`): its `algorithm` for the estimator,
    its `actor_rollout_ref.actor` for the loss. progress(k): called after every iteration with its k episodes.
    """
    from verl.utils.config import omega_conf_to_dataclass

    from verl_agent_ext.credit_eval.estimators import estimator_advantages

    start = time.perf_counter()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead (50x slower on a busy machine)
    torch.manual_seed(seed)
    environment = arena_environment(
        config.env, config.train_per_type, config.heldout_per_type, config.max_steps, config.types
    )
    if config.train_games:
        environment.train = environment.train[: config.train_games]
    env = environment.make_env()
    hasher = FeatureHasher(config.buckets)
    policy = CandidatePolicy(config.buckets, config.dim, seed=seed)
    demos = demonstrations(environment, config.max_steps)
    behaviour_clone(policy, hasher, demos, config.bc_steps, config.bc_lr, config.bc_batch, seed)
    actor_cfg = omega_conf_to_dataclass(verl_config.actor_rollout_ref.actor)
    reference = copy.deepcopy(policy).requires_grad_(False) if actor_cfg.use_kl_loss else None
    optimizer = RowAdam(policy.parameters(), lr=config.lr)  # torch's Adam, bit for bit, on the touched rows
    algorithm = verl_config.algorithm
    branching = _branching(verl_config, estimator, config)
    prm = _ImplicitPRM(copy.deepcopy(policy), algorithm, config.lr) if estimator == ISTAR else None
    actor = Actor(policy, hasher, environment.candidates)

    curve = {"episodes": [], "heldout_success": [], "env_steps": []}
    train = {"episodes": [], "success": [], "trajectories": []}
    env_steps = replayed = 0
    batch_episodes = config.group_size * config.groups_per_iter
    for iteration in range(config.episodes // batch_episodes + 1):
        done = iteration * batch_episodes
        if done % config.eval_every == 0:
            curve["episodes"].append(done)
            curve["heldout_success"].append(evaluate(env, environment.heldout, actor, config, seed, done))
            curve["env_steps"].append(env_steps)
        if done >= config.episodes:
            break
        rng = np.random.default_rng([seed, 1, iteration])
        count = len(environment.train)
        tasks = rng.choice(count, size=config.groups_per_iter, replace=count < config.groups_per_iter)
        rows = []
        for group, task_index in enumerate(tasks):
            group_rows, counts = play_group(
                env,
                environment.train[int(task_index)],
                actor,
                rng,
                f"i{iteration}-g{group}",
                config.group_size,
                config.max_steps,
                branching,
            )
            rows += group_rows
            env_steps += counts["env_steps"]
            replayed += counts["replayed_steps"]
        cols = columns(rows)
        trajectories = {row["traj_uid"]: row["episode_success"] for row in rows}
        train["episodes"].append(done + batch_episodes)
        train["success"].append(float(np.mean(list(trajectories.values()))))
        train["trajectories"].append(len(trajectories))
        packed = pack([row["features"] for row in rows])
        chosen = torch.as_tensor([row["chosen"] for row in rows])
        old = torch.as_tensor([row["old_log_prob"] for row in rows], dtype=torch.float32)
        if prm is not None:
            cols["prm_step_reward"] = prm.score_and_update(packed, chosen, old, cols)
        advantages, _, _ = estimator_advantages(estimator, cols, algorithm)
        update(policy, optimizer, actor_cfg, packed, chosen, old, advantages, reference, config.ppo_epochs)
        if progress is not None:
            progress(batch_episodes)
    env.close()
    return {
        "estimator": estimator,
        "seed": seed,
        **curve,
        "train_episodes": train["episodes"],
        "train_success": train["success"],
        "train_trajectories": train["trajectories"],
        "total_env_steps": env_steps,
        "replayed_env_steps": replayed,
        "demo_steps": len(demos),
        "wall_seconds": time.perf_counter() - start,
    }


def update(
    policy: CandidatePolicy,
    optimizer: torch.optim.Optimizer,
    actor_cfg: Any,
    packed: Any,
    chosen: torch.Tensor,
    old: torch.Tensor,
    advantages: np.ndarray,
    reference: CandidatePolicy | None,
    epochs: int,
) -> None:
    """`epochs` optimizer steps of verl's actor loss on the whole batch; every step is one one-token response."""
    from verl_agent_ext.actor_loss import actor_loss, set_global_batch_info

    n = len(chosen)
    mask = torch.ones((n, 1), dtype=torch.long)
    adv = torch.as_tensor(advantages, dtype=torch.float32).unsqueeze(-1)
    ref = None
    if reference is not None:
        with torch.no_grad():
            ref = chosen_log_probs(reference.log_probs(packed)[0], packed, chosen).unsqueeze(-1)
    set_global_batch_info(actor_cfg, batch_num_tokens=n, global_batch_size=n)
    for _ in range(epochs):
        log_p, entropy = policy.log_probs(packed)
        log_prob = chosen_log_probs(log_p, packed, chosen).unsqueeze(-1)
        loss, _ = actor_loss(actor_cfg, log_prob, old.unsqueeze(-1), adv, mask, ref, entropy.unsqueeze(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), actor_cfg.optim.clip_grad)
        optimizer.step()


def evaluate(env: Any, tasks: Sequence[Any], actor: Actor, config: ArenaConfig, seed: int, done: int) -> float:
    """Success rate of `eval_episodes` sampled episodes on every held-out task (streams fixed by seed and `done`)."""
    rng = np.random.default_rng([seed, 2, done])
    wins = []
    for task in tasks:
        for k in range(config.eval_episodes):
            rows, _ = play_episode(env, task, actor, rng, f"eval-{k}", config.max_steps)
            wins.append(bool(rows and rows[-1]["episode_success"]))
    return float(np.mean(wins))


def _branching(verl_config: Any, estimator: str, config: ArenaConfig) -> Any:
    """3SPO's branching plan from the config, as the agent loop builds it (None for other estimators); the
    process's state-score table starts empty."""
    from verl_agent_ext.agent.branching import SSPO_ESTIMATORS, branching_plan
    from verl_agent_ext.agent.config import EnvLoopConfig
    from verl_agent_ext.agent.state_score_store import run_score_store

    if estimator not in SSPO_ESTIMATORS:
        return None
    run_score_store(estimator, verl_config.algorithm)
    return branching_plan(verl_config, EnvLoopConfig(name=config.env, max_steps=config.max_steps))


class _ImplicitPRM:
    """iStar's implicit PRM for the light policy: a second `CandidatePolicy` trained with the pair loss."""

    def __init__(self, model: CandidatePolicy, algorithm: Any, policy_lr: float) -> None:
        from verl_agent_ext.credit import istar_config_from

        self.model, self.config = model.requires_grad_(True), istar_config_from(algorithm)
        lr = self.config.prm_lr if self.config.prm_lr is not None else policy_lr
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=self.config.prm_weight_decay)

    def rewards(self, packed: Any, chosen: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """(n,) r = beta * (log pi_phi - log pi_old) of the chosen actions (differentiable in phi)."""
        from verl_agent_ext.credit.istar import implicit_step_rewards

        log_p = chosen_log_probs(self.model.log_probs(packed)[0], packed, chosen)
        mask = torch.ones((len(chosen), 1))
        return implicit_step_rewards(log_p.unsqueeze(-1), old.unsqueeze(-1), mask, self.config.beta)

    def score_and_update(self, packed: Any, chosen: torch.Tensor, old: torch.Tensor, cols: dict) -> np.ndarray:
        """The rows' normalised step rewards from the PRM before its update; then one step on the pair loss."""
        from verl_agent_ext.credit.istar import score_prm_batch

        with torch.no_grad():
            raw = self.rewards(packed, chosen, old).double().numpy()
        success = cols["episode_success"].astype(bool)
        scored = score_prm_batch(raw, cols["uid"], cols["traj_uid"], success, self.config)
        if scored.pairs and not self.config.freeze_prm:
            self.optimizer.zero_grad()
            weights = torch.as_tensor(scored.weights, dtype=torch.float32)
            (weights * self.rewards(packed, chosen, old)).sum().backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.prm_grad_clip)
            self.optimizer.step()
        return scored.rewards
