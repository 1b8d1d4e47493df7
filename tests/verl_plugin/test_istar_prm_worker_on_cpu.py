"""iStar's PRM worker group in verl's V1 trainer, piece by piece with verl's real classes on CPU.

- the surrogate loss in verl's loss-function format (nested log-probs, `no_padding_2_padding`);
- the worker's `TrainingWorkerConfig` built from the real recipe config;
- the trainer patch: order inside the step-metadata hook, and the driver step against a real TransferQueue,
  with the worker group replaced by a recorder that writes known log-probs (a real TrainingWorker needs verl's
  FSDP engine on a device: see docs/istar.md, "verl: what is tested").
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from test_step_metadata_hook_on_cpu import algorithm_config, put_rollouts

from verl_agent_ext.credit import IStarConfig, StepBatch, compute_istar
from verl_agent_ext.verl_plugin import istar_prm


def nested(rows: list[list[float]]) -> torch.Tensor:
    return torch.nested.as_nested_tensor([torch.tensor(row) for row in rows], layout=torch.jagged)


def test_surrogate_loss_weights_each_response_token_log_prob():
    from verl.utils import tensordict_utils as tu

    # two rows: prompts of 2 and 3 tokens, responses of 3 and 1 tokens
    prompts, responses = nested([[1.0, 2.0], [1.0, 2.0, 3.0]]), nested([[4.0, 5.0, 6.0], [7.0]])
    weights = nested([[0.5, 0.5, 0.5], [-2.0]])
    data = TensorDict(
        {
            "prompts": prompts.long(),
            "responses": responses.long(),
            "response_mask": nested([[1.0, 1.0, 1.0], [1.0]]),
            istar_prm.PRM_TOKEN_WEIGHT: weights,
        },
        batch_size=2,
    )
    tu.assign_non_tensor(data, dp_size=2)
    # model log-probs over prompt + response; position t predicts token t + 1 (verl's left shift)
    values = torch.arange(9, dtype=torch.float32).neg().requires_grad_(True)
    log_probs = torch.nested.nested_tensor_from_jagged(values, offsets=torch.tensor([0, 5, 9]))
    loss, metrics = istar_prm.prm_surrogate_loss(IStarConfig(), {"log_probs": log_probs}, data)
    # row 0 response log-probs sit at positions 1, 2, 3; row 1's at position 5 + 2 = 7
    expected = 0.5 * (-1 - 2 - 3) + (-2.0) * (-7)
    assert metrics["istar/surrogate"] == pytest.approx(expected)
    assert float(loss) == pytest.approx(2 * expected)
    loss.backward()
    grad = torch.zeros(9)
    grad[[1, 2, 3]] = 2 * 0.5
    grad[7] = 2 * -2.0
    torch.testing.assert_close(values.grad, grad)


@pytest.fixture(scope="module")
def local_model_path() -> str:
    from verl_agent_ext.local.model import DEFAULT_MODEL, cache_dir, load_policy, resolve_model

    folder = cache_dir() / resolve_model(DEFAULT_MODEL)[1].removesuffix(".gguf")
    if not (folder / "config.json").is_file():
        load_policy(DEFAULT_MODEL)  # de-quantises once into the cache
    return str(folder)


def recipe_config(*overrides: str):
    from hydra import compose, initialize_config_dir
    from test_recipe_and_examples_on_cpu import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("scpo_trainer", overrides=["algorithm.adv_estimator=istar", *overrides])


def test_worker_config_takes_the_actor_settings_and_the_prm_overrides(local_model_path):
    config = recipe_config(
        f"actor_rollout_ref.model.path={local_model_path}",
        "algorithm.istar.prm_lr=2e-6",
        "algorithm.istar.prm_grad_clip=5.0",
    )
    worker = istar_prm.prm_worker_config(config)
    assert worker.model_type == "language_model"
    assert worker.model_config.path == local_model_path
    assert (worker.optimizer_config.lr, worker.optimizer_config.clip_grad) == (2e-6, 5.0)
    assert worker.optimizer_config.weight_decay == 0.0
    assert worker.engine_config.micro_batch_size_per_gpu == config.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu
    assert worker.engine_config.infer_micro_batch_size_per_gpu == 32
    # the actor's own config is untouched
    assert config.actor_rollout_ref.actor.optim.lr == 1e-6


def test_patch_sits_inside_the_step_metadata_hook():
    from verl.trainer.ppo.v1 import trainer_base

    assert istar_prm.patch_status == "installed"
    trainer = trainer_base.PPOTrainer
    assert trainer._compute_advantage.__verl_agent_ext_patch__  # the hook, outermost
    assert getattr(trainer._compute_advantage.__wrapped__, istar_prm.PATCH_MARK)  # the PRM, inside it
    assert getattr(trainer._setup, istar_prm.PATCH_MARK) and getattr(trainer._save_checkpoint, istar_prm.PATCH_MARK)
    istar_prm.check_config(recipe_config())  # no error


class RecordingPRMGroup:
    """Stands in for the PRM worker group: writes log pi_phi = a constant per row, records the update call."""

    def __init__(self, tq, prm_value: dict[str, float]):
        self.tq, self.prm_value, self.trained = tq, prm_value, []

    def infer_batch(self, batch):
        data = self.tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["prompts"])
        prompt_lens = data["prompts"].offsets().diff().tolist()
        lens = self.tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["response_mask"])
        response_lens = lens["response_mask"].offsets().diff().tolist()
        rows = [
            torch.full((p + r,), self.prm_value[key.rsplit("_", 1)[0]])
            for key, p, r in zip(batch.keys, prompt_lens, response_lens, strict=True)
        ]
        fields = TensorDict({"log_probs": torch.nested.as_nested_tensor(rows, layout=torch.jagged)}, len(rows))
        self.tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
        return SimpleNamespace(futures=[])

    def train_mini_batch(self, batch):
        weights = self.tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=[istar_prm.PRM_TOKEN_WEIGHT]
        )
        self.trained.append((dict(batch.extra_info), weights[istar_prm.PRM_TOKEN_WEIGHT]))
        return SimpleNamespace(get=lambda: {"metrics": {"grad_norm": [0.5], "loss": [0.1]}})


PRM_VALUE = {"g0_0": -0.5, "g0_1": -1.5, "g0_2": -1.0, "g1_0": -0.8, "g1_1": -1.2}
"""log pi_phi per token of each session's rows (old log-probs are -1 everywhere): winners g0_0, g1_0 score higher."""


def run_istar_advantage(tq, store_sessions, istar: dict):
    """The stored rows with old log-probs, through verl's patched PPOTrainer._compute_advantage with a recorder."""
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1 import PPOTrainerSync
    from verl.workers.utils.padding import response_to_nested

    keys = put_rollouts(store_sessions)
    masks = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["response_mask"])["response_mask"]
    old = torch.full((len(keys), int(masks.offsets().diff().max())), -1.0)
    fields = TensorDict({"old_log_probs": response_to_nested(old, masks)}, len(keys))
    tq.kv_batch_put(keys=keys, partition_id="train", fields=fields)
    trainer = object.__new__(PPOTrainerSync)
    trainer.config = algorithm_config("istar")
    trainer.config.actor_rollout_ref.rollout.temperature = 1.0
    trainer.config.algorithm.istar = istar
    trainer.istar_prm_wg = RecordingPRMGroup(tq, PRM_VALUE)
    metrics: dict[str, float] = {}
    trainer._compute_advantage(KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train"), metrics)
    return trainer, keys, metrics


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_driver_scores_updates_and_feeds_the_estimator(transfer_queue, store_sessions):
    trainer, keys, metrics = run_istar_advantage(transfer_queue, store_sessions, {"step_advantage_w": 1.0})
    sessions = [key.rsplit("_", 1)[0] for key in keys]
    # By hand. Session s of task g, step t has 3 + t + s response tokens; log pi_old = -1 on each, so each token
    # adds PRM_VALUE + 1 and r = 0.05 * (PRM_VALUE + 1) * tokens:
    #   g0_0 (won):  0.025 * (3, 4, 5) = 0.075, 0.1, 0.125    Q = 0.1
    #   g0_1 (lost): -0.025 * (4, 5)   = -0.1, -0.125         Q = -0.1125
    #   g0_2 (lost): 0 * 5             = 0                    Q = 0
    #   g1_0 (won):  0.01 * (3, 4)     = 0.03, 0.04           Q = 0.035
    #   g1_1 (lost): -0.01 * (4, 5)    = -0.04, -0.05         Q = -0.045
    raw = {"g0_0": [0.075, 0.1, 0.125], "g0_1": [-0.1, -0.125], "g0_2": [0.0], "g1_0": [0.03, 0.04]}
    raw["g1_1"] = [-0.04, -0.05]
    # pairs (won, lost) within a task: margins Q_w - Q_l = 0.2125, 0.1 (task g0) and 0.08 (task g1)
    margins = {("g0_0", "g0_1"): 0.2125, ("g0_0", "g0_2"): 0.1, ("g1_0", "g1_1"): 0.08}
    pair_loss = sum(softplus(-m) for m in margins.values()) / 3  # mean of -log sigmoid(margin) = 0.63029...
    # c_i = dL/dr_i = sum over the trajectory's pairs of -+sigmoid(-margin) / 3 pairs / steps of the trajectory
    c = {session: 0.0 for session in raw}
    for (won, lost), m in margins.items():
        c[won] -= sigmoid(-m) / 3 / len(raw[won])
        c[lost] += sigmoid(-m) / 3 / len(raw[lost])
    assert metrics["istar/pairs"] == 3 and metrics["istar/updated"] == 1.0
    assert metrics["istar/raw_reward_abs_max"] == pytest.approx(0.125)
    assert metrics["istar/loss"] == pytest.approx(pair_loss, rel=1e-6)  # r is summed from float32 log-probs
    assert pair_loss == pytest.approx(0.6302916, abs=1e-7)
    # the worker's own metrics keep their names; its "loss" is the surrogate's value, not the pair loss
    assert (metrics["istar/grad_norm"], metrics["istar/surrogate_loss"]) == (0.5, 0.1)
    ((extra_info, token_weight),) = trainer.istar_prm_wg.trained
    assert (extra_info["mini_batch_size"], extra_info["epochs"]) == (len(keys), 1)
    for session, weight in zip(sessions, token_weight.unbind(), strict=True):
        torch.testing.assert_close(weight, torch.full_like(weight, 0.05 * c[session]))
    rows = {session: iter(values) for session, values in raw.items()}
    hand_raw = np.asarray([next(rows[session]) for session in sessions])
    uid = np.asarray([s.split("_")[0] for s in sessions], dtype=object)
    success = np.asarray([s in ("g0_0", "g1_0") for s in sessions])
    # the estimator received the normalised step rewards
    stored = transfer_queue.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])
    batch = StepBatch.from_columns(
        uid=uid,
        traj_uid=sessions,
        step_index=[int(key.rsplit("_", 1)[1]) for key in keys],
        step_reward=np.zeros(len(keys)),
        episode_return=np.where(success, 10.0, 0.0),
        is_action_valid=[key != "g0_1_1" for key in keys],
    )
    normalised = hand_raw / (0.125 + 1e-6)  # batch_max: the largest |r| is 0.125
    direct = compute_istar(batch, trainer.config.algorithm, prm_step_reward=normalised)
    for row, advantage in enumerate(stored["advantages"].unbind()):
        torch.testing.assert_close(advantage, torch.full_like(advantage, float(direct.advantage[row])))
    transfer_queue.kv_clear(keys=keys, partition_id="train")


def test_frozen_prm_scores_without_training(transfer_queue, store_sessions):
    trainer, keys, metrics = run_istar_advantage(transfer_queue, store_sessions, {"freeze_prm": True})
    assert metrics["istar/updated"] == 0.0 and metrics["istar/pairs"] == 3 and not trainer.istar_prm_wg.trained
    transfer_queue.kv_clear(keys=keys, partition_id="train")


@pytest.mark.parametrize("script", ["run_istar_webshop.sh", "run_istar_alfworld.sh"])
def test_istar_scripts_compose_validate_and_carry_the_released_settings(script):
    from test_recipe_and_examples_on_cpu import composed, recipe_main, script_overrides

    overrides = script_overrides(script, "trainer.total_epochs=7")
    config = composed(overrides)
    notes = recipe_main().check(config)
    assert notes[0].startswith("estimator=istar")
    istar = config.algorithm.istar
    assert (istar.beta, istar.normalize, istar.prm_lr, istar.prm_grad_clip) == (0.05, "batch_max", 1e-6, 10.0)
    assert (istar.step_advantage_w, istar.freeze_prm, istar.step_baseline) == (1.0, False, "all_steps")
    assert (config.data.train_batch_size, config.actor_rollout_ref.rollout.n) == (16, 8)
    if script == "run_istar_webshop.sh":
        actor = config.actor_rollout_ref.actor
        assert (config.env.name, config.env.max_steps) == ("webshop", 10)
        assert (actor.optim.lr, actor.use_kl_loss) == (5e-7, False)
        assert config.actor_rollout_ref.model.path == "Qwen/Qwen2.5-7B-Instruct"


def test_recipe_istar_section_equals_the_estimator_defaults():
    import dataclasses

    from test_recipe_and_examples_on_cpu import composed

    defaults = {f.name: f.default for f in dataclasses.fields(IStarConfig)}
    assert dict(composed([]).algorithm.istar) == defaults
