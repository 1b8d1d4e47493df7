"""Start-up check: a step-level estimator whose metadata cannot flow fails before any rollout."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from verl_agent_ext.verl_plugin import step_metadata


@pytest.fixture(scope="module")
def ppo_config():
    """verl's own ppo_trainer config, composed with hydra."""
    from pathlib import Path

    import verl.trainer.config

    config_dir = Path(verl.trainer.config.__file__).parent
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(
            "ppo_trainer",
            overrides=[
                "algorithm.adv_estimator=gigpo",
                "actor_rollout_ref.rollout.agent.default_agent_loop=verl_agent_ext_env",
                "+env.name=alfworld",
                "+env.max_steps=50",
            ],
        )


def test_valid_config_passes(ppo_config):
    step_metadata.check_config(ppo_config)
    assert step_metadata.hook_status[step_metadata.V1_TRAINER_MODULE] == "installed"


def test_legacy_trainer_is_refused(ppo_config):
    config = ppo_config.copy()
    config.trainer.use_v1 = False
    with pytest.raises(ValueError, match="trainer.use_v1=True"):
        step_metadata.check_config(config)


def test_missing_hook_is_reported(ppo_config, monkeypatch):
    monkeypatch.setitem(step_metadata.hook_status, step_metadata.V1_TRAINER_MODULE, "verl 0.11.0 is not supported")
    with pytest.raises(RuntimeError, match="verl 0.11.0 is not supported"):
        step_metadata.check_config(ppo_config)


def test_bad_env_section_is_reported(ppo_config):
    config = ppo_config.copy()
    config.env.name = "minecraft"
    with pytest.raises(ValueError, match="valid names: \\['alfworld', 'webshop'\\]"):
        step_metadata.check_config(config)


def test_other_estimators_are_not_checked(ppo_config, monkeypatch):
    monkeypatch.setitem(step_metadata.hook_status, step_metadata.V1_TRAINER_MODULE, "broken")
    config = ppo_config.copy()
    config.algorithm.adv_estimator = "grpo"
    step_metadata.check_config(config)  # GRPO needs no hook


def test_env_agent_loop_needs_the_v1_trainer_whatever_the_estimator(ppo_config):
    config = ppo_config.copy()
    config.algorithm.adv_estimator = "grpo"
    config.trainer.use_v1 = False
    with pytest.raises(ValueError, match="trainer.use_v1=True"):
        step_metadata.check_config(config)


def test_runs_without_the_env_agent_loop_are_not_checked(ppo_config):
    config = ppo_config.copy()
    with open_dict(config):
        del config["env"]
    config.algorithm.adv_estimator = "grpo"
    config.trainer.use_v1 = False
    config.actor_rollout_ref.rollout.agent.default_agent_loop = "single_turn_agent"
    step_metadata.check_config(config)


def test_verl_validate_config_runs_the_check(ppo_config):
    """The function main_ppo calls (imported there after the plugins load) refuses a bad combination by itself:
    it raises our message before any of verl's own checks (which would need GPUs to pass)."""
    from verl.trainer import main_ppo

    assert main_ppo.validate_config.__verl_agent_ext_patch__
    config = ppo_config.copy()
    config.trainer.use_v1 = False
    with pytest.raises(ValueError, match="trainer.use_v1=True"):
        main_ppo.validate_config(config=config, use_reference_policy=False, use_critic=False)


def test_estimator_signature_detection():
    assert step_metadata.estimator_taking_metadata("gigpo") is not None
    assert step_metadata.estimator_taking_metadata("scpo") is not None
    assert step_metadata.estimator_taking_metadata("grpo") is None
    assert step_metadata.estimator_taking_metadata("gdpo") is None  # verl passes it itself


def test_unsupported_verl_version_leaves_verl_alone_and_is_reported(monkeypatch):
    """The version guard of `_patch` itself (not a hand-set status): nothing is patched, the status says why."""
    import types

    monkeypatch.setattr(step_metadata, "verl_version_supported", lambda: (False, "0.11.0"))
    module = types.ModuleType("verl_future.trainer")
    original = object()
    owner = types.SimpleNamespace(method=original)
    monkeypatch.setitem(step_metadata.hook_status, module.__name__, "not imported")
    step_metadata._patch(module, owner, "method", lambda wrapped: "patched")
    assert owner.method is original
    assert "verl 0.11.0 is not supported" in step_metadata.hook_status[module.__name__]
