"""The arena's warm start: behaviour cloning of the light policy on a few demonstrator episodes.

Random play wins nothing on ALFWorld, so a fresh policy's groups never hold a success. The warm start imitates the
demonstrator (the searching expert) for a few gradient steps only (`bc_steps`), so that it wins some episodes and
loses others: groups then carry a learning signal, and the estimators have room to show what they add.

Demonstrations (one searcher episode per training task, its contexts and chosen actions as text) are cached under
the generated-games cache (`$VERL_AGENT_EXT_CACHE/arena/`): the searcher plans at every step (slow).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from verl_agent_ext.arena.envs import ArenaEnvironment
from verl_agent_ext.arena.policy import CandidatePolicy, Context, FeatureHasher, chosen_log_probs, pack
from verl_agent_ext.arena.row_adam import RowAdam

DEMO_VERSION = 1


def demonstrations(environment: ArenaEnvironment, max_steps: int) -> list[tuple[Context, int]]:
    """(context, index of the demonstrator's action among the candidates) of every demonstrated step."""
    key = json.dumps([DEMO_VERSION, environment.name, max_steps, [task.task_id for task in environment.train]])
    path = _cache_dir() / f"demos-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        records = json.loads(path.read_text())
    else:
        records = _record(environment, max_steps)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(records))
        partial.replace(path)
    return [
        (Context(r["task"], r["observation"], tuple(r["candidates"]), tuple(r["past"])), r["chosen"]) for r in records
    ]


def _cache_dir() -> Path:
    from verl_agent_ext.envs.alfworld.generator import cache_root

    return cache_root() / "arena"


def _record(environment: ArenaEnvironment, max_steps: int) -> list[dict]:
    env = environment.make_env()
    demonstrator = environment.demonstrator(env)
    records = []
    try:
        for task in environment.train:
            observation, past = env.reset(task), []
            for _ in range(max_steps):
                action = demonstrator.act(observation)
                candidates = environment.candidates(observation)
                if action in candidates:
                    records.append(
                        {
                            "task": observation.task_description,
                            "observation": observation.text,
                            "candidates": list(candidates),
                            "past": list(past),
                            "chosen": candidates.index(action),
                        }
                    )
                result = env.step(action)
                past.append(action)
                observation = result.observation
                if result.done:
                    break
    finally:
        env.close()
    return records


def behaviour_clone(
    policy: CandidatePolicy,
    hasher: FeatureHasher,
    demos: Sequence[tuple[Context, int]],
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> float:
    """`steps` Adam steps of cross-entropy on random mini-batches of `demos`; returns the last loss."""
    if steps == 0 or not demos:
        return float("nan")
    features = [hasher.features(context) for context, _ in demos]
    chosen = np.asarray([index for _, index in demos], dtype=np.int64)
    rng = np.random.default_rng([seed, 11])
    optimizer = RowAdam(policy.parameters(), lr=lr)
    loss = torch.zeros(())
    for _ in range(steps):
        rows = rng.choice(len(features), size=min(batch_size, len(features)), replace=False)
        packed = pack([features[r] for r in rows])
        log_p, _ = policy.log_probs(packed)
        loss = -chosen_log_probs(log_p, packed, torch.from_numpy(chosen[rows])).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())
