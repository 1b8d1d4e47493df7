"""iStar's implicit PRM in train-local: the PRM's update inside a train() iteration, gradients reaching the PRM
adapter, the frozen flag, resume."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from verl_agent_ext.credit.batch import contiguous_ids
from verl_agent_ext.credit.istar import PRM_STEP_REWARD_KEY, implicit_step_rewards, pairwise_trajectory_loss
from verl_agent_ext.local.batch import StepRows
from verl_agent_ext.local.config import LocalTrainConfig
from verl_agent_ext.local.prm import ImplicitPRM
from verl_agent_ext.local.trainer import LocalTrainer


def istar_config(out_dir, **overrides) -> LocalTrainConfig:
    """1 iteration, the smallest environment settings; PRM lr 1e-3 so a few steps move it visibly."""
    values = dict(
        out_dir=str(out_dir),
        estimator="istar",
        iterations=1,
        groups_per_iter=1,
        group_size=2,
        max_steps=1,
        response_length=8,
        games_per_type=1,
        resume=False,
        num_threads=1,
        verl_overrides=["+algorithm.istar.prm_lr=0.001"],
    )
    values.update(overrides)
    return LocalTrainConfig(**values)


@pytest.fixture(scope="module")
def istar_run(tmp_path_factory):
    """One `train()` iteration whose rollout returns the fixed batch (a won and a lost trajectory: one pair), so
    the PRM scores, takes its update and is checkpointed inside the trainer's loop. Real episodes through the
    rollout are tested in test_trainer_tiny_run.py; here they would only add ~40 s of generation to CI."""
    out_dir = tmp_path_factory.mktemp("istar_run")
    trainer = LocalTrainer(istar_config(out_dir), log=lambda line: None, progress=lambda line: None)
    initial = trainer.prm.flat_weights()
    trainer.rollout = lambda iteration: (fixed_rows(trainer.tokenizer), {})
    records = trainer.train()
    saved = copy.deepcopy(trainer.prm.state_dict())  # later tests step the same optimizer in place
    yield trainer, records, saved, out_dir, initial
    trainer.close()


def fixed_rows(tokenizer) -> StepRows:
    """One group: trajectory w (won) answers "look" twice, trajectory l (lost) answers "inventory" once."""
    prompt = tokenizer.encode("Task: look around. Actions: look, inventory.", add_special_tokens=False)
    answers = [f"<action>{text}</action>" for text in ("look", "look", "inventory")]
    ids = [tokenizer.encode(text, add_special_tokens=False) for text in answers]
    width = max(map(len, ids))
    responses = torch.zeros((3, width), dtype=torch.long)
    mask = torch.zeros((3, width), dtype=torch.long)
    for row, tokens in enumerate(ids):
        responses[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    rewards = torch.zeros((3, width))
    rewards[:2, 0] = 10.0  # the episode return of w on each of its rows (on any response token: summed per row)
    column = lambda *values: np.array(values, dtype=object)  # noqa: E731
    return StepRows(
        prompts=[prompt] * 3,
        responses=responses,
        response_mask=mask,
        token_level_rewards=rewards,
        non_tensor_batch={
            "uid": column("g", "g", "g"),
            "traj_uid": column("w", "w", "l"),
            "step_index": column(0, 1, 0),
            "anchor_obs": column("room", "room", "room"),
            "action_text": column("look", "look", "inventory"),
            "step_reward": column(0.0, 10.0, 0.0),
            "is_action_valid": column(True, True, True),
            "episode_success": column(True, True, False),
        },
    )


def prm_weights(trainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.prm.parameters.items()}


def policy_weights(trainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters() if ".default." in name}


def test_istar_iteration_updates_the_prm_and_logs_it(istar_run):
    trainer, records, _, _, initial = istar_run
    (record,) = records
    assert math.isfinite(record["time/prm"]) and "credit/istar/step_reward_mean" in record
    # the PRM starts as a copy of the policy: before its update its step rewards are exactly 0, so Q_w = Q_l = 0
    # and the pair loss is -log sigmoid(0) = log 2
    assert record["istar/raw_reward_abs_max"] == 0.0
    assert record["istar/loss"] == pytest.approx(math.log(2))
    assert (record["istar/pairs"], record["istar/updated"]) == (1, 1.0) and record["istar/grad_norm"] > 0
    change = float((trainer.prm.flat_weights() - initial).norm())
    assert change > 0 and record["istar/weight_change"] == pytest.approx(change)


def test_prm_update_reaches_the_weights_and_lowers_the_pair_loss(istar_run):
    trainer = istar_run[0]
    rows = fixed_rows(trainer.tokenizer)
    prm_before, policy_before = prm_weights(trainer), policy_weights(trainer)
    losses = []
    old = trainer._log_probs(rows, range(len(rows)))  # the policy adapter does not change here
    for _ in range(3):
        metrics = trainer.prm.score_and_update(rows, old)
        assert metrics["istar/pairs"] == 1 and metrics["istar/updated"] == 1.0 and metrics["istar/grad_norm"] > 0
        assert metrics["istar/weight_change"] > 0
        losses.append(metrics["istar/loss"])
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False)), losses
    assert any(not torch.equal(p, prm_before[name]) for name, p in prm_weights(trainer).items())
    assert all(torch.equal(p, policy_before[name]) for name, p in policy_weights(trainer).items())
    rewards = rows.non_tensor_batch[PRM_STEP_REWARD_KEY]
    assert rewards.shape == (3,) and np.abs(rewards).max() <= 1.0  # batch_max normalisation
    assert rewards[:2].mean() > rewards[2]  # the PRM now prefers the winner's steps


def test_surrogate_gradient_equals_the_pair_loss_gradient(istar_run):
    trainer = istar_run[0]
    prm = trainer.prm
    rows = fixed_rows(trainer.tokenizer)
    everything = range(len(rows))
    old = trainer._log_probs(rows, everything)
    meta = rows.non_tensor_batch
    group, traj = contiguous_ids(meta["uid"]), contiguous_ids(meta["traj_uid"])
    success = meta["episode_success"].astype(bool)
    with prm.active():
        prm.optimizer.zero_grad(set_to_none=True)
        log_prob, _ = trainer._forward(rows, list(everything))
        rewards = implicit_step_rewards(log_prob, old, rows.response_mask, prm.config.beta)
        loss, _ = pairwise_trajectory_loss(rewards, group, traj, success)
        loss.backward()
        direct = {name: p.grad.clone() for name, p in prm.parameters.items() if p.grad is not None}
        prm.optimizer.zero_grad(set_to_none=True)
        leaf = rewards.detach().double().requires_grad_(True)
        pairwise_trajectory_loss(leaf, group, traj, success)[0].backward()
        prm.accumulate_gradient(rows, old, leaf.grad.numpy())
        surrogate = {name: p.grad.clone() for name, p in prm.parameters.items() if p.grad is not None}
        prm.optimizer.zero_grad(set_to_none=True)
    assert direct.keys() == surrogate.keys() and direct
    scale = max(float(g.abs().max()) for g in direct.values())
    for name, grad in direct.items():
        torch.testing.assert_close(surrogate[name], grad, atol=1e-5 * scale, rtol=1e-3)


def test_freeze_prm_scores_without_moving_the_weights(istar_run):
    trainer = istar_run[0]
    config = trainer.prm.config
    trainer.prm.config = dataclasses.replace(config, freeze_prm=True)
    try:
        before = prm_weights(trainer)
        rows = fixed_rows(trainer.tokenizer)
        metrics = trainer.prm.score_and_update(rows, trainer._log_probs(rows, range(len(rows))))
    finally:
        trainer.prm.config = config
    assert metrics["istar/pairs"] == 1 and metrics["istar/updated"] == 0.0 and metrics["istar/loss"] > 0
    assert metrics["istar/weight_change"] == 0.0
    assert all(torch.equal(p, before[name]) for name, p in prm_weights(trainer).items())


def test_resume_restores_prm_weights_and_optimizer(istar_run):
    _, _, saved, out_dir, _ = istar_run
    resumed = LocalTrainer(istar_config(out_dir, iterations=2, resume=True), log=lambda line: None)
    try:
        assert resumed.iteration == 1
        for name, tensor in saved["weights"].items():
            assert torch.equal(resumed.prm.parameters[name].detach(), tensor), name
        state, expected = resumed.prm.optimizer.state_dict(), saved["optimizer"]
        assert state["param_groups"] == expected["param_groups"]
        assert state["state"].keys() == expected["state"].keys()
        for key, values in expected["state"].items():
            for name, value in values.items():
                assert torch.equal(torch.as_tensor(state["state"][key][name]), torch.as_tensor(value))
    finally:
        resumed.close()


def test_prm_needs_a_lora_policy():
    with pytest.raises(ValueError, match="lora_rank > 0"):
        ImplicitPRM(torch.nn.Linear(2, 2), None, None, None, 1, 1e-3)
