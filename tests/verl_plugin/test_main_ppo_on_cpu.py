"""verl's own trainer end to end on a CPU: `examples/run_scpo_alfworld.sh --cpu` runs `main_ppo`'s V1 trainer with
Ray workers, the env agent loop, TransferQueue, the step-metadata hook, `scpo`, the cpu platform and the
`transformers` rollout backend. Iteration 1 runs and is checkpointed by verl; a second run resumes from that
checkpoint, validates (verl's `_validate`, as `trainer.val_only=True` does) and runs iteration 2.

Tiny settings: 6 tasks x group 2, one environment step per episode; prompt 256 / response 8 tokens, a large
learning rate so that the update visibly moves the policy. Iteration 1 runs in two sub-steps of 3 tasks
(`parameter_sync_step=2`: verl splits the step, updates the actor after each sub-step and logs metrics per
sub-step, so episode metrics must be over the whole step); each sub-step has 6 step rows, never a multiple of the
4-row mini-batch (verl pads them). Iteration 2 runs in one sub-step, so all its rollouts come from the weights
synced at its start: the second sub-step of a split step samples with weights one update old (verl syncs once per
step), which would hide a failed sync among the expected differences.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from verl_agent_ext.policy.model import hf_folder

ROOT = Path(__file__).resolve().parents[2]
STEP_LINE = re.compile(r"step:(\d+) - (.*)")
NUMPY_REPR = re.compile(r"^np\.\w+\((.*)\)$")
TINY = [
    "data.train_batch_size=6",
    "actor_rollout_ref.rollout.n=2",
    "env.max_steps=1",
    "env.pool.num_envs=12",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
    "data.max_response_length=8",
    "data.max_prompt_length=256",  # CI time: every pass is over padded rows; longer prompts keep their head and tail
    "actor_rollout_ref.actor.optim.lr=1e-4",
    "algorithm.scpo.matcher=exact",  # the encoder is tested elsewhere; keep this run to the trainer's path
    "trainer.save_freq=1",
]


def run_trainer(ckpt: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, dict[int, dict[str, float]]]:
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONPATH": str(ROOT)}
    command = ["bash", str(ROOT / "examples" / "run_scpo_alfworld.sh"), "--cpu", *TINY]
    command += [f"trainer.default_local_dir={ckpt}", *overrides]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=ckpt.parent)
    return result, step_metrics(result.stdout + result.stderr)


def step_metrics(log: str) -> dict[int, dict[str, float]]:
    """verl's console lines `step:N - key:value - key:value ...` as {N: {key: value}}."""
    steps = {}
    for match in STEP_LINE.finditer(log):
        values = {}
        for item in match.group(2).split(" - "):
            key, _, value = item.partition(":")
            value = NUMPY_REPR.sub(r"\1", value.strip())  # verl prints numpy scalars as np.int64(0)
            try:
                values[key.strip()] = float(value)
            except ValueError:
                continue
        steps[int(match.group(1))] = values
    return steps


def actor_weights(step_dir: Path) -> dict[str, torch.Tensor]:
    """Actor state dict saved by verl's FSDP checkpoint manager (world size 1: each DTensor's shard is whole)."""
    import torch.distributed as dist

    path = step_dir / "actor" / "model_world_size_1_rank_0.pt"
    created = not dist.is_initialized()
    if created:  # unpickling DTensors rebuilds their device mesh, which needs a process group
        dist.init_process_group("gloo", rank=0, world_size=1, init_method="tcp://127.0.0.1:29531")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        return {k: (v.to_local() if hasattr(v, "to_local") else v).clone() for k, v in state.items()}
    finally:
        if created:
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Iteration 1 (checkpointed), then a resumed run that validates 2 episodes and runs iteration 2."""
    ckpt = tmp_path_factory.mktemp("verl_cpu") / "ckpt"
    first, first_steps = run_trainer(ckpt, "trainer.total_training_steps=1", "+trainer.v1.sync.parameter_sync_step=2")
    assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
    validate = ["trainer.val_before_train=True", "data.val_max_samples=2", "actor_rollout_ref.rollout.val_kwargs.n=1"]
    resumed, resumed_steps = run_trainer(ckpt, "trainer.total_training_steps=2", "trainer.save_freq=-1", *validate)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-6000:]
    return ckpt, first_steps, resumed_steps, resumed.stdout + resumed.stderr


def test_two_iterations_of_verls_trainer_with_scpo(runs):
    _, first_steps, resumed_steps, _ = runs
    assert sorted(first_steps) == [1]
    for metrics in (first_steps[1], resumed_steps[2]):
        assert "actor/pg_loss" in metrics and torch.isfinite(torch.tensor(metrics["actor/pg_loss"]))
        assert any(key.startswith("credit/scpo/") for key in metrics), sorted(metrics)
        assert metrics["env/num_episodes"] == 12  # 6 tasks x group 2 (over both sub-steps), padding rows excluded
        assert metrics["env/episode_length/mean"] == 1
        # rollout outputs carry the weight version of the last sync: never stale in a synchronous run
        assert metrics["training/off_policy/trajectory_staleness/max"] == 0


def test_the_update_changes_the_actor_and_the_rollout_server_serves_the_new_weights(runs):
    ckpt, _, resumed_steps, _ = runs
    initial = load_file(Path(hf_folder()) / "model.safetensors")
    after_one = actor_weights(ckpt / "global_step_1")
    changed = [name for name, value in after_one.items() if name in initial and not torch.equal(value, initial[name])]
    assert len(changed) > len(initial) // 2, "the actor update left most weights unchanged"
    # Iteration 2's rollouts were sampled by the server after the weight sync: their log-probs equal the actor's
    # recomputed ones (the update of iteration 1 would show here if the server kept the initial weights).
    assert resumed_steps[2]["training/rollout_probs_diff_max"] < 0.05, resumed_steps[2]


def test_checkpoint_of_iteration_1_resumes_at_iteration_2(runs):
    _, _, resumed_steps, log = runs
    assert "Resuming from" in log and "global_step_1" in log
    trained = [step for step, metrics in resumed_steps.items() if "actor/pg_loss" in metrics]
    assert trained == [2]


def test_validation_reports_success_as_acc_per_task_type(runs):
    """verl zero-fills only `acc` for sessions that raised: the plugin reports acc = success per episode."""
    _, _, resumed_steps, _ = runs
    validation = resumed_steps[1]  # logged at the resumed step, before iteration 2
    acc = {key: value for key, value in validation.items() if key.startswith("val-core/") and "/acc/mean@1" in key}
    assert acc and all(key.startswith("val-core/alfworld/") for key in acc), sorted(validation)
    for key, value in acc.items():
        assert value == validation[key.replace("val-core/", "val-aux/").replace("/acc/", "/success/")]
        assert validation[key.replace("val-core/", "val-aux/").replace("/acc/", "/episode_length/")] == 1
