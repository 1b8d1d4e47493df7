"""Rollouts of a language-model policy on ALFWorld (the shipped SmolLM2 warm start), labelled by the planner.

The policy plays through the project's agent loop as in `train-local` (`LocalTrainer.play`: prompt, sampled
answer, parsed action, environment step), `group_size` episodes of each task at the sampling temperature. Each
episode is then replayed in an `AlfworldEnv` (the engine is deterministic: the same actions reach the same states;
a replay that sees another observation raises) and labelled as the epsilon-expert's rollouts are
(`rollouts.labelled_episode`): the same columns, plus `response_text`, the model's decoded answer at that step
(what SCPO's `step_text=obs_response` compares).

Two columns differ in meaning from the epsilon-expert rows: `epsilon` holds the sampling temperature (the
behaviour's randomness knob; `split_batches` keys the batches by it), and `step_entropy` is the mean surprisal
-log p of the sampled response tokens (a one-sample estimate of the mean token entropy; 0 for an empty answer).

Games: by default the generated training games the shipped warm start learnt from (`LLM_GAMES_PER_TYPE` of
pick_and_place_simple, its task type; on other games it won 1 of 24), optionally only those the searching expert
wins within `--solvable-within` steps (a policy imitating it rarely wins the others). Seed s plays the games
s * tasks ... (s + 1) * tasks - 1 of one fixed shuffle of the pool (wrapping around), so seeds 0 ... k - 1 play
disjoint games while k * tasks <= the pool's size.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from verl_agent_ext.credit_eval.oracle import PlanOracle
from verl_agent_ext.credit_eval.rollouts import Behaviour, columns_of, finish_episode, labelled_episode
from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.base import Observation, Task

LLM_TASK_TYPES = "pick_and_place_simple"  # the shipped warm start's task type (its demonstrations)
LLM_GAMES_PER_TYPE = 24  # the generated training games the shipped warm start learnt from (the quickstart's)
GAME_ORDER_SEED = 0  # the fixed shuffle that seeds slice


def disjoint_tasks(pool: Sequence[Task], count: int, seed: int) -> list[Task]:
    """`count` tasks for `seed`: slice `seed` of one fixed shuffle of `pool` (see the module docstring)."""
    order = sorted(pool, key=lambda task: task.task_id)
    random.Random(GAME_ORDER_SEED).shuffle(order)
    return [order[(seed * count + i) % len(order)] for i in range(count)]


def policy_trainer_config(args: argparse.Namespace, out_dir: str):
    """(LocalTrainConfig, checkpoint or None) playing `args.policy` as `verl-agent-ext eval --policy` does, with
    credit-eval's group shape, step limit, temperature and answer length; games and task types as documented."""
    from verl_agent_ext.local.eval_cli import policy_config

    settings = argparse.Namespace(
        env="alfworld",
        num_threads=args.num_threads,
        episodes=args.tasks * args.group_size,
        max_steps=args.max_steps,
        task_types=args.task_types or LLM_TASK_TYPES,
        games_dir=args.games,
    )
    config, checkpoint = policy_config(args.policy, settings, out_dir)
    config = dataclasses.replace(
        config,
        groups_per_iter=args.tasks,
        group_size=args.group_size,
        games_per_type=LLM_GAMES_PER_TYPE,
        temperature=args.temperature,
        response_length=args.response_length,
        solvable_within=args.solvable_within,
        estimator="grpo",  # unused: the trainer only plays
    )
    return config, checkpoint


class LLMRollouts:
    """A language-model policy and a replay environment; `rows(seed, progress)` plays and labels one seed's batch.

    args: credit-eval's parsed command line (policy, tasks, group_size, max_steps, temperature, response_length,
    num_threads, solvable_within, task_types, games). Call `close()` when done.
    """

    def __init__(self, args: argparse.Namespace, oracle: PlanOracle) -> None:
        from verl_agent_ext.local.checkpoint import load_checkpoint
        from verl_agent_ext.local.trainer import LocalTrainer, load_tasks

        self.args, self.oracle = args, oracle
        self._scratch = tempfile.TemporaryDirectory(prefix="verl-agent-ext-credit-eval-")
        config, checkpoint = policy_trainer_config(args, self._scratch.name)
        self.pool = load_tasks(config)
        if not self.pool:
            raise ValueError(f"no ALFWorld games of task types {config.task_types!r} to play")
        self._on_episode: Callable[[], None] = lambda: None
        # LocalTrainer.play reports each finished episode through `progress` (and nothing else does while it plays)
        self.trainer = LocalTrainer(config, log=lambda line: None, progress=lambda line: self._on_episode())
        if checkpoint is not None:
            load_checkpoint(checkpoint, self.trainer.model, self.trainer.optimizer)
        self.env = AlfworldEnv(max_steps=args.max_steps)

    def rows(self, seed: int, progress: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
        """Labelled rows of seed `seed`: `tasks` games x `group_size` episodes; `progress()` once per episode."""
        args = self.args
        tasks = disjoint_tasks(self.pool, args.tasks, seed)
        self._on_episode = progress or (lambda: None)
        self.trainer.config.seed = seed  # the episodes' sampling streams follow (seed, label, position)
        episodes = self.trainer.play(tasks, args.group_size, args.temperature, "credit-eval")
        rows: list[dict] = []
        for position, (_, outputs) in enumerate(episodes):
            task_index, member = divmod(position, args.group_size)
            uid = f"s{seed}-T{args.temperature:g}-t{task_index}"
            outputs = sorted(outputs, key=lambda output: output.extra_fields["step_index"])
            recorded = [output.extra_fields for output in outputs]
            behaviour = replay(recorded, [mean_surprisal(output) for output in outputs])
            task, ids = tasks[task_index], (uid, f"{uid}-r{member}")
            steps, won = labelled_episode(self.env, self.oracle, task, ids, len(recorded), behaviour)
            if len(steps) != len(recorded) or won != bool(recorded[-1]["episode_success"]):
                raise RuntimeError(f"replaying {task.task_id} reached another outcome than the played episode")
            for step, fields in zip(steps, recorded, strict=True):
                step["response_text"] = fields["response_text"]
            rows.extend(finish_episode(steps, won, seed, args.temperature))
        self.oracle.save()
        return columns_of(rows)

    def close(self) -> None:
        self.trainer.close()
        self.env.close()
        self._scratch.cleanup()


def replay(recorded: Sequence[dict], step_entropy: Sequence[float]) -> Behaviour:
    """The played episode's actions again (`recorded`: its steps' extra_fields in step order); raises when the
    replay reaches an observation the episode did not see."""

    def choose(step_index: int, observation: Observation, plan: list[str]) -> tuple[str, float] | None:
        if step_index >= len(recorded):
            return None
        fields = recorded[step_index]
        if fields["anchor_obs"] != observation.anchor:
            raise RuntimeError(f"replay diverged at step {step_index}: the environment is not deterministic")
        return fields["action_text"], step_entropy[step_index]

    return choose


def mean_surprisal(output) -> float:
    """-mean log p of an `AgentLoopOutput`'s sampled response tokens (0 without tokens or log-probs)."""
    if not output.response_logprobs:
        return 0.0
    values = [-lp for lp, kept in zip(output.response_logprobs, output.response_mask, strict=True) if kept]
    return float(np.mean(values)) if values else 0.0
