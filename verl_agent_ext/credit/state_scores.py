"""3SPO's state-score table: per anchor state, how often the trajectories through it succeeded. Pure numpy.

    S(s) = exp(-lambda(t) * N_succ(s) / (N_tot(s) + eps)) * 1[N_fail(s) < xi  or  N_succ(s) / (N_tot(s) + eps) > zeta]
    lambda(t) = alpha * log t,   t = finished trajectories + 1,   N_fail = N_tot - N_succ,   unseen state: S = 1.

A state is the hash of its anchor observation text (`state_key`), shared across tasks as in 3SPO. Each finished
trajectory counts each distinct state on it once (N_tot += 1, and N_succ += 1 if it succeeded), then t += 1.

Memory: one entry per distinct state (key, N_succ, N_tot, last update; about 100 bytes in the dict plus 32 in a
snapshot). The table grows with the distinct states seen and is capped at `max_states`: when an update takes it
past the cap, the least recently updated states are evicted down to 90 % of the cap (evicted states read as
unseen again, S = 1). `states_seen` keeps counting every distinct state ever added (evicted ones included).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

EVICT_TO = 0.9  # share of max_states kept after an eviction


@dataclass(frozen=True)
class ScoreParams:
    """alpha: annealing rate of lambda(t); xi: failures before a hopeless state is cut; zeta: success rate that
    keeps a state alive regardless of failures; epsilon: in the success rate's denominator."""

    alpha: float = 50.0
    xi: float = 10.0
    zeta: float = 0.1
    epsilon: float = 1e-6


def state_key(text: str) -> int:
    """Stable 63-bit key of an anchor observation (same value in every process, unlike `hash`)."""
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate (broken env text) hashes instead of raising
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def state_keys(texts: Iterable[str]) -> np.ndarray:
    """Keys of many texts. Returns int64 (n,)."""
    return np.fromiter((state_key(str(text)) for text in texts), dtype=np.int64)


def scores_from_counts(n_succ: np.ndarray, n_tot: np.ndarray, t: int, params: ScoreParams) -> np.ndarray:
    """S per state from its counts (n,) at global counter t. Returns float64 (n,)."""
    n_succ = np.asarray(n_succ, dtype=np.float64)
    n_tot = np.asarray(n_tot, dtype=np.float64)
    rate = n_succ / (n_tot + params.epsilon)
    lam = params.alpha * np.log(max(t, 1))
    alive = ((n_tot - n_succ) < params.xi) | (rate > params.zeta)
    return np.exp(-lam * rate) * alive


class StateScoreTable:
    """Counts per state key and the global trajectory counter t; `scores` reads, `add_trajectories` updates."""

    def __init__(self, params: ScoreParams | None = None, max_states: int = 200_000):
        if max_states < 1:
            raise ValueError(f"max_states must be >= 1, got {max_states}")
        self.params = params or ScoreParams()
        self.max_states = max_states
        self.t = 1
        self.states_seen = 0
        self.evicted = 0
        self._counts: dict[int, list[int]] = {}  # key -> [n_succ, n_tot, t of last update]

    def __len__(self) -> int:
        return len(self._counts)

    def counts(self, keys: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N_succ, N_tot) of each key (0, 0 when unseen). Returns two int64 (n,)."""
        rows = [self._counts.get(int(key), (0, 0, 0)) for key in keys]
        n_succ = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        n_tot = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
        return n_succ, n_tot

    def scores(self, keys: Sequence[int] | np.ndarray) -> np.ndarray:
        """S of each key. Returns float64 (n,)."""
        n_succ, n_tot = self.counts(keys)
        return scores_from_counts(n_succ, n_tot, self.t, self.params)

    def add_trajectories(self, trajectories: Iterable[tuple[Iterable[int], bool]]) -> None:
        """Count finished trajectories, each given as (state keys on it, success); duplicates count once."""
        for keys, success in trajectories:
            for key in set(int(k) for k in keys):
                row = self._counts.get(key)
                if row is None:
                    row = self._counts[key] = [0, 0, 0]
                    self.states_seen += 1
                row[0] += int(bool(success))
                row[1] += 1
                row[2] = self.t
            self.t += 1
        if len(self._counts) > self.max_states:
            self._evict(int(self.max_states * EVICT_TO))

    def _evict(self, keep: int) -> None:
        """Drop the least recently updated states (ties: the older insertion) until `keep` remain."""
        last = np.fromiter((row[2] for row in self._counts.values()), dtype=np.int64, count=len(self._counts))
        drop = np.argsort(last, kind="stable")[: len(self._counts) - keep]
        keys = list(self._counts)
        for index in drop.tolist():
            del self._counts[keys[index]]
        self.evicted += len(drop)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays to save (np.savez) and restore with `load_state_dict`; also the rollout's snapshot."""
        keys = np.fromiter(self._counts, dtype=np.int64, count=len(self._counts))
        values = np.asarray(list(self._counts.values()), dtype=np.int64).reshape(-1, 3)
        return {
            "keys": keys,
            "n_succ": values[:, 0],
            "n_tot": values[:, 1],
            "last": values[:, 2],
            "meta": np.asarray([self.t, self.states_seen, self.evicted, self.max_states], dtype=np.int64),
            "params": np.asarray([self.params.alpha, self.params.xi, self.params.zeta, self.params.epsilon]),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore counts and counters; keeps this table's params and max_states (evicting if the cap shrank)."""
        self.t, self.states_seen, self.evicted = (int(v) for v in np.asarray(state["meta"])[:3])
        self._counts = {
            int(k): [int(s), int(n), int(u)]
            for k, s, n, u in zip(state["keys"], state["n_succ"], state["n_tot"], state["last"], strict=True)
        }
        if len(self._counts) > self.max_states:
            self._evict(self.max_states)

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray], max_states: int | None = None) -> StateScoreTable:
        """A table rebuilt from `state_dict()` output, with the params it was saved with."""
        alpha, xi, zeta, epsilon = (float(v) for v in np.asarray(state["params"]))
        cap = int(np.asarray(state["meta"])[3]) if max_states is None else max_states
        table = cls(ScoreParams(alpha, xi, zeta, epsilon), max_states=cap)
        table.load_state_dict(state)
        return table
