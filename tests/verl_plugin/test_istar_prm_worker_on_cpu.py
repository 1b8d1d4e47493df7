"""iStar's PRM worker group in verl's V1 trainer, piece by piece with verl's real classes on CPU.

- the surrogate loss in verl's loss-function format (nested log-probs, `no_padding_2_padding`);
- the worker's `TrainingWorkerConfig` built from the real recipe config;
- the trainer patch: order inside the step-metadata hook (the driver step against a real TransferQueue is in
  test_step_metadata_hook_on_cpu.py, which already starts Ray; docs/istar.md says what else is tested).
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from verl_agent_ext.credit import IStarConfig
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
    from verl_agent_ext.policy.model import DEFAULT_MODEL, cache_dir, load_policy, resolve_model

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
    # a second full model beside the actor: in host memory except while it scores or trains (prm_offload default)
    assert worker.engine_config.param_offload and worker.engine_config.optimizer_offload
    assert not config.actor_rollout_ref.actor.fsdp_config.param_offload
    resident = istar_prm.prm_worker_config(
        recipe_config(f"actor_rollout_ref.model.path={local_model_path}", "algorithm.istar.prm_offload=false")
    )
    assert not (resident.engine_config.param_offload or resident.engine_config.optimizer_offload)


def test_patch_sits_inside_the_step_metadata_hook():
    from verl.trainer.ppo.v1 import trainer_base

    assert istar_prm.patch_status == "installed"
    trainer = trainer_base.PPOTrainer
    assert trainer._compute_advantage.__verl_agent_ext_patch__  # the hook, outermost
    assert getattr(trainer._compute_advantage.__wrapped__, istar_prm.PATCH_MARK)  # the PRM, inside it
    assert getattr(trainer._setup, istar_prm.PATCH_MARK) and getattr(trainer._save_checkpoint, istar_prm.PATCH_MARK)
    istar_prm.check_config(recipe_config())  # no error


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

    # on_nonfinite is left out of the section on purpose: unset, it follows algorithm.gigpo.on_nonfinite
    defaults = {f.name: f.default for f in dataclasses.fields(IStarConfig) if f.name != "on_nonfinite"}
    config = composed([])
    assert dict(config.algorithm.istar) == defaults
    assert config.algorithm.gigpo.on_nonfinite == IStarConfig.on_nonfinite
