"""A pool of text environments for asyncio code: many environments per worker, in-process or on Ray actors.

Agent loops lease an environment, play one episode through awaitables that never block the event loop, and give
the environment back:

    pool = EnvPool("alfworld", num_envs=32, backend="ray", num_workers=4, env_kwargs={"max_steps": 50})
    async with pool.lease() as env:                  # waits while all environments are leased
        obs = await env.reset(task)                  # Observation
        result = await env.step("go to fridge 1")    # StepResult
        obs = await env.replay(actions)              # deterministic restore of an action prefix
        prompt = env.format_prompt(obs, history, step_index)   # local, no round trip
        parsed = env.parse_action(response, obs)               # local, never raises
    pool.close()

`handle = await pool.acquire()` / `await handle.release()` is the same without a context manager.

Backends. "inprocess": the environments live in this process and run on one background thread (ALFWorld's
planner keeps global state, so environments of one process never run concurrently); for tests and small runs.
"ray": `num_workers` Ray actors, each holding `num_envs / num_workers` environments (not one actor per
environment, which exhausts small machines); calls to different workers run in parallel.

Failures. If a worker dies (the actor crashed, was killed, or hung past `call_timeout_s`) or an environment
raises, the worker is restarted (a fresh actor, or a fresh environment in-process). Every episode that was
running there ends: the pending or next `step` returns `StepResult(done=True, info={"truncated": True,
"error": ...})` with the episode's last observation, so no episode is silently dropped and nothing hangs. `reset`
and `replay` rebuild the state from scratch, so they are retried once on the restarted worker; an error the
environment itself raises there (a missing game file, ...) is re-raised as is.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from verl_agent_ext.envs.base import Observation, ParsedAction, StepResult, Task, TextEnv, Turn
from verl_agent_ext.envs.registry import make_env

BACKENDS = ("inprocess", "ray")


class WorkerCrashed(RuntimeError):
    """A worker died (whole_worker=True: all its episodes are lost) or one environment raised `cause`."""

    def __init__(self, message: str, whole_worker: bool, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.whole_worker = whole_worker
        self.cause = cause


# ---------------------------------------------------------------------------------------------------------------
# Workers: hold several environments, serve calls addressed to one of them by slot index.


class _EnvGroup:
    """Several environments of one kind; the body of both worker kinds."""

    def __init__(self, env_name: str, env_kwargs: dict[str, Any], num_envs: int) -> None:
        self.env_name, self.env_kwargs = env_name, env_kwargs
        self.envs = [make_env(env_name, **env_kwargs) for _ in range(num_envs)]

    def call(self, slot: int, method: str, argument: Any) -> Any:
        try:
            return getattr(self.envs[slot], method)(argument)
        except Exception:
            # The environment may be half-updated: replace it so the slot is usable again, then report.
            self.envs[slot] = make_env(self.env_name, **self.env_kwargs)
            raise

    def ping(self) -> bool:
        return True

    def pid(self) -> int:
        """The process holding these environments (for memory measurements)."""
        return os.getpid()


class _InProcessWorker:
    """Environments in this process, run on a single background thread."""

    def __init__(self, env_name: str, env_kwargs: dict[str, Any], num_envs: int, executor: ThreadPoolExecutor):
        self.group = _EnvGroup(env_name, env_kwargs, num_envs)
        self.executor = executor

    async def call(self, slot: int, method: str, argument: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, self.group.call, slot, method, argument)
        except Exception as error:
            raise WorkerCrashed(f"{type(error).__name__}: {error}", whole_worker=False, cause=error) from error

    def restart(self) -> None:
        """Nothing to restart: environments run in this process and `_EnvGroup.call` replaces a failing one."""

    def shutdown(self) -> None:
        for env in self.group.envs:
            env.close()


class _RayWorker:
    """A Ray actor holding several environments (calls to one actor run one at a time)."""

    def __init__(
        self, env_name: str, env_kwargs: dict[str, Any], num_envs: int, num_cpus: float, timeout_s: float | None
    ) -> None:
        import ray

        self.args, self.timeout_s = (env_name, env_kwargs, num_envs), timeout_s
        self.actor_class = ray.remote(num_cpus=num_cpus, max_restarts=0)(_EnvGroup)
        self.actor = self.actor_class.remote(*self.args)

    async def call(self, slot: int, method: str, argument: Any) -> Any:
        import ray

        try:
            return await asyncio.wait_for(self.actor.call.remote(slot, method, argument), self.timeout_s)
        except TimeoutError as error:
            raise WorkerCrashed(f"worker did not answer within {self.timeout_s} s", whole_worker=True) from error
        except ray.exceptions.RayActorError as error:
            raise WorkerCrashed(f"worker died: {error}", whole_worker=True) from error
        except ray.exceptions.RayTaskError as error:
            cause = error.as_instanceof_cause()
            raise WorkerCrashed(f"environment raised: {error}", whole_worker=False, cause=cause) from error

    def restart(self) -> None:
        import ray

        ray.kill(self.actor, no_restart=True)
        self.actor = self.actor_class.remote(*self.args)

    def shutdown(self) -> None:
        import ray

        ray.kill(self.actor, no_restart=True)


# ---------------------------------------------------------------------------------------------------------------
# The pool and its handles.


@dataclass
class _WorkerState:
    """A worker and one generation counter per slot, bumped when the slot's environment is lost."""

    worker: Any
    generations: list[int]


class EnvHandle:
    """One leased environment. Awaitable `reset` / `step` / `replay`; local `format_prompt` / `parse_action`."""

    def __init__(self, pool: EnvPool, worker_index: int, slot: int) -> None:
        self._pool, self.worker_index, self.slot = pool, worker_index, slot
        self._generation = -1  # worker generation the running episode lives in (-1: no episode)
        self._observation: Observation | None = None
        self._done = False
        self._released = False

    async def reset(self, task: Task) -> Observation:
        """Start `task`; return the first observation."""
        self._observation = await self._pool._rebuild(self, "reset", task)
        self._done = False
        return self._observation

    async def replay(self, actions: Sequence[str]) -> Observation:
        """Restore the state after `actions` from the current task's start (deterministic)."""
        self._observation = await self._pool._rebuild(self, "replay", list(actions))
        self._done = False
        return self._observation

    async def step(self, action: str) -> StepResult:
        """Apply `action`; a crashed worker ends the episode with done=True, info["truncated"]=True."""
        if self._observation is None:
            raise RuntimeError("step() before reset(task)")
        if self._done:
            raise RuntimeError("the episode is over: call reset(task)")
        result = await self._pool._step(self, action)
        self._observation, self._done = result.observation, result.done
        return result

    def format_prompt(self, observation: Observation, history: Sequence[Turn], step_index: int) -> str:
        return self._pool._local_env.format_prompt(observation, history, step_index)

    def parse_action(self, response: str, observation: Observation) -> ParsedAction:
        return self._pool._local_env.parse_action(response, observation)

    async def release(self) -> None:
        """Give the environment back to the pool (idempotent)."""
        if not self._released:
            self._released = True
            self._pool._queue().put_nowait((self.worker_index, self.slot))


class EnvPool:
    """`num_envs` environments `env_name(**env_kwargs)` spread over workers (see the module docstring).

    backend: "inprocess" or "ray".
    num_workers: Ray actors (default: min(num_envs, 4)); ignored in-process (one worker).
    cpus_per_worker: Ray CPU reservation of each actor.
    call_timeout_s: Ray only: a call not answered in this time counts as a crashed (hung) worker (None: wait).
    """

    def __init__(
        self,
        env_name: str,
        num_envs: int,
        backend: str = "inprocess",
        env_kwargs: dict[str, Any] | None = None,
        num_workers: int | None = None,
        cpus_per_worker: float = 0.5,
        call_timeout_s: float | None = 300.0,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown env pool backend {backend!r}; valid names: {list(BACKENDS)}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env_name, self.backend, self.num_envs = env_name, backend, num_envs
        env_kwargs = dict(env_kwargs or {})
        self._local_env: TextEnv = make_env(env_name, **env_kwargs)  # prompt formatting and parsing only
        self._executor: ThreadPoolExecutor | None = None
        if backend == "inprocess":
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="env-pool")
            sizes = [num_envs]
            workers = [_InProcessWorker(env_name, env_kwargs, num_envs, self._executor)]
        else:
            import ray

            if not ray.is_initialized():
                ray.init(ignore_reinit_error=True, log_to_driver=False)
            workers = min(num_workers or min(num_envs, 4), num_envs)
            per_worker = math.ceil(num_envs / workers)
            sizes = [min(per_worker, num_envs - i * per_worker) for i in range(workers)]
            sizes = [size for size in sizes if size > 0]
            workers = [_RayWorker(env_name, env_kwargs, size, cpus_per_worker, call_timeout_s) for size in sizes]
        self._workers = [_WorkerState(worker, [0] * size) for worker, size in zip(workers, sizes, strict=True)]
        # Interleave slots across workers so concurrent leases spread over processes.
        self._slots = [(w, s) for s in range(max(sizes)) for w, size in enumerate(sizes) if s < size]
        self._free: asyncio.Queue[tuple[int, int]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restart_lock: asyncio.Lock | None = None
        self.restarts = 0

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def _queue(self) -> asyncio.Queue[tuple[int, int]]:
        """The free slots, bound to the running event loop.

        Built lazily so the pool can be created outside the loop that uses it, and moved to a new loop when the
        caller runs one `asyncio.run` after another (asyncio queues and locks belong to a single loop).
        """
        loop = asyncio.get_running_loop()
        if self._free is None or self._loop is not loop:
            free = asyncio.Queue()
            if self._free is None:
                slots = list(self._slots)
            else:
                slots = []
                while not self._free.empty():
                    slots.append(self._free.get_nowait())
            for slot in slots:
                free.put_nowait(slot)
            self._free, self._loop, self._restart_lock = free, loop, asyncio.Lock()
        return self._free

    async def acquire(self) -> EnvHandle:
        """Lease a free environment (waits while all are leased)."""
        worker_index, slot = await self._queue().get()
        return EnvHandle(self, worker_index, slot)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[EnvHandle]:
        """`async with pool.lease() as env:` acquire, then release on exit."""
        handle = await self.acquire()
        try:
            yield handle
        finally:
            await handle.release()

    async def wait_ready(self) -> None:
        """Wait until every worker has built its environments (Ray actors start lazily)."""
        if self.backend == "ray":
            await asyncio.gather(*(state.worker.actor.ping.remote() for state in self._workers))

    def close(self) -> None:
        """Stop the workers, after in-process calls still running (e.g. abandoned by Ctrl-C) have returned."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for state in self._workers:
            state.worker.shutdown()
        self._local_env.close()

    # -- calls ---------------------------------------------------------------------------------------------

    async def _recover(self, handle: EnvHandle, seen_generation: int, crash: WorkerCrashed) -> None:
        """Mark the lost episodes and restart a dead worker once, however many handles noticed the crash."""
        self._queue()
        assert self._restart_lock is not None
        async with self._restart_lock:
            state = self._workers[handle.worker_index]
            if state.generations[handle.slot] != seen_generation:
                return  # another handle already recovered from this crash
            self.restarts += 1
            if crash.whole_worker:
                state.worker.restart()
                state.generations = [g + 1 for g in state.generations]
            else:
                state.generations[handle.slot] += 1

    async def _rebuild(self, handle: EnvHandle, method: str, argument: Any) -> Observation:
        state = self._workers[handle.worker_index]
        for attempt in range(2):
            generation = state.generations[handle.slot]
            try:
                observation = await state.worker.call(handle.slot, method, argument)
            except WorkerCrashed as crash:
                await self._recover(handle, generation, crash)
                if not crash.whole_worker and crash.cause is not None:
                    raise crash.cause from None  # the environment rejected this call (e.g. a missing game)
                if attempt == 1:
                    raise
                continue
            handle._generation = generation
            return observation
        raise AssertionError("unreachable")

    async def _step(self, handle: EnvHandle, action: str) -> StepResult:
        state = self._workers[handle.worker_index]
        if handle._generation != state.generations[handle.slot]:
            return _truncated(handle._observation, "the worker holding this episode was restarted")
        try:
            return await state.worker.call(handle.slot, "step", action)
        except WorkerCrashed as crash:
            await self._recover(handle, handle._generation, crash)
            return _truncated(handle._observation, str(crash))


def _truncated(observation: Observation | None, error: str) -> StepResult:
    assert observation is not None
    return StepResult(
        observation=observation,
        reward=0.0,
        done=True,
        won=False,
        info={"truncated": True, "error": error},
    )
