"""Bad input and Ctrl-C, as a user meets them: `verl-agent-ext train-local` with a garbage-emitting model gets a
real SIGINT mid-run, exits with a checkpoint, and the same command resumes and finishes.

Each run is its own process (one run per process, as on the command line).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import torch

from verl_agent_ext.local.checkpoint import STATE_FILE

GARBAGE_RUN = [
    # Uniformly random tokens, 1 group x 2 episodes of 1 step: the cheapest real iteration.
    "--garbage-tokens",
    "--groups-per-iter", "1",
    "--group-size", "2",
    "--max-steps", "1",
    "--response-length", "8",
    "--max-actions", "5",
    "--games-per-type", "1",
    "--num-threads", "2",
]  # fmt: skip


def train_local(out_dir, iterations: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "verl_agent_ext.cli", "train-local", "--out", str(out_dir)]
    return subprocess.Popen(
        [*command, "--iterations", str(iterations), *GARBAGE_RUN],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def recorded_iterations(out_dir) -> list[int]:
    path = out_dir / "metrics.jsonl"
    return [json.loads(line)["iteration"] for line in path.read_text().splitlines()] if path.exists() else []


def test_garbage_model_ctrl_c_leaves_a_checkpoint_that_resumes(tmp_path):
    run = train_local(tmp_path, iterations=2)
    deadline = time.monotonic() + 240
    while not recorded_iterations(tmp_path) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert recorded_iterations(tmp_path) == [1], run.communicate()[0] if run.poll() is not None else "timeout"
    run.send_signal(signal.SIGINT)  # during iteration 2 (its rollout, or its update: then it completes first)
    output, _ = run.communicate(timeout=240)
    assert run.returncode == 130, output
    assert "interrupted" in output
    saved = torch.load(tmp_path / "checkpoint" / STATE_FILE, weights_only=False)["iteration"]
    assert saved in (1, 2)
    assert recorded_iterations(tmp_path) == list(range(1, saved + 1))  # the log matches the checkpoint
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["rollout/invalid_action_rate"] == 1.0  # garbage in: every action invalid, no crash
    assert first["rollout/success_rate"] == 0.0

    resumed = train_local(tmp_path, iterations=2)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resumed from {tmp_path / 'checkpoint'} after iteration {saved}" in output
    assert recorded_iterations(tmp_path) == [1, 2]
