"""Bad input and Ctrl-C: a garbage-emitting model finishes its run; SIGINT leaves a checkpoint that resumes."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from verl_agent_ext.local.checkpoint import STATE_FILE
from verl_agent_ext.local.config import LocalTrainConfig
from verl_agent_ext.local.trainer import Interrupted, LocalTrainer


def garbage_config(out_dir) -> LocalTrainConfig:
    """Uniformly random tokens, 1 group x 2 episodes of 1 step: the cheapest real iteration."""
    return LocalTrainConfig(
        out_dir=str(out_dir),
        iterations=3,  # never reached: both runs stop on Ctrl-C
        groups_per_iter=1,
        group_size=2,
        max_steps=1,
        response_length=8,
        max_actions=5,
        games_per_type=1,
        garbage_tokens=True,
        num_threads=2,
    )


def saved_iteration(out_dir) -> int:
    return torch.load(out_dir / "checkpoint" / STATE_FILE, weights_only=False)["iteration"]


def recorded_iterations(out_dir) -> list[int]:
    return [json.loads(line)["iteration"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def send_sigint_when(predicate):
    """A wrapper that delivers a real SIGINT to this process the first time `predicate()` holds."""
    sent = []

    def maybe_interrupt():
        if predicate() and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    return maybe_interrupt


def test_garbage_model_runs_then_ctrl_c_checkpoints_and_resumes(tmp_path):
    quiet = dict(log=lambda line: None)
    # Run 1: iteration 1 completes; Ctrl-C arrives during iteration 2's rollout -> abandoned, checkpoint of 1.
    trainer = LocalTrainer(garbage_config(tmp_path), **quiet)
    generate = trainer.server.generate
    interrupt = send_sigint_when(lambda: trainer.iteration == 1)

    async def generate_with_interrupt(*args, **kwargs):
        interrupt()
        return await generate(*args, **kwargs)

    trainer.server.generate = generate_with_interrupt
    with pytest.raises(Interrupted, match="during iteration 2"):
        trainer.train()
    trainer.close()
    assert saved_iteration(tmp_path) == 1
    assert recorded_iterations(tmp_path) == [1]
    first = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert first["rollout/invalid_action_rate"] == 1.0  # garbage in: every action invalid, no crash
    assert first["rollout/success_rate"] == 0.0

    # Run 2 resumes at iteration 2; Ctrl-C right after its optimizer step -> the iteration completes and saves.
    trainer = LocalTrainer(garbage_config(tmp_path), **quiet)
    assert trainer.iteration == 1
    step = trainer.optimizer.step
    interrupt = send_sigint_when(lambda: True)

    def step_with_interrupt(*args, **kwargs):
        result = step(*args, **kwargs)
        interrupt()
        return result

    trainer.optimizer.step = step_with_interrupt
    with pytest.raises(Interrupted):
        trainer.train()
    trainer.close()
    assert saved_iteration(tmp_path) == 2
    assert recorded_iterations(tmp_path) == [1, 2]

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was restored
