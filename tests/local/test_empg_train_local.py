"""EMPG in train-local: the old-log-prob pass writes each step row's entropy (checked against a plain unpadded
forward pass of the same model), the estimator receives exactly those entropies, and the iteration completes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from verl_agent_ext.credit import compute_empg, step_batch_from_metadata
from verl_agent_ext.local.config import LocalTrainConfig
from verl_agent_ext.local.trainer import LocalTrainer


def plain_step_entropy(trainer: LocalTrainer, rows) -> np.ndarray:
    """Mean token entropy of each row's response under softmax(logits / T), one unpadded forward per row."""
    values = []
    for row in range(len(rows)):
        prompt = list(rows.prompts[row])
        length = int(rows.response_mask[row].sum())
        response = rows.responses[row, :length].tolist()
        with torch.no_grad():
            logits = trainer.model(torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1].float()
        log_p = torch.log_softmax(logits / trainer.config.temperature, dim=-1)
        values.append(float(-(log_p.exp() * log_p).sum(-1).mean()))
    return np.asarray(values)


@pytest.fixture(scope="module")
def empg_iteration(tmp_path_factory):
    """One iteration (1 task x 2 episodes, <= 2 steps) with the credit step's input captured before the update."""
    config = LocalTrainConfig(
        out_dir=str(tmp_path_factory.mktemp("empg_run")),
        estimator="empg",
        iterations=1,
        groups_per_iter=1,
        group_size=2,
        max_steps=2,
        response_length=12,
        max_actions=10,
        games_per_type=1,
        resume=False,
        num_threads=2,
    )
    trainer = LocalTrainer(config, log=lambda line: None, progress=lambda line: None)
    captured = {}
    credit = trainer.compute_advantages

    def capturing(rows):
        captured["rows"] = rows
        captured["plain_entropy"] = plain_step_entropy(trainer, rows)
        captured["advantages"], metrics = credit(rows)
        return captured["advantages"], metrics

    trainer.compute_advantages = capturing
    records = trainer.train()
    yield trainer, captured, records
    trainer.close()


def test_old_log_prob_pass_writes_the_step_entropy(empg_iteration):
    _, captured, _ = empg_iteration
    step_entropy = captured["rows"].non_tensor_batch["step_entropy"]
    assert step_entropy.shape == (len(captured["rows"]),)
    np.testing.assert_allclose(step_entropy, captured["plain_entropy"], rtol=1e-4, atol=1e-4)
    assert np.all(step_entropy > 0)  # sampling at temperature 0.7 from an untrained model


def test_the_estimator_receives_those_entropies(empg_iteration):
    trainer, captured, _ = empg_iteration
    rows = captured["rows"]
    episode_return = rows.token_level_rewards.sum(-1).double().numpy()
    batch = step_batch_from_metadata(rows.non_tensor_batch, episode_return)
    active = (rows.response_mask.sum(-1) > 0).numpy()  # an empty answer is one masked token: no entropy
    expected = compute_empg(batch, captured["plain_entropy"], trainer.verl_config.algorithm, active)
    per_row = captured["advantages"][:, 0].double().numpy()
    np.testing.assert_allclose(per_row, expected.advantage, rtol=1e-3, atol=1e-4)
    assert abs(per_row.mean()) < 1e-5  # EMPG centres over the batch


def test_iteration_records_entropy_and_empg_diagnostics(empg_iteration):
    _, _, records = empg_iteration
    record = records[-1]
    assert record["iteration"] == 1
    for key in ("actor/entropy", "time/old_log_prob", "credit/empg/step_entropy_mean", "credit/empg/g_max"):
        assert math.isfinite(record[key]), key
    assert math.isfinite(record["actor/loss"])
