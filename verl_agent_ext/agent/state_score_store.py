"""Where 3SPO's state-score table lives during a run, for the rollout (reads) and the estimator (reads, updates).

`state_score_store(config)` gives the process's store:
- without Ray (`train-local`, tests): one in-process table, shared by the agent loop and the estimator;
- with Ray (verl: the driver's estimator and the agent-loop workers in other processes): a named Ray actor
  (`ACTOR_NAME`) holding the table, created by whichever process asks first and living as long as the run's
  Ray job. Readers fetch a whole snapshot (`StateScoreTable.state_dict`, 32 bytes per state) once per table
  version, i.e. once per process per training iteration, and look scores up locally.

The estimator reads the snapshot from before the batch, computes advantages, then `update`s the table with the
batch's trajectories (which bumps the version); the next iteration's rollout sees the new scores.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np

from verl_agent_ext.credit.config import SSPOConfig
from verl_agent_ext.credit.state_scores import ScoreParams, StateScoreTable

ACTOR_NAME = "verl_agent_ext_sspo_state_scores"
STATE_FILE = "sspo_state_scores.npz"
"""File name of the table in a checkpoint folder."""

Trajectories = Iterable[tuple[Iterable[int], bool]]


def score_params(config: SSPOConfig) -> ScoreParams:
    return ScoreParams(alpha=config.alpha, xi=config.xi, zeta=config.zeta, epsilon=config.epsilon)


class LocalStateScoreStore:
    """The table in this process. `snapshot()` returns it (read-only by convention; updates come between uses)."""

    def __init__(self, params: ScoreParams, max_states: int):
        self.table = StateScoreTable(params, max_states)
        self.version = 0

    def snapshot(self) -> StateScoreTable:
        return self.table

    async def snapshot_async(self) -> StateScoreTable:
        return self.table

    def update(self, trajectories: Trajectories) -> None:
        self.table.add_trajectories(trajectories)
        self.version += 1

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.table.state_dict()

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.table.load_state_dict(state)
        self.version += 1


class _StateScoreActor:
    """The Ray actor body: a LocalStateScoreStore behind remote calls."""

    def __init__(self, params: ScoreParams, max_states: int):
        self.store = LocalStateScoreStore(params, max_states)

    def version(self) -> int:
        return self.store.version

    def state_dict(self) -> tuple[int, dict[str, np.ndarray]]:
        return self.store.version, self.store.state_dict()

    def update(self, trajectories: list[tuple[list[int], bool]]) -> int:
        self.store.update(trajectories)
        return self.store.version

    def load_state_dict(self, state: dict[str, np.ndarray]) -> int:
        self.store.load_state_dict(state)
        return self.store.version


class RayStateScoreStore:
    """Client of the named actor; caches one snapshot per table version."""

    def __init__(self, params: ScoreParams, max_states: int, name: str = ACTOR_NAME):
        import ray

        self.actor = (
            ray.remote(num_cpus=0)(_StateScoreActor).options(name=name, get_if_exists=True).remote(params, max_states)
        )
        self._version = -1
        self._table: StateScoreTable | None = None
        self._lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.fetches = 0  # snapshots fetched (for tests and metrics)

    def _cache(self, version: int, state: dict[str, np.ndarray]) -> StateScoreTable:
        table = StateScoreTable.from_state_dict(state)
        with self._lock:
            self._version, self._table = version, table
            self.fetches += 1
        return table

    def snapshot(self) -> StateScoreTable:
        import ray

        if self._table is None or ray.get(self.actor.version.remote()) != self._version:
            return self._cache(*ray.get(self.actor.state_dict.remote()))
        return self._table

    async def snapshot_async(self) -> StateScoreTable:
        # one fetch per version even when many sessions start at once (one lock per event loop)
        async with self._async_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock()):
            if self._table is None or await self.actor.version.remote() != self._version:
                return self._cache(*await self.actor.state_dict.remote())
            return self._table

    def update(self, trajectories: Trajectories) -> None:
        import ray

        plain = [([int(k) for k in keys], bool(success)) for keys, success in trajectories]
        ray.get(self.actor.update.remote(plain))

    def state_dict(self) -> dict[str, np.ndarray]:
        import ray

        return ray.get(self.actor.state_dict.remote())[1]

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        import ray

        ray.get(self.actor.load_state_dict.remote(state))


_stores: dict[tuple[Any, ...], LocalStateScoreStore | RayStateScoreStore] = {}
_stores_lock = threading.Lock()


def state_score_store(config: SSPOConfig) -> LocalStateScoreStore | RayStateScoreStore:
    """This process's store for the run (see the module docstring); one per process and backend."""
    import ray

    backend = "ray" if ray.is_initialized() else "local"
    key = (backend, score_params(config), config.max_states)
    with _stores_lock:
        if key not in _stores:
            params = score_params(config)
            store_class = RayStateScoreStore if backend == "ray" else LocalStateScoreStore
            _stores[key] = store_class(params, config.max_states)
        return _stores[key]


def run_score_store(estimator: str, algorithm: Any) -> LocalStateScoreStore | RayStateScoreStore | None:
    """The store of a run whose estimator is `estimator`, emptied (a new run starts from an empty table); None
    unless the estimator is 3SPO. algorithm: verl's `algorithm` config section."""
    from verl_agent_ext.agent.branching import SSPO_ESTIMATORS
    from verl_agent_ext.credit.config import sspo_config_from

    if estimator not in SSPO_ESTIMATORS:
        return None
    config = sspo_config_from(algorithm)
    store = state_score_store(config)
    store.load_state_dict(StateScoreTable(score_params(config), config.max_states).state_dict())
    return store


def save_state(state: dict[str, np.ndarray], folder: str | os.PathLike) -> None:
    """Write a table's `state_dict()` to `folder/STATE_FILE` (atomically: temporary file, then rename)."""
    path = os.path.join(folder, STATE_FILE)
    np.savez(path + ".partial.npz", **state)
    os.replace(path + ".partial.npz", path)


def load_state(store: LocalStateScoreStore | RayStateScoreStore, folder: str | os.PathLike) -> bool:
    """Restore the store's table from `folder/STATE_FILE`; False (nothing changed) when the file is absent."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path):
        return False
    with np.load(path) as data:
        store.load_state_dict({name: data[name] for name in data.files})
    return True


def reset_local_stores() -> None:
    """Forget this process's stores (a new run in the same process starts from an empty table)."""
    with _stores_lock:
        _stores.clear()
