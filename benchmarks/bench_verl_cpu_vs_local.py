"""One iteration of verl's own trainer on the CPU (`run_scpo_alfworld.sh --cpu`) against `verl-agent-ext train-local`
at the same settings (SmolLM2-135M full weights, lr 1e-5, 2 tasks x group 4, <= 5 steps, prompt 512 / response 24,
`<action>` prefill, history 1, the environment's default prompt), phase by phase. Prints one markdown table.

    python benchmarks/bench_verl_cpu_vs_local.py [--out /tmp/bench_verl_cpu]

verl's phases are its own `timing_s/*` metrics of iteration 1 (`gen` includes the environment steps, `step` the
whole iteration); start-up is the wall time from launch to the end of iteration 1 minus `timing_s/step` (Python
imports, Ray, workers, model loading, TransferQueue). train-local's phases are its `time/*` metrics; its old
log-probs are computed inside the update.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP_LINE = re.compile(r"step:1 - (.*)")


def run_verl(out: Path) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    command = ["bash", str(ROOT / "examples" / "run_scpo_alfworld.sh"), "--cpu", "trainer.total_training_steps=1"]
    command.append(f"trainer.default_local_dir={out / 'verl_ckpt'}")
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    match = STEP_LINE.search(result.stdout + result.stderr)
    if result.returncode != 0 or match is None:
        sys.exit(f"verl run failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    metrics = {}
    for item in match.group(1).split(" - "):
        key, _, value = item.partition(":")
        try:
            metrics[key.strip()] = float(value)
        except ValueError:
            pass
    return metrics, wall


def run_local(out: Path) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    command = [sys.executable, "-m", "verl_agent_ext.cli", "train-local", "--estimator", "scpo", "--iterations", "1"]
    command += ["--groups-per-iter", "2", "--group-size", "4", "--max-steps", "5", "--temperature", "1.0"]
    command += ["--response-length", "24", "--prompt-length", "512", "--history-length", "1", "--lora-rank", "0"]
    command += ["--lr", "1e-5", "--micro-batch-size", "2", "--prompt-template", "", "--max-actions", "40"]
    command += ["--no-resume", "--out", str(out / "local")]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    record = json.loads((out / "local" / "metrics.jsonl").read_text().splitlines()[0])
    return record, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_verl_cpu"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    local, local_wall = run_local(args.out)
    verl, verl_wall = run_verl(args.out)
    rows = [
        ("generation + environment", verl["timing_s/gen"], local["time/rollout"]),
        ("old log-probs", verl.get("timing_s/old_log_prob", 0.0), 0.0),
        ("credit (advantage)", verl["timing_s/adv"], local["time/credit"]),
        ("actor update", verl["timing_s/update_actor"], local["time/update"]),
        ("iteration", verl["timing_s/step"], local["time/iteration"]),
        (
            "start-up (imports, Ray, workers, model)",
            verl_wall - verl["timing_s/step"],
            local_wall - local["time/iteration"],
        ),
        ("total wall", verl_wall, local_wall),
    ]
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print("| phase | verl --cpu s | train-local s | ratio |")
    print("|---|---:|---:|---:|")
    for name, verl_s, local_s in rows:
        ratio = f"{verl_s / local_s:.2f}" if local_s > 0 else "-"
        print(f"| {name} | {verl_s:.1f} | {local_s:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
