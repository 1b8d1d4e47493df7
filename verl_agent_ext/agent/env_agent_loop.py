"""`EnvAgentLoop`: verl's `AgentLoopBase` playing one episode of a text environment, one output per step.

In a verl worker the plugin registers it as `verl_agent_ext_env` (also listed in `agent_loops.yaml` for
`actor_rollout_ref.rollout.agent.agent_loop_config_path`); a dataset row picks it with its `agent_name` column
or `rollout.agent.default_agent_loop=verl_agent_ext_env`. verl's V1 trainer runs `rollout.n` sessions of each
row (the group) and turns every returned `AgentLoopOutput` into one training row.

Per step: window the prompt on token ids -> `server_manager.generate` (token ids in, token ids out; the
response ids are the engine's, never re-encoded) -> `parse_action` on the decoded text -> `env.step`.

Each output's `extra_fields` carries the estimator contract (same keys on every output):
    traj_uid (str), step_index (int), anchor_obs (str), next_anchor_obs (str: the anchor after the step, the
    terminal observation on the last step), action_text (str), step_reward (float, env reward of the
    step, no penalty), is_action_valid (bool), episode_success (bool), response_text (str: the decoded response,
    its last MAX_RESPONSE_TEXT_CHARS characters, for SCPO's step_text=obs_response), plus task_type (str),
    episode_length (int), episode_truncated (bool: cut by the step limit, or by a crashed env worker, which the
    pool restarts), reward_extra_info (dict: acc = success, success, episode_length, episode_return, truncated,
    score = the env's raw score where it has one, e.g. WebShop, else success; verl's V1 trainer reports it in
    validation from each session's last row, and counts a session that raised as acc=0, so
    `val-core/<data_source>/acc/mean@n` is the success rate over all sessions) and the engine's own extra fields
    (min/max_global_steps).
`reward_score` of every output is the episode return (sum of env rewards), so verl puts it on the last
response token (`rm_scores`) of every step sample and skips its reward manager for these rows.

Rows (written by `verl-agent-ext prepare-data`) name the task: `env_name`, `task_id`, `task_type`, `split`, and
`data_fingerprint` (WebShop: the catalog the goal index belongs to; the environment checks it).
Environment settings come from the trainer config's `env:` section (`verl_agent_ext.agent.config`).

Outside a verl worker (the CPU trainer, tests), build it with `build_agent_loop`:

    from verl_agent_ext.agent.env_agent_loop import build_agent_loop
    from verl_agent_ext.envs.pool import EnvPool
    pool = EnvPool("alfworld", num_envs=8, backend="inprocess")
    loop = build_agent_loop(config, server_manager, tokenizer, env_pools=[pool])
    outputs = await loop.run(sampling_params, env_name="alfworld", task_id=..., task_type=..., split="train")

`config` is verl's composed `ppo_trainer` config (it reads `actor_rollout_ref.rollout.prompt_length` /
`response_length`, `data` and `env`); `server_manager` is any object with verl's
`async generate(request_id, *, prompt_ids, sampling_params, **kw) -> TokenOutput`; the tokenizer needs a chat
template. Without `env_pools`, one `EnvPool` per environment name, process and `env` config (`env.pool`) is
shared by all loops. Many loops may share one pool: `lease()` waits while all its environments are lent.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from omegaconf import DictConfig, OmegaConf
from verl.experimental.agent_loop.agent_loop import (
    AgentLoopBase,
    AgentLoopMetrics,
    AgentLoopOutput,
    DictConfigWrap,
)
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.workers.rollout.replica import TokenOutput

from verl_agent_ext.agent.branching import branching_plan, play_branching
from verl_agent_ext.agent.config import EnvLoopConfig
from verl_agent_ext.agent.env_sessions import EnvLeaser, EnvSession, shared_env_pool
from verl_agent_ext.agent.prompt import step_messages, window_prompt
from verl_agent_ext.credit.batch import MAX_RESPONSE_TEXT_CHARS, RESPONSE_TEXT_KEY
from verl_agent_ext.envs.base import Observation, ParsedAction, StepResult, Task, Turn


def response_logprobs(
    generated: TokenOutput, response_ids: list[int], sampling_params: dict[str, Any]
) -> list[float] | None:
    """The engine's log-probs of the kept response tokens, or None when it gave none for each of its tokens.

    verl's async trainer modes return `log_probs=[]` (not None) when `rollout.calculate_log_probs=False`; a list
    shorter than the response would become a `rollout_log_probs` row of the wrong length. An empty response keeps
    `[]` only when log-probs were requested (`sampling_params["logprobs"]`, set by verl's agent-loop worker).
    """
    log_probs = generated.log_probs
    if log_probs is None or len(log_probs) < len(generated.token_ids):
        return None
    if not generated.token_ids and not sampling_params.get("logprobs", True):
        return None
    return list(log_probs[: len(response_ids)])


def task_from_row(row: dict[str, Any], default_env: str) -> Task:
    """The `Task` a dataset row names (columns env_name, task_id, task_type, split, data_fingerprint)."""
    if "task_id" not in row:
        raise ValueError(
            f"dataset row has no 'task_id' column (columns: {sorted(row)}); write the data with "
            "`verl-agent-ext prepare-data`"
        )
    return Task(
        env=str(row.get("env_name") or default_env),
        task_id=str(row["task_id"]),
        task_type=str(row.get("task_type") or ""),
        split=str(row.get("split") or "train"),
        data_fingerprint=str(row.get("data_fingerprint") or ""),
    )


@dataclass
class _Step:
    """One played step, before the episode outcome is known."""

    prompt_ids: list[int]
    response_ids: list[int]
    response_logprobs: list[float] | None
    anchor_obs: str
    next_anchor_obs: str
    action_text: str
    response_text: str
    reward: float
    valid: bool
    generate_seconds: float
    num_preempted: int
    engine_fields: dict[str, Any]


@dataclass
class _Decision:
    """The model's answer at one state, not yet applied to the environment."""

    prompt_ids: list[int]
    response_ids: list[int]
    response_logprobs: list[float] | None
    parsed: ParsedAction
    response_text: str
    generate_seconds: float
    num_preempted: int
    engine_fields: dict[str, Any]

    @property
    def action(self) -> str:
        return self.parsed.action

    def played(self, observation: Observation, result: StepResult) -> _Step:
        """The step this decision made from `observation`, given the environment's `result`."""
        return _Step(
            prompt_ids=self.prompt_ids,
            response_ids=self.response_ids,
            response_logprobs=self.response_logprobs,
            anchor_obs=observation.anchor,
            next_anchor_obs=result.observation.anchor,
            action_text=self.parsed.action,
            response_text=self.response_text[-MAX_RESPONSE_TEXT_CHARS:],
            reward=float(result.reward),
            valid=self.parsed.valid and not result.invalid,
            generate_seconds=self.generate_seconds,
            num_preempted=self.num_preempted,
            engine_fields=self.engine_fields,
        )


class EnvAgentLoop(AgentLoopBase):
    """Plays one episode of the row's environment task and returns one `AgentLoopOutput` per step."""

    def __init__(self, *args: Any, env_pools: Sequence[EnvLeaser] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.prompt_length = int(self.rollout_config.prompt_length)
        self.response_length = int(self.rollout_config.response_length)
        self.env_config = EnvLoopConfig.from_mapping(self.config.get("env"))
        self.env_pools = {pool.env_name: pool for pool in env_pools}
        prefix = self.env_config.response_prefix
        self.response_prefix_ids = self.tokenizer.encode(prefix, add_special_tokens=False) if prefix else []
        self.branching = branching_plan(self.config, self.env_config)

    async def env_pool(self, env_name: str) -> EnvLeaser:
        """The pool given for `env_name`, else the process-wide one built from the `env` config (off the loop)."""
        if env_name in self.env_pools:
            return self.env_pools[env_name]
        if self.env_pools:
            raise ValueError(f"no environment pool for {env_name!r}; pools given: {sorted(self.env_pools)}")
        return await asyncio.get_running_loop().run_in_executor(None, shared_env_pool, self.env_config, env_name)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> list[AgentLoopOutput]:
        """Play the episode of the task in `kwargs` (the dataset row); one output per step (order: `_outputs`).

        With 3SPO's branching rollout on (`algorithm.adv_estimator=sspo`, `algorithm.sspo.branching`), a training
        episode (split "train"; validation never branches) may fork into several trajectories
        (`verl_agent_ext.agent.branching`): one output per step of any of them.
        """
        task = task_from_row(kwargs, self.env_config.name)
        pool = await self.env_pool(task.env)
        if self.branching is not None and task.split == "train":
            return await play_branching(self, pool, task, sampling_params)
        traj_uid = uuid4().hex
        steps: list[_Step] = []
        won = False
        final_info: dict[str, Any] = {}
        async with pool.lease() as env:
            observation = await env.reset(task)
            history: list[Turn] = []
            for step_index in range(self.env_config.max_steps):
                decision = await self.decide(env, observation, history, step_index, traj_uid, sampling_params)
                result = await env.step(decision.action)
                steps.append(decision.played(observation, result))
                history.append(Turn(observation=observation.text, action=decision.action))
                observation = result.observation
                if result.done:
                    won, final_info = result.won, result.info
                    break
            else:
                final_info = {"truncated": True}
        return self._outputs(steps, traj_uid, task, won, final_info)

    async def decide(
        self,
        env: EnvSession,
        observation: Observation,
        history: Sequence[Turn],
        step_index: int,
        request_id: str,
        sampling_params: dict[str, Any],
    ) -> _Decision:
        """Prompt the model at this state and parse its answer (the environment is not stepped)."""
        prompt_ids = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self._render_windowed, env, observation, history, step_index)
        )
        started = time.perf_counter()
        generated: TokenOutput = await self.server_manager.generate(
            request_id=request_id, prompt_ids=prompt_ids, sampling_params=sampling_params
        )
        generate_seconds = time.perf_counter() - started
        response_ids = list(generated.token_ids[: self.response_length])
        response_text = self.env_config.response_prefix + self.tokenizer.decode(
            response_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return _Decision(
            prompt_ids=prompt_ids,
            response_ids=response_ids,
            response_logprobs=response_logprobs(generated, response_ids, sampling_params),
            parsed=env.parse_action(response_text, observation),
            response_text=response_text,
            generate_seconds=generate_seconds,
            num_preempted=generated.num_preempted if generated.num_preempted is not None else -1,
            engine_fields=dict(generated.extra_fields),
        )

    def _render_windowed(
        self, env: EnvSession, observation: Observation, history: Sequence[Turn], step_index: int
    ) -> list[int]:
        """Prompt ids of this step: chat template over the env's user prompt, history windowed to fit."""

        def render(turns: Sequence[Turn]) -> list[int]:
            messages = step_messages(env, observation, turns, step_index)
            return self.continuous_token_builder.build_initial_tokens(messages) + self.response_prefix_ids

        prompt_ids, _ = window_prompt(render, history, self.env_config.history_length, self.prompt_length)
        return prompt_ids

    def _outputs(
        self, steps: list[_Step], traj_uid: str, task: Task, won: bool, final_info: dict[str, Any]
    ) -> list[AgentLoopOutput]:
        """One output per step, in step order except that the last output always has response tokens if any does."""
        info = self.episode_info(steps, won, final_info)
        outputs = [
            self.step_output(step, index, traj_uid, task, info, info["episode_return"])
            for index, step in enumerate(steps)
        ]
        # verl's multi-trajectory GRPO gives every row of a session the advantage of its last output, read at the
        # first unmasked token: an empty (fully masked) last answer would give 0 to the whole episode. Put the
        # latest step with real tokens last; the step order stays in extra_fields["step_index"].
        last_with_tokens = max((index for index, step in enumerate(steps) if step.response_ids), default=None)
        if last_with_tokens is not None:
            outputs.append(outputs.pop(last_with_tokens))
        return outputs

    @staticmethod
    def episode_info(steps: Sequence[_Step], won: bool, final_info: dict[str, Any]) -> dict[str, Any]:
        """`reward_extra_info` of a trajectory made of `steps`: success, length, return, truncated, env score."""
        return {
            "acc": float(won),  # verl's validation counts a session that raised as acc=0 (and only for acc)
            "success": float(won),
            "episode_length": len(steps),
            "episode_return": sum(step.reward for step in steps),
            "truncated": float(bool(final_info.get("truncated", False))),
            "score": float(final_info.get("score", float(won))),
        }

    def step_output(
        self,
        step: _Step,
        step_index: int,
        traj_uid: str,
        task: Task,
        reward_extra_info: dict[str, Any],
        reward_score: float,
    ) -> AgentLoopOutput:
        """The training row of one step of trajectory `traj_uid`, whose `episode_info` is `reward_extra_info`."""
        response_ids, response_mask, logprobs = step.response_ids, [1] * len(step.response_ids), step.response_logprobs
        if not response_ids:
            # verl puts the reward on the last response token: give an empty answer one masked EOS token.
            response_ids, response_mask = [self.tokenizer.eos_token_id], [0]
            logprobs = None if logprobs is None else [0.0]
        extra_fields = {
            **step.engine_fields,
            "traj_uid": traj_uid,
            "step_index": step_index,
            "anchor_obs": step.anchor_obs,
            "next_anchor_obs": step.next_anchor_obs,
            "action_text": step.action_text,
            RESPONSE_TEXT_KEY: step.response_text,
            "step_reward": step.reward,
            "is_action_valid": step.valid,
            "episode_success": bool(reward_extra_info["success"]),
            "task_type": task.task_type,
            "episode_length": int(reward_extra_info["episode_length"]),
            "episode_truncated": bool(reward_extra_info["truncated"]),
            "reward_extra_info": dict(reward_extra_info),
        }
        return AgentLoopOutput(
            prompt_ids=step.prompt_ids,
            response_ids=response_ids,
            response_mask=response_mask,
            response_logprobs=logprobs,
            reward_score=reward_score,
            num_turns=2,
            metrics=AgentLoopMetrics(generate_sequences=step.generate_seconds, num_preempted=step.num_preempted),
            extra_fields=extra_fields,
        )


def build_agent_loop(
    config: DictConfig | dict[str, Any],
    server_manager: Any,
    tokenizer: Any,
    env_pools: Sequence[EnvLeaser] = (),
    processor: Any = None,
) -> EnvAgentLoop:
    """An `EnvAgentLoop` outside a verl worker (see the module docstring)."""
    if not isinstance(config, DictConfig):
        config = OmegaConf.create(config)
    return EnvAgentLoop(
        trainer_config=DictConfigWrap(config),
        server_manager=server_manager,
        tokenizer=tokenizer,
        processor=processor,
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.get("data", OmegaConf.create({}))),
        env_pools=env_pools,
    )
