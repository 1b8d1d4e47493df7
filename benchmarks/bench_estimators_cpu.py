"""Sample efficiency of advantage estimators from the same warm start on the CPU: held-out success vs env steps.

    python benchmarks/bench_estimators_cpu.py                                      # full run (not measured yet)
    python benchmarks/bench_estimators_cpu.py --estimators grpo,scpo --seeds 0 --iterations 2     # a reduced run

Every (estimator, seed) run starts from the same warm-started LoRA adapter (`--init-adapter`: by default the
shipped `alfworld-pick-smollm2-135m`, made by `verl-agent-ext warm-start`, see docs/cpu_training.md), plays the
same training tasks in the same order (task sampling depends on the seed only) and is evaluated on the same
held-out games (generated eval_in_distribution split, one episode each) before training and every `--eval-every`
iterations; the warm start's evaluation (before training) is made once per seed and shared by every estimator.
Each run is its own process (`--single`), so a native crash in one run cannot take the others down; `--jobs` runs
go at a time, each on cores/jobs torch threads.
Writes `results.jsonl` (one line per evaluation), `table.md` and `estimators.png` (mean success over seeds against
mean cumulative env steps, band = min..max over seeds) under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

START = "(warm start)"  # the estimator name of the before-training evaluations, shared by every estimator
# The quickstart's settings (examples/quickstart_cpu.sh), shared by every run; --iterations, --temperature and
# --solvable-within set the rest (their defaults are those of the measured comparison in docs/cpu_training.md, made
# before the quickstart moved to `--temperature 1.0 --solvable-within 8`).
TRAIN_SETTINGS = {
    "groups_per_iter": 2,
    "group_size": 4,
    "max_steps": 8,
    "response_length": 16,
    "task_types": "pick_and_place_simple",
    "games_per_type": 24,
    "history_length": 0,  # the shipped adapter's prompt settings
    "max_actions": 40,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", default="grpo,gigpo,scpo", help="comma-separated registered estimators")
    parser.add_argument("--seeds", default="0,1", help="comma-separated run seeds")
    parser.add_argument("--iterations", type=int, default=3, help="training iterations per run")
    parser.add_argument("--eval-every", type=int, default=3, help="iterations between held-out evaluations")
    parser.add_argument("--eval-games", type=int, default=12, help="held-out games per evaluation")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature of the training rollouts")
    parser.add_argument(
        "--solvable-within", type=int, default=0, help="train on the games the searcher wins within N steps (0: all)"
    )
    parser.add_argument("--eval-temperature", type=float, default=0.7, help="0 = greedy")
    parser.add_argument(
        "--init-adapter",
        default="alfworld-pick-smollm2-135m",
        help="warm start: a shipped adapter's name or a PEFT adapter folder (`warm-start` output)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, each on cores/jobs torch threads")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_estimators_cpu"))
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)  # "estimator,seed": one run, internal
    return parser.parse_args(argv)


def run_one(args: argparse.Namespace, estimator: str, seed: int, evaluate_start: bool) -> None:
    """Train one (estimator, seed) run and append its evaluations to results.jsonl.

    evaluate_start: evaluate the warm start before training (done once per seed: every estimator starts from it).
    """
    from verl_agent_ext.envs.play_cli import interleave_by_type
    from verl_agent_ext.local.config import LocalTrainConfig
    from verl_agent_ext.local.trainer import LocalTrainer, load_tasks

    config = LocalTrainConfig(
        out_dir=str(args.out / f"{estimator}-seed{seed}"),
        iterations=args.iterations,
        seed=seed,
        resume=False,
        save_every=args.iterations,
        estimator=estimator,
        init_adapter=args.init_adapter,
        num_threads=max(1, (os.cpu_count() or 1) // args.jobs),
        temperature=args.temperature,
        solvable_within=args.solvable_within,
        **TRAIN_SETTINGS,
    )
    trainer = LocalTrainer(config, log=lambda line: None)
    heldout = interleave_by_type(load_tasks(config, "eval_in_distribution"))[: args.eval_games]
    env_steps, started = 0, time.perf_counter()
    rollout_success: list[float] = []  # training episodes' success per iteration so far

    def evaluate(iteration: int) -> None:
        metrics = trainer.evaluate(heldout, args.eval_temperature)
        line = {
            "estimator": estimator if iteration else START,
            "seed": seed,
            "iteration": iteration,
            "env_steps": env_steps,
            "success": metrics["eval/success_rate"],
            "invalid": metrics["eval/invalid_action_rate"],
            "train_success": sum(rollout_success) / len(rollout_success) if rollout_success else None,
            "seconds": time.perf_counter() - started,
        }
        with (args.out / "results.jsonl").open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)

    try:
        if evaluate_start:
            evaluate(0)
        for iteration in range(1, args.iterations + 1):
            record = trainer.train_iteration(iteration)
            env_steps += int(record["rollout/steps"])
            rollout_success.append(record["rollout/success_rate"])
            if iteration % args.eval_every == 0 or iteration == args.iterations:
                evaluate(iteration)
    finally:
        trainer.close()


def summarise(results: list[dict], out: Path) -> str:
    """Markdown table (mean and min..max over seeds per estimator and evaluation point) and the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    estimators = list(dict.fromkeys(r["estimator"] for r in results if r["estimator"] != START))
    starts = [r for r in results if r["estimator"] == START]
    results = [r for r in results if r["estimator"] != START] + [
        {**r, "estimator": estimator} for r in starts for estimator in estimators
    ]
    lines = [
        "| estimator | iteration | env steps (mean) | held-out success mean | min..max | invalid | training success"
        " so far (mean) | seeds |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for estimator in estimators:
        rows = [r for r in results if r["estimator"] == estimator]
        iterations = sorted({r["iteration"] for r in rows})
        xs, means, lows, highs = [], [], [], []
        for iteration in iterations:
            at = [r for r in rows if r["iteration"] == iteration]
            success = np.array([r["success"] for r in at])
            xs.append(float(np.mean([r["env_steps"] for r in at])))
            means.append(float(success.mean()))
            lows.append(float(success.min()))
            highs.append(float(success.max()))
            invalid = float(np.mean([r["invalid"] for r in at]))
            trained = [r["train_success"] for r in at if r.get("train_success") is not None]
            trained_text = f"{np.mean(trained):.2f}" if trained else "-"
            lines.append(
                f"| {estimator} | {iteration} | {xs[-1]:.0f} | {means[-1]:.2f} | {lows[-1]:.2f}..{highs[-1]:.2f} "
                f"| {invalid:.2f} | {trained_text} | {len(at)} |"
            )
        axis.plot(xs, means, marker="o", label=estimator)
        axis.fill_between(xs, lows, highs, alpha=0.2)
    axis.set_xlabel("environment steps (training)")
    axis.set_ylabel("held-out success rate")
    axis.set_ylim(-0.05, 1.05)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(
        "ALFWorld (generated), SmolLM2-135M from the same warm start\nband: min..max over seeds", fontsize=10
    )
    figure.tight_layout()
    figure.savefig(out / "estimators.png", dpi=100)
    plt.close(figure)
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    return table


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.single:
        from verl_agent_ext import quiet

        quiet.configure(verbose=False)  # no per-load progress bars or engine-probe warnings in the table's output
        estimator, seed, evaluate_start = args.single.split(",")
        run_one(args, estimator, int(seed), evaluate_start == "1")
        sys.stdout.flush()
        os._exit(0)  # skip the interpreter teardown (see local/train_cli.py)
    (args.out / "results.jsonl").unlink(missing_ok=True)
    started = time.perf_counter()
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    estimators = args.estimators.split(",")
    queue = [(e, int(s)) for s in args.seeds.split(",") for e in estimators]
    running: list[tuple[str, subprocess.Popen]] = []
    while queue or running:
        while queue and len(running) < args.jobs:
            estimator, seed = queue.pop(0)
            print(f"[bench] {estimator} seed {seed} started", flush=True)
            single = f"{estimator},{seed},{int(estimator == estimators[0])}"
            running.append(
                (
                    f"{estimator} seed {seed}",
                    subprocess.Popen([sys.executable, __file__, *forwarded, "--single", single]),
                )
            )
        time.sleep(1)
        for name, process in list(running):
            if process.poll() is not None:
                running.remove((name, process))
                if process.returncode != 0:
                    sys.exit(f"[bench] run {name} failed (exit {process.returncode})")
                print(f"[bench] {name} done ({time.perf_counter() - started:.0f} s)", flush=True)
    results = [json.loads(line) for line in (args.out / "results.jsonl").read_text().splitlines()]
    print(summarise(results, args.out))
    print(f"[bench] {time.perf_counter() - started:.0f} s in all; plot {args.out / 'estimators.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
