"""Checkpoint round trip: trainable tensors, optimizer state and every RNG stream come back exactly, and an
interrupt at any point of a save leaves a complete checkpoint to resume from."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from verl_agent_ext.local.checkpoint import find_checkpoint, load_checkpoint, read_config, save_checkpoint


@dataclass
class _Config:
    name: str = "tiny"

    def to_dict(self) -> dict:
        return {"name": self.name}


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)  # a frozen part, as the LoRA base
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return model, optimizer


def _train_step(model, optimizer) -> None:
    loss = model(torch.randn(5, 4)).pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    model, optimizer = _model_and_optimizer(seed=0)
    _train_step(model, optimizer)
    save_checkpoint(tmp_path / "checkpoint", model, optimizer, iteration=3, config=_Config())
    expected_draws = _draws()
    _train_step(model, optimizer)
    expected_weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    expected_moments = [state["exp_avg"].clone() for state in optimizer.state.values()]

    fresh, fresh_optimizer = _model_and_optimizer(seed=1)  # other weights, empty optimizer state
    fresh[0].weight.data.copy_(model[0].weight)  # the frozen base comes from the model name, not the checkpoint
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    assert load_checkpoint(tmp_path / "checkpoint", fresh, fresh_optimizer) == 3
    assert _draws() == expected_draws  # python, numpy and torch streams continue where the save left them
    _train_step(fresh, fresh_optimizer)  # the same step as above: same batch (torch RNG), same Adam moments
    for name, p in fresh.named_parameters():
        torch.testing.assert_close(p.detach(), expected_weights[name], rtol=0, atol=0)
    for state, moment in zip(fresh_optimizer.state.values(), expected_moments, strict=True):
        torch.testing.assert_close(state["exp_avg"], moment, rtol=0, atol=0)
    assert read_config(tmp_path / "checkpoint") == {"name": "tiny"}


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    model, optimizer = _model_and_optimizer(seed=0)
    save_checkpoint(tmp_path / "checkpoint", model, optimizer, iteration=1, config=_Config())
    other = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="does not fit this model"):
        load_checkpoint(tmp_path / "checkpoint", other, torch.optim.AdamW(other.parameters()))


@pytest.mark.parametrize("failing_rename", [0, 1], ids=["old-aside", "new-into-place"])
def test_interrupt_between_the_renames_keeps_a_complete_checkpoint(tmp_path, monkeypatch, failing_rename):
    """An interrupt (here a KeyboardInterrupt raised by a rename) at either rename of a save: the previous
    checkpoint is still found and loads."""
    model, optimizer = _model_and_optimizer(seed=0)
    save_checkpoint(tmp_path / "checkpoint", model, optimizer, iteration=1, config=_Config())
    _train_step(model, optimizer)

    real_rename, calls = Path.rename, []

    def rename(self, target):
        calls.append(self)
        if len(calls) - 1 == failing_rename:
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "checkpoint", model, optimizer, iteration=2, config=_Config())
    monkeypatch.setattr(Path, "rename", real_rename)

    found = find_checkpoint(tmp_path / "checkpoint")
    assert found is not None
    assert load_checkpoint(found, *_model_and_optimizer(seed=0)) == 1
    # The next save after the interrupt succeeds and replaces everything.
    save_checkpoint(tmp_path / "checkpoint", model, optimizer, iteration=2, config=_Config())
    assert find_checkpoint(tmp_path / "checkpoint") == tmp_path / "checkpoint"
    assert not (tmp_path / "checkpoint.old").exists()


def test_no_checkpoint_is_none(tmp_path):
    assert find_checkpoint(tmp_path / "checkpoint") is None


def _saved_run(tmp_path: Path, **settings) -> Path:
    from verl_agent_ext.local.config import LocalTrainConfig

    model, optimizer = _model_and_optimizer(0)
    save_checkpoint(tmp_path / "checkpoint", model, optimizer, 2, LocalTrainConfig(**settings))
    return tmp_path / "checkpoint"


@pytest.mark.parametrize("change", [{"estimator": "gigpo"}, {"lora_rank": 4}, {"model": "other"}, {"env": "webshop"}])
def test_resume_refuses_a_different_run_unless_forced(tmp_path, change):  # issue 25 finding 6
    from verl_agent_ext.local.checkpoint import check_resumable
    from verl_agent_ext.local.config import LocalTrainConfig

    saved = _saved_run(tmp_path, estimator="scpo")
    check_resumable(saved, LocalTrainConfig(estimator="scpo", iterations=9))  # more iterations: same run
    key = next(iter(change))
    with pytest.raises(ValueError, match=rf"holds a different run: {key}=.*--no-resume.*--force-resume"):
        check_resumable(saved, LocalTrainConfig(**{"estimator": "scpo", **change}))
    check_resumable(saved, LocalTrainConfig(**{"estimator": "scpo", **change}, force_resume=True))


def test_corrupt_state_files_are_named(tmp_path):  # issue 25 finding 6
    from verl_agent_ext.local.checkpoint import check_resumable
    from verl_agent_ext.local.config import LocalTrainConfig
    from verl_agent_ext.local.metrics import MetricsLog

    saved = _saved_run(tmp_path)
    state = saved / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    model, optimizer = _model_and_optimizer(1)
    with pytest.raises(ValueError, match=r"state.pt is not a readable checkpoint.*--no-resume"):
        load_checkpoint(saved, model, optimizer)
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json is not readable"):
        check_resumable(saved, LocalTrainConfig())
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 1}\n{"iteration": 2\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2 is not JSON"):
        MetricsLog(tmp_path / "metrics.jsonl").read()


def test_an_adapter_of_another_shape_is_a_clear_error(tmp_path):  # issue 25 finding 6
    saved = _saved_run(tmp_path)
    torch.manual_seed(0)
    other = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    optimizer = torch.optim.AdamW(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"does not fit this model: 0.bias is \(3,\), the model's \(5,\)"):
        load_checkpoint(saved, other, optimizer)
