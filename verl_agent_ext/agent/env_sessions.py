"""Async access to text environments for the agent loop, without blocking its event loop.

The agent loop needs only `EnvPool.session(env_name)`: an async context manager that lends one environment
for one episode. `ThreadEnvPool` is the in-process implementation: it keeps idle environments per name,
creates new ones on demand, and runs `reset` / `step` in a thread pool so hundreds of concurrent episodes
share one event loop. Any object with the same `session` method (e.g. a pool of Ray actors) can replace it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from verl_agent_ext.envs.base import Observation, ParsedAction, StepResult, Task, TextEnv, Turn
from verl_agent_ext.envs.registry import make_env


class EnvSession(Protocol):
    """One environment lent for one episode; the text helpers are cheap and stay synchronous."""

    async def reset(self, task: Task) -> Observation: ...

    async def step(self, action: str) -> StepResult: ...

    def format_prompt(self, observation: Observation, history: Sequence[Turn], step_index: int) -> str: ...

    def parse_action(self, response: str, observation: Observation) -> ParsedAction: ...


class EnvPool(Protocol):
    """Lends environments: `async with pool.session("alfworld") as env: ...`."""

    def session(self, env_name: str) -> contextlib.AbstractAsyncContextManager[EnvSession]: ...


class _ThreadSession:
    """An `EnvSession` over one `TextEnv`, whose blocking calls run in the pool's executor."""

    def __init__(self, env: TextEnv, executor: ThreadPoolExecutor):
        self.env = env
        self._executor = executor

    async def reset(self, task: Task) -> Observation:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.env.reset, task)

    async def step(self, action: str) -> StepResult:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.env.step, action)

    def format_prompt(self, observation: Observation, history: Sequence[Turn], step_index: int) -> str:
        return self.env.format_prompt(observation, history, step_index)

    def parse_action(self, response: str, observation: Observation) -> ParsedAction:
        return self.env.parse_action(response, observation)


class ThreadEnvPool:
    """In-process pool of `TextEnv`s, reused across episodes.

    env_kwargs: environment name -> constructor keyword arguments for `make_env`.
    factory: builds an environment from its name (default: `make_env(name, **env_kwargs[name])`).
    """

    def __init__(
        self,
        env_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        max_workers: int = 8,
        factory: Callable[[str], TextEnv] | None = None,
    ):
        self.env_kwargs = {name: dict(kwargs) for name, kwargs in (env_kwargs or {}).items()}
        self._factory = factory or (lambda name: make_env(name, **self.env_kwargs.get(name, {})))
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="env")
        self._idle: dict[str, list[TextEnv]] = defaultdict(list)
        self._lock = threading.Lock()
        self.created = 0

    @contextlib.asynccontextmanager
    async def session(self, env_name: str) -> AsyncIterator[EnvSession]:
        env = await self._acquire(env_name)
        try:
            yield _ThreadSession(env, self._executor)
        finally:
            with self._lock:
                self._idle[env_name].append(env)

    async def _acquire(self, env_name: str) -> TextEnv:
        with self._lock:
            if self._idle[env_name]:
                return self._idle[env_name].pop()
            self.created += 1
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._factory, env_name)

    def close(self) -> None:
        """Close every idle environment and stop the threads (environments still lent are not touched)."""
        with self._lock:
            envs = [env for idle in self._idle.values() for env in idle]
            self._idle.clear()
        for env in envs:
            env.close()
        self._executor.shutdown(wait=False)
