"""Time per local-trainer iteration, split into generation / environment / credit / update (medians).

    python benchmarks/bench_local_iteration.py                  # train-local's defaults, 3 iterations
    python benchmarks/bench_local_iteration.py --iterations 5 --estimator grpo --group-size 8

Runs real iterations (ALFWorld games, SmolLM2-135M, the agent loop, the estimator, verl's loss) in a temporary
folder and prints one table of medians over the iterations, with the CPU load average so contended numbers are
recognisable. Options are those of `verl-agent-ext train-local`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from verl_agent_ext.local import train_cli
from verl_agent_ext.local.config import LocalTrainConfig

PHASES = (
    ("generation", "time/generation"),
    ("environment + agent loop", "time/environment"),
    ("credit", "time/credit"),
    ("update", "time/update"),
    ("iteration", "time/iteration"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train_cli.register(parser.add_subparsers())
    args = parser.parse_args(["train-local", "--iterations", "3", *(argv or [])])
    from verl_agent_ext.local.trainer import LocalTrainer

    names = {name for name in LocalTrainConfig.__dataclass_fields__}
    settings = {key: value for key, value in vars(args).items() if key in names}
    with tempfile.TemporaryDirectory() as out_dir:
        settings.update(out_dir=out_dir, resume=False)
        config = LocalTrainConfig.from_dict(settings)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        trainer = LocalTrainer(config, log=lambda line: print(line, file=sys.stderr))
        setup = time.perf_counter() - started
        records = trainer.train()
        trainer.close()
        load_after = os.getloadavg()[0]

    print(
        f"\nlocal iteration ({config.estimator}, {config.model}, {config.groups_per_iter} tasks x group "
        f"{config.group_size}, <= {config.max_steps} steps, {config.response_length} response tokens, "
        f"{len(records)} iterations; setup {setup:.1f} s; load average {load_before:.1f} -> {load_after:.1f} "
        f"on {os.cpu_count()} CPUs)"
    )
    print(f"| {'phase':<26} | {'median s':>9} | {'share':>6} |")
    print(f"|{'-' * 28}|{'-' * 11}|{'-' * 8}|")
    total = statistics.median(record["time/iteration"] for record in records)
    for label, key in PHASES:
        value = statistics.median(record[key] for record in records)
        print(f"| {label:<26} | {value:>9.1f} | {value / total:>6.0%} |")
    steps = statistics.median(record["rollout/steps"] for record in records)
    tokens = statistics.median(record["rollout/generated_tokens"] for record in records)
    generation = statistics.median(record["time/generation"] for record in records)
    print(f"\nmedian per iteration: {steps:.0f} step rows, {tokens:.0f} generated tokens ({tokens / generation:.1f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
