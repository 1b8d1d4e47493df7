"""Benchmark of the credit estimators on a realistic synthetic ALFWorld-like batch; prints a markdown table.

Batch: 16 groups x 8 trajectories, failures run to max_steps=50, successes finish in 20-50 steps (about 6,000
step rows), texts drawn from an ALFWorld-like household (repeated observations and actions, as in real rollouts).
Usage: python benchmarks/bench_credit.py [--repeats 15] [--cold-repeats 1] [--groups 16] [--trajectories 8]
    [--scpo-reference all|longest|shortest]  (README's table: --scpo-reference longest)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from verl_agent_ext.credit import GiGPOConfig, SCPOConfig, StepBatch, compute_gigpo, compute_scpo  # noqa: E402
from verl_agent_ext.credit.config import SCPO_REFERENCES  # noqa: E402
from verl_agent_ext.credit.scpo import step_texts  # noqa: E402
from verl_agent_ext.semantic import EmbeddingMatcher  # noqa: E402

PLACES = [
    f"{kind} {i}"
    for kind, n in [("cabinet", 6), ("drawer", 5), ("countertop", 3), ("shelf", 3), ("stoveburner", 4)]
    for i in range(1, n + 1)
]
PLACES += ["fridge 1", "microwave 1", "sinkbasin 1", "garbagecan 1", "coffeemachine 1", "toaster 1"]
OBJECTS = ["apple", "mug", "knife", "bread", "egg", "potato", "tomato", "spoon", "cup", "plate", "pan", "lettuce"]


def alfworld_like_batch(groups: int, trajectories: int, max_steps: int, seed: int = 0) -> StepBatch:
    """Rollouts of `groups` tasks x `trajectories`: a success follows the task's plan with detours."""
    rng = np.random.default_rng(seed)
    columns = defaultdict(list)
    for g in range(groups):
        contents = {place: rng.choice(OBJECTS, size=rng.integers(0, 3), replace=False) for place in PLACES}
        target = rng.choice(OBJECTS)
        plan = [f"go to {p}" for p in rng.choice(PLACES, size=4, replace=False)] + [
            f"take {target} 1",
            "go to fridge 1",
            f"cool {target} 1 with fridge 1",
        ]
        start = "You are in the middle of a room. Looking quickly around you, you see " + ", ".join(PLACES[:12]) + "."
        for t in range(trajectories):
            won = rng.random() < 0.4
            length = int(rng.integers(20, max_steps + 1)) if won else max_steps
            obs, plan_step = start, 0
            for step in range(length):
                if won and step >= length - len(plan) + plan_step and plan_step < len(plan):
                    action = plan[plan_step]
                    plan_step += 1
                elif rng.random() < 0.15:
                    action = str(rng.choice(["look", "inventory", f"open {rng.choice(PLACES)}", "examine room"]))
                else:
                    action = f"go to {rng.choice(PLACES)}"
                columns["uid"].append(f"task{g}")
                columns["traj_uid"].append(f"task{g}-t{t}")
                columns["step_index"].append(step)
                columns["step_reward"].append(10.0 if won and step == length - 1 else 0.0)
                columns["is_action_valid"].append(bool(rng.random() > 0.05))
                columns["episode_success"].append(won)
                columns["anchor_obs"].append(obs)
                columns["action_text"].append(action)
                obs = observe(action, contents)
    return StepBatch.from_columns(**columns)


def observe(action: str, contents: dict[str, np.ndarray]) -> str:
    if action.startswith("go to "):
        place = action[len("go to ") :]
        seen = contents.get(place, [])
        items = ", ".join(f"a {item} 1" for item in seen) if len(seen) else "nothing"
        return f"You arrive at {place}. On the {place}, you see {items}."
    if action.startswith("open "):
        return f"You open the {action[5:]}. The {action[5:]} is open. In it, you see nothing."
    return "Nothing happens."


def naive_gigpo(batch: StepBatch, config: GiGPOConfig) -> np.ndarray:
    """Row-by-row GiGPO with Python dicts and loops (how one would write it first), for the speed ratio."""
    n = len(batch)
    scores = [
        float(batch.episode_return[i]) - (0.0 if batch.is_action_valid[i] else config.invalid_action_penalty)
        for i in range(n)
    ]
    by_group = defaultdict(list)
    for i in range(n):
        by_group[batch.uid[i]].append(scores[i])
    episode = [0.0] * n
    for i in range(n):
        values = by_group[batch.uid[i]]
        mean = statistics.fmean(values) if len(values) > 1 else 0.0
        episode[i] = scores[i] - mean
    steps_of = defaultdict(list)
    for i in range(n):
        steps_of[batch.traj_uid[i]].append((int(batch.step_index[i]), i))
    returns = [0.0] * n
    for rows in steps_of.values():
        running = 0.0
        for _, i in sorted(rows, reverse=True):
            running = float(batch.step_reward[i]) + config.gamma * running
            returns[i] = running - (0.0 if batch.is_action_valid[i] else config.invalid_action_penalty)
    anchor_groups = defaultdict(list)
    for i in range(n):
        anchor_groups[(batch.uid[i], batch.anchor_obs[i])].append(i)
    step = [0.0] * n
    for rows in anchor_groups.values():
        if len(rows) > 1:
            mean = statistics.fmean(returns[i] for i in rows)
            for i in rows:
                step[i] = returns[i] - mean
    return np.asarray(episode) + config.step_advantage_w * np.asarray(step)


def similarity_profile(batch: StepBatch, encoder: EmbeddingMatcher, groups: int) -> None:
    """Percentiles of MiniLM cosine between distinct step texts of the same group, by kind of pair (for theta)."""
    kinds: dict[str, list[float]] = defaultdict(list)
    for uid in list(dict.fromkeys(batch.uid))[:groups]:
        rows = np.flatnonzero(batch.uid == uid)
        pairs = list(dict.fromkeys(zip(batch.anchor_obs[rows], batch.action_text[rows], strict=True)))
        scores = encoder.similarity([f"{o}\n{a}" for o, a in pairs], [f"{o}\n{a}" for o, a in pairs])
        for i, (obs_i, act_i) in enumerate(pairs):
            for j in range(i + 1, len(pairs)):
                obs_j, act_j = pairs[j]
                kind = ("same" if act_i == act_j else "other") + " action, " + ("same" if obs_i == obs_j else "other")
                kinds[kind + " observation"].append(scores[i, j])
    print("\n| pair of distinct step texts (obs + action) | pairs | p50 | p90 | p99 | share > 0.85 |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, values in sorted(kinds.items()):
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        share = np.mean(np.asarray(values) > 0.85)
        print(f"| {kind} | {len(values)} | {p50:.2f} | {p90:.2f} | {p99:.2f} | {share:.1%} |")


def median_ms(fn: Callable[[], object], repeats: int, setup: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--trajectories", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--cold-repeats", type=int, default=1, help="repeats of the (slow) cold-cache encodings")
    parser.add_argument(
        "--scpo-reference",
        choices=SCPO_REFERENCES,
        default=SCPOConfig().reference,
        help="SCPO's successful reference(s) per failure (the README's table was measured with longest)",
    )
    parser.add_argument(
        "--similarity-profile",
        type=int,
        default=0,
        metavar="GROUPS",
        help="only print MiniLM similarity percentiles over the distinct step texts of GROUPS groups",
    )
    args = parser.parse_args()

    batch = alfworld_like_batch(args.groups, args.trajectories, args.max_steps)
    texts = list(step_texts(batch, "obs_action"))
    unique_texts = len(set(texts))
    print(
        f"batch: {len(batch)} step rows, {len(set(batch.traj_uid))} trajectories, "
        f"{int(np.sum(batch.episode_success & (batch.step_index == 0)))} successes, "
        f"{len(set(batch.anchor_obs))} distinct observations, {unique_texts} distinct step texts",
        flush=True,
    )

    if args.similarity_profile:
        similarity_profile(batch, EmbeddingMatcher(), args.similarity_profile)
        return
    gigpo = GiGPOConfig(gamma=0.95)
    np.testing.assert_allclose(naive_gigpo(batch, gigpo), compute_gigpo(batch, gigpo).advantage, atol=1e-4)
    encoder = EmbeddingMatcher()
    encoder.encode(["warm up the model"])
    scpo = SCPOConfig(theta=0.85, alpha=1.0, reference=args.scpo_reference)
    scpo_exact = SCPOConfig(theta=0.85, alpha=1.0, matcher="exact", reference=args.scpo_reference)
    doubled = StepBatch(**{name: np.concatenate([value, value]) for name, value in batch.__dict__.items()})

    rows: list[tuple[str, float, str]] = []

    def measure(name: str, fn: Callable[[], object], target: str = "", setup=None, repeats=args.repeats) -> float:
        value = median_ms(fn, repeats, setup)
        rows.append((name, value, target))
        print(f"  {name}: {value:.1f} ms", flush=True)
        return value

    print("timing (medians):", flush=True)
    fast = measure("GiGPO exact (mean_norm)", lambda: compute_gigpo(batch, gigpo), "<= 50 ms")
    measure(
        "GiGPO exact (mean_std_norm, per-trajectory stats)",
        lambda: compute_gigpo(batch, GiGPOConfig(mode="mean_std_norm", episode_norm_over="trajectories")),
    )
    measure("GiGPO similarity: difflib >= 0.95", lambda: compute_gigpo(batch, GiGPOConfig(similarity="difflib")))
    measure(
        "GiGPO similarity: embedding >= 0.95, warm cache",
        lambda: compute_gigpo(batch, GiGPOConfig(similarity="embedding"), matcher=encoder),
        setup=lambda: encoder.encode(list(batch.anchor_obs)),
    )
    measure("SCPO without encoding (exact matcher)", lambda: compute_scpo(batch, scpo_exact), "<= 200 ms")
    measure(
        "SCPO embedding, warm cache",
        lambda: compute_scpo(batch, scpo, encoder),
        "<= 300 ms",
        setup=lambda: encoder.encode(list(texts)),
    )
    cold = args.cold_repeats
    measure(
        f"encoding, cold cache: all {unique_texts} distinct step texts of the batch",
        lambda: encoder.encode(texts),
        "grows with distinct texts",
        setup=encoder.clear_cache,
        repeats=cold,
    )
    subset = list(dict.fromkeys(texts))[:300]
    measure(
        "encoding, cold cache: 300 distinct texts in 300 rows",
        lambda: encoder.encode(subset),
        setup=encoder.clear_cache,
        repeats=cold,
    )
    measure(
        "encoding, cold cache: the same 300 distinct texts in 2,400 rows",
        lambda: encoder.encode(subset * 8),
        "same as the line above",
        setup=encoder.clear_cache,
        repeats=cold,
    )
    measure(
        "SCPO embedding, cold cache (encoding included)",
        lambda: compute_scpo(batch, scpo, encoder),
        setup=encoder.clear_cache,
        repeats=cold,
    )
    measure(
        "SCPO embedding, warm cache, batch doubled",
        lambda: compute_scpo(doubled, scpo, encoder),
        setup=lambda: encoder.encode(texts),
    )
    naive = measure("naive row-loop GiGPO (Python dicts)", lambda: naive_gigpo(batch, gigpo))

    print()
    print(f"| estimator ({len(batch)} step rows, 2-core CPU) | median ms | target |")
    print("|---|---:|---|")
    for name, value, target in rows:
        print(f"| {name} | {value:.1f} | {target} |")
    print(f"\nvectorised GiGPO is {naive / fast:.1f}x faster than the naive row loop")


if __name__ == "__main__":
    main()
