"""SCPO's semantic matching on real ALFWorld step texts: cost per matcher option, and agreement with the default.

    taskset -c 0 python benchmarks/bench_scpo_encoding.py --threads 1      # the one core verl's driver has
    python benchmarks/bench_scpo_encoding.py --threads 0                   # every core

Batch: epsilon-expert rollouts of generated ALFWorld training games at the published shape (16 groups x 8, up to
50 steps; benchmarks/alfworld_rollouts.py, cached). Per option, a full `compute_scpo` call: cold (empty text
cache, as after a rollout of new texts; the model is loaded beforehand) and warm (same batch again, CPU
seconds). Columns: distinct step texts SCPO scores, seconds in the matcher (`scpo/encode_seconds`), in the
alignment, the whole call (wall clock, and CPU seconds of the process: on a shared machine the CPU time is what
one idle core would take), and the first call in the process (the static matcher then also distils the tokens
it has not seen).
Quality against the reference option (the exact path: MiniLM on the joined "observation\\naction" text, theta
0.95; the other SCPO settings are the defaults): precision / recall of the credited failed steps (credit > 0),
correlation of the credit, and the largest advantage difference. `--calibrate` picks each option's theta on the
even-numbered groups (best F1 against the reference) and reports agreement on the odd ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from alfworld_rollouts import alfworld_batch  # noqa: E402

from verl_agent_ext.credit import SCPOConfig, StepBatch, compute_scpo  # noqa: E402
from verl_agent_ext.credit.config import DEFAULT_THETA  # noqa: E402
from verl_agent_ext.credit.scpo import step_parts  # noqa: E402
from verl_agent_ext.semantic import EmbeddingMatcher, Matcher, StaticEmbeddingMatcher  # noqa: E402

REFERENCE = "minilm joint (embedding matcher)"
EMBEDDING, STATIC = DEFAULT_THETA["embedding"], DEFAULT_THETA["static"]


def options(threads: int | None) -> dict[str, tuple[Callable[[], Matcher], float]]:
    """Matcher options by name: (factory of a fresh matcher, theta)."""
    return {
        REFERENCE: (lambda: EmbeddingMatcher(threads=threads), EMBEDDING),
        "minilm joint, onnx int8": (lambda: EmbeddingMatcher(threads=threads, backend="onnx_int8"), EMBEDDING),
        "minilm separate": (lambda: EmbeddingMatcher(threads=threads, segments="separate"), EMBEDDING),
        "minilm separate, onnx": (
            lambda: EmbeddingMatcher(threads=threads, segments="separate", backend="onnx"),
            EMBEDDING,
        ),
        "minilm separate, onnx int8": (
            lambda: EmbeddingMatcher(threads=threads, segments="separate", backend="onnx_int8"),
            EMBEDDING,
        ),
        "static plain (distilled MiniLM, the default before the sif variant)": (
            lambda: StaticEmbeddingMatcher(threads=threads, variant="plain"),
            0.995,
        ),
        "static sif (centred + PCA + Zipf-SIF weights)": (
            lambda: StaticEmbeddingMatcher(threads=threads, variant="sif"),
            STATIC,
        ),
    }


def subset(batch: StepBatch, rows: np.ndarray) -> StepBatch:
    return StepBatch(**{name: value[rows] for name, value in batch.__dict__.items()})


def agreement(reference, result) -> dict[str, float]:
    """Credited-step precision / recall against the reference, credit correlation, largest |delta advantage|."""
    ref, new = reference.credit > 0, result.credit > 0
    both = np.sum(ref & new)
    either = ref | new
    corr = np.corrcoef(reference.credit[either], result.credit[either])[0, 1] if either.sum() > 2 else float("nan")
    return {
        "precision": both / max(new.sum(), 1),
        "recall": both / max(ref.sum(), 1),
        "credit_corr": corr,
        "max_dadv": float(np.max(np.abs(reference.advantage - result.advantage))),
        "credited": float(new.sum()),
    }


def calibrate(batch: StepBatch, reference: Matcher, matcher: Matcher) -> tuple[float, dict]:
    """theta with the best F1 against the reference on even groups; agreement at that theta on odd groups.

    Both matchers have the batch's texts cached already, so this costs no encoding.
    """
    group_number = np.asarray([int(str(uid)[1:]) for uid in batch.uid])
    halves = [subset(batch, np.flatnonzero(group_number % 2 == parity)) for parity in (0, 1)]
    references = [compute_scpo(half, SCPOConfig(theta=EMBEDDING), reference) for half in halves]
    best, best_f1 = EMBEDDING, -1.0
    for theta in np.round(np.r_[np.arange(0.70, 0.99, 0.01), 0.99, 0.995, 0.998], 3):
        scores = agreement(references[0], compute_scpo(halves[0], SCPOConfig(theta=float(theta)), matcher))
        f1 = 2 * scores["precision"] * scores["recall"] / max(scores["precision"] + scores["recall"], 1e-12)
        if f1 > best_f1:
            best, best_f1 = float(theta), f1
    return best, agreement(references[1], compute_scpo(halves[1], SCPOConfig(theta=best), matcher))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="encoder threads (0: every core)")
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--warm-repeats", type=int, default=9)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.5, 0.75, 0.9], help="random-action rates")
    parser.add_argument("--only", nargs="*", default=None, help="option names to run (substring match)")
    parser.add_argument("--calibrate", action="store_true", help="also pick theta per option on half the groups")
    args = parser.parse_args()
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)

    batch = alfworld_batch(args.groups, args.group_size, args.max_steps, tuple(args.epsilons), args.seed)
    parts = step_parts(batch, "obs_action")
    first = batch.step_index == 0
    print(
        f"batch: {len(batch)} step rows, {first.sum()} trajectories, {batch.episode_success[first].sum()} successes, "
        f"{len(set(batch.anchor_obs))} distinct observations, {len(set(batch.action_text))} distinct actions, "
        f"{len(set(parts))} distinct observation+action texts",
        flush=True,
    )
    print(f"threads: {threads}; affinity: {sorted(os.sched_getaffinity(0))}; {_uptime()}", flush=True)

    chosen = {n: o for n, o in options(threads).items() if not args.only or any(s in n for s in args.only)}
    chosen.setdefault(REFERENCE, options(threads)[REFERENCE])
    results, rows, matchers = {}, [], {}
    for name, (factory, theta) in chosen.items():
        config = SCPOConfig(theta=theta)
        matcher = matchers[name] = factory()
        matcher.encode(["warm up the model"]) if isinstance(matcher, EmbeddingMatcher) else None
        cold = []
        for _ in range(args.cold_repeats):
            matcher.clear_cache()
            wall, cpu = time.perf_counter(), time.process_time()
            result = compute_scpo(batch, config, matcher)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            d = result.diagnostics
            cold.append((d["scpo/encode_seconds"], d["scpo/align_seconds"], wall, cpu))
        warm = []
        for _ in range(args.warm_repeats):
            start = time.process_time()
            warm_result = compute_scpo(batch, config, matcher)
            warm.append(time.process_time() - start)
        results[name] = result
        encode, align, total, cpu = (statistics.median(c[i] for c in cold) for i in range(4))
        rows.append(
            (
                name,
                theta,
                result.diagnostics["scpo/distinct_texts"],
                encode,
                align,
                total,
                cpu,
                cold[0][2],
                statistics.median(warm) * 1000,
                warm_result.diagnostics["scpo/cache_hit_rate"],
            )
        )
        print(
            f"  {name}: cold {total:.2f} s wall, {cpu:.2f} s CPU (first {cold[0][2]:.2f} s), warm {rows[-1][8]:.0f} ms",
            flush=True,
        )

    print(f"\n{_uptime()}")
    print(
        f"\n| matcher option ({len(batch)} rows, {threads} thread(s)) | theta | distinct texts | encode s | "
        "align s | cold total s | cold CPU s | first call s | warm CPU ms | warm hit rate | precision | recall | "
        "credit corr | max abs dA |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    reference = results[REFERENCE]
    for name, theta, distinct, encode, align, total, cpu, first_call, warm_ms, hit in rows:
        q = agreement(reference, results[name])
        print(
            f"| {name} | {theta:.3f} | {distinct:.0f} | {encode:.2f} | {align:.3f} | {total:.2f} | {cpu:.2f} | "
            f"{first_call:.2f} | {warm_ms:.0f} | {hit:.0%} | {q['precision']:.3f} | {q['recall']:.3f} | "
            f"{q['credit_corr']:.3f} | {q['max_dadv']:.3f} |"
        )
    print(
        f"\nreference credits {int((reference.credit > 0).sum())} of {int((~batch.episode_success).sum())} "
        "failed-step rows"
    )

    if args.calibrate:
        print("\n| matcher option | theta (best F1 on even groups) | precision (odd groups) | recall | credit corr |")
        print("|---|---:|---:|---:|---:|")
        for name, matcher in matchers.items():
            best, q = calibrate(batch, matchers[REFERENCE], matcher)
            print(f"| {name} | {best:.3f} | {q['precision']:.3f} | {q['recall']:.3f} | {q['credit_corr']:.3f} |")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
