"""What the agent loop needs from an environment pool, and the process-wide pools verl's workers use.

The agent loop only needs, per environment name, an object with `env_name` and `lease()`: an async context
manager lending one environment for one episode (`EnvSession`: async `reset` / `step`, local `format_prompt` /
`parse_action`). `verl_agent_ext.envs.pool.EnvPool` is that object (in-process or Ray actors); tests and the
CPU trainer may pass any other.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Protocol

from verl_agent_ext.agent.config import EnvLoopConfig
from verl_agent_ext.envs.base import Observation, ParsedAction, StepResult, Task, Turn


class EnvSession(Protocol):
    """One environment lent for one episode; the text helpers are cheap and stay synchronous."""

    async def reset(self, task: Task) -> Observation: ...

    async def step(self, action: str) -> StepResult: ...

    def format_prompt(self, observation: Observation, history: Sequence[Turn], step_index: int) -> str: ...

    def parse_action(self, response: str, observation: Observation) -> ParsedAction: ...


class EnvLeaser(Protocol):
    """Environments of one kind: `async with pool.lease() as env: ...` (waits while all are lent)."""

    env_name: str

    def lease(self) -> contextlib.AbstractAsyncContextManager[EnvSession]: ...


_shared_pools: dict[tuple[str, str], EnvLeaser] = {}
_lock = threading.Lock()


def shared_env_pool(env_config: EnvLoopConfig, env_name: str) -> EnvLeaser:
    """The process-wide `EnvPool` of `env_name` for these settings, built on first use.

    verl builds a new agent loop object for every sample, so the environments must outlive them. The
    environments get `max_steps=env.max_steps` unless `env.env_kwargs.<name>.max_steps` says otherwise.
    """
    from verl_agent_ext.envs.pool import EnvPool

    key = (env_name, repr(env_config))
    with _lock:
        if key not in _shared_pools:
            pool = env_config.pool
            _shared_pools[key] = EnvPool(
                env_name,
                num_envs=pool.num_envs,
                backend=pool.backend,
                env_kwargs={"max_steps": env_config.max_steps, **env_config.env_kwargs.get(env_name, {})},
                num_workers=pool.num_workers,
                cpus_per_worker=pool.cpus_per_worker,
            )
        return _shared_pools[key]
