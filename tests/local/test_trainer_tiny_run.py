"""A tiny real training run: ALFWorld (TextWorld engine), SmolLM2-135M, the project's agent loop, SCPO, verl's loss."""

from __future__ import annotations

import json
import math

import pytest
import torch

from verl_agent_ext.local.batch import StepRows
from verl_agent_ext.local.checkpoint import read_config
from verl_agent_ext.local.config import LocalTrainConfig
from verl_agent_ext.local.trainer import LocalTrainer, load_tasks


def tiny_config(out_dir, **overrides) -> LocalTrainConfig:
    """2 iterations of 2 groups x 2 episodes, at most 2 steps each, short responses."""
    values = dict(
        out_dir=str(out_dir),
        iterations=2,
        groups_per_iter=2,
        group_size=2,
        max_steps=2,
        response_length=16,
        max_actions=10,
        games_per_type=1,
        resume=False,
        num_threads=2,
        # No entropy bonus: every gradient comes from the advantages, so a run whose credit never reaches the update
        # leaves the weights unchanged. The default '<action>' prefill gives a mix of valid and invalid steps, hence
        # non-zero step advantages (invalid-action penalty) in each iteration.
        entropy_coeff=0.0,
    )
    values.update(overrides)
    return LocalTrainConfig(**values)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("tiny_run")
    trainer = LocalTrainer(tiny_config(out_dir), log=lambda line: None)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.updates = []  # per update inside train_iteration: (advantages, log-probs before, log-probs after)
    update = trainer.update

    def recording_update(rows, advantages, *args, **kwargs):
        indices = list(range(len(rows)))
        log_probs_before = trainer._log_probs(rows, indices).detach()
        metrics = update(rows, advantages, *args, **kwargs)
        trainer.updates.append((advantages.detach().clone(), log_probs_before, trainer._log_probs(rows, indices)))
        return metrics

    trainer.update = recording_update
    records = trainer.train()
    trainer.update = update
    yield trainer, before, records, out_dir
    trainer.close()


def test_credit_reaches_the_update_inside_the_training_loop(tiny_run):
    """The advantages train_iteration computes are the ones the update follows: rows are trained and the
    advantage-weighted change of the response log-probs is positive (first-order effect of a policy-gradient step)."""
    trainer, _, records, _ = tiny_run
    assert len(trainer.updates) == len(records) == 2
    assert all(record["actor/trained_rows"] > 0 for record in records)
    for advantages, log_probs_before, log_probs_after in trainer.updates:
        assert advantages.abs().sum() > 0
        weighted_change = (advantages * (log_probs_after - log_probs_before)).sum()
        assert weighted_change > 0, weighted_change


def test_resume_restores_the_state_the_run_saved(tiny_run):
    """A new trainer on the same folder with resume on continues from the saved weights and optimizer state."""
    trainer, before, _, out_dir = tiny_run
    resumed = LocalTrainer(tiny_config(out_dir, resume=True), log=lambda line: None)
    try:
        assert resumed.iteration == 2
        trained = dict(trainer.model.named_parameters())
        moved = 0
        for name, parameter in resumed.model.named_parameters():
            torch.testing.assert_close(parameter.detach(), trained[name].detach(), rtol=0, atol=0)
            moved += not torch.equal(parameter.detach(), before[name])
        assert moved > 0  # the restored weights are the trained ones, not a fresh initialisation
        saved_state, resumed_state = trainer.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
        assert saved_state.keys() == resumed_state.keys() and saved_state
        for key, state in saved_state.items():
            torch.testing.assert_close(resumed_state[key]["exp_avg"], state["exp_avg"], rtol=0, atol=0)
    finally:
        resumed.close()


def test_tiny_run_changes_trainable_parameters_only(tiny_run):
    trainer, before, _, _ = tiny_run
    changed = {name for name, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[name])}
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert changed, "no parameter changed"
    assert changed <= trainable  # LoRA: the frozen base never moves
    assert all("lora_" in name for name in trainable)


def test_tiny_run_writes_metrics_plot_and_checkpoint(tiny_run):
    _, _, records, out_dir = tiny_run
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2]
    for record in records:
        assert math.isfinite(record["actor/loss"])
        assert 0.0 <= record["rollout/success_rate"] <= 1.0
        assert 0.0 <= record["rollout/invalid_action_rate"] <= 1.0
        assert record["rollout/episodes"] == 4
        assert 4 <= record["rollout/steps"] <= 8  # 4 episodes of at most 2 steps
        for key in ("time/generation", "time/environment", "time/credit", "time/update"):
            assert record[key] >= 0.0
        assert "credit/gigpo/step_group_size_mean" in record  # SCPO's diagnostics reached the metrics
    assert (out_dir / "learning_curve.png").stat().st_size > 1000
    assert read_config(out_dir / "checkpoint")["iterations"] == 2


def test_update_with_nonzero_advantages_moves_the_policy_toward_them(tiny_run):
    """One update on fixed rows: the log-prob of a positive-advantage response goes up, a negative one's down."""
    trainer, _, _, _ = tiny_run
    tokenizer = trainer.tokenizer
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Pick one: look, inventory."}], add_generation_prompt=True, tokenize=True
    )["input_ids"]
    good = tokenizer.encode("<action>look</action>", add_special_tokens=False)
    bad = tokenizer.encode("<action>inventory</action>", add_special_tokens=False)
    width = max(len(good), len(bad))
    responses = torch.zeros((2, width), dtype=torch.long)
    mask = torch.zeros((2, width), dtype=torch.long)
    for row, ids in enumerate((good, bad)):
        responses[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    rows = StepRows([prompt, prompt], responses, mask, torch.zeros((2, width)), non_tensor_batch={})
    advantages = torch.tensor([[1.0], [-1.0]]) * mask
    before = trainer._log_probs(rows, [0, 1]).sum(-1)
    for _ in range(3):
        metrics = trainer.update(rows, advantages)
    after = trainer._log_probs(rows, [0, 1]).sum(-1)
    assert metrics["actor/trained_rows"] == 2
    assert after[0] > before[0] and after[1] < before[1]


def test_batched_log_probs_equal_unpadded_forward(tiny_run):
    """Left-padded prompts + right-padded responses give each row's own log-probs (temperature-scaled)."""
    trainer, _, _, _ = tiny_run
    tokenizer = trainer.tokenizer
    prompts = [tokenizer.encode(text, add_special_tokens=False) for text in ("Go to the fridge.", "Hi")]
    answers = [tokenizer.encode(text, add_special_tokens=False) for text in ("<action>look</action>", "ok")]
    width = max(map(len, answers))
    responses = torch.zeros((2, width), dtype=torch.long)
    mask = torch.zeros((2, width), dtype=torch.long)
    for row, ids in enumerate(answers):
        responses[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    rows = StepRows(prompts, responses, mask, torch.zeros((2, width)), non_tensor_batch={})
    batched = trainer._log_probs(rows, [0, 1])
    for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        with torch.no_grad():
            logits = trainer.model(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1 : -1]
        logits = logits / trainer.config.temperature
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(answer).unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(batched[row, : len(answer)], expected, atol=1e-4, rtol=1e-4)
        assert torch.all(batched[row, len(answer) :] == 0)


def test_eval_command_on_the_runs_checkpoint(tiny_run, tmp_path):
    """`verl-agent-ext eval --policy RUN` plays held-out games with the run's checkpoint and prints per-type rows."""
    import subprocess
    import sys

    _, _, _, out_dir = tiny_run
    out = tmp_path / "eval.json"
    # its own process: the command ends with os._exit, as train-local does
    command = [sys.executable, "-m", "verl_agent_ext.cli", "eval", "--policy", str(out_dir), "--episodes", "2"]
    result = subprocess.run(
        [*command, "--max-steps", "1", "--num-threads", "2", "--out", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"| task type | {out_dir} |" in result.stdout and "| all | " in result.stdout
    results = json.loads(out.read_text())["results"][str(out_dir)]
    assert results["all"]["episodes"] == 2 and results["all"]["mean_steps"] == 1.0
    assert len(results) == 3  # two task types (round-robin) + all


def test_solvable_within_filters_the_training_games_only():
    config = LocalTrainConfig(games_per_type=10, task_types="pick_and_place_simple", solvable_within=8)
    everything = load_tasks(LocalTrainConfig(games_per_type=10, task_types="pick_and_place_simple"))
    kept = load_tasks(config)
    assert 0 < len(kept) < len(everything) and set(kept) <= set(everything)
    impossible = LocalTrainConfig(games_per_type=1, task_types="pick_and_place_simple", solvable_within=1)
    with pytest.raises(ValueError, match="wins no training task within 1 steps"):
        load_tasks(impossible)
    assert len(load_tasks(impossible, "eval_in_distribution")) == 1  # held-out games are never filtered
