"""`empg` as a verl estimator (registered on `import verl`: test_entry_point.py): fed by non_tensor_batch, refused
at start-up where verl computes no entropy, and launched by examples/run_empg_alfworld.sh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_recipe_and_examples_on_cpu import composed, recipe_main, script_overrides

from verl_agent_ext.credit import EMPGConfig, StepBatch, compute_empg
from verl_agent_ext.verl_plugin import step_metadata


def verl_batch():
    """Two trajectories of one group on verl-shaped tensors: a wins (return 10) in 2 steps, b fails in 2."""
    metadata = {
        "uid": np.asarray(["g"] * 4, dtype=object),
        "traj_uid": np.asarray(["a", "a", "b", "b"], dtype=object),
        "step_index": np.asarray([0, 1, 0, 1], dtype=object),
        "anchor_obs": np.asarray(["room", "fridge", "room", "sink"], dtype=object),
        "action_text": np.asarray(["go to fridge 1", "open fridge 1", "go to sink 1", "look"], dtype=object),
        "step_reward": np.asarray([0.0, 10.0, 0.0, 0.0], dtype=object),
        "is_action_valid": np.asarray([True] * 4, dtype=object),
        "episode_success": np.asarray([True, True, False, False], dtype=object),
        "step_entropy": np.asarray([0.2, 0.1, 1.3, 0.7], dtype=object),
    }
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.float32)
    rewards = torch.zeros_like(mask)
    rewards[0, 1] = rewards[1, 2] = 10.0
    return rewards, mask, metadata


def test_registered_function_matches_the_credit_layer():
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    rewards, mask, metadata = verl_batch()
    config = OmegaConf.create({"gamma": 0.95, "empg": {"zeta": 0.05}})
    advantages, returns = get_adv_estimator_fn("empg")(
        token_level_rewards=rewards, response_mask=mask, index=metadata["uid"], config=config, non_tensor_batch=metadata
    )
    batch = StepBatch.from_columns(
        uid=metadata["uid"], traj_uid=metadata["traj_uid"], step_index=[0, 1, 0, 1], step_reward=[0, 10, 0, 0]
    )
    expected = compute_empg(batch, np.asarray([0.2, 0.1, 1.3, 0.7]), EMPGConfig(zeta=0.05))
    torch.testing.assert_close(advantages, torch.tensor(expected.advantage, dtype=torch.float32)[:, None] * mask)
    assert returns.shape == mask.shape
    assert advantages[0, 0] > 0 > advantages[2, 0]


def test_missing_step_entropy_names_the_key_and_its_sources():
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    rewards, mask, metadata = verl_batch()
    del metadata["step_entropy"]
    with pytest.raises(ValueError, match="needs non_tensor_batch key 'step_entropy'.*old-log-prob pass"):
        get_adv_estimator_fn("empg")(rewards, mask, config=None, non_tensor_batch=metadata)


@pytest.fixture(scope="module")
def empg_config():
    from pathlib import Path

    import verl.trainer.config

    with initialize_config_dir(config_dir=str(Path(verl.trainer.config.__file__).parent), version_base=None):
        return compose(
            "ppo_trainer",
            overrides=[
                "algorithm.adv_estimator=empg",
                "actor_rollout_ref.rollout.agent.default_agent_loop=verl_agent_ext_env",
                "+env.name=alfworld",
            ],
        )


def test_startup_check_refuses_the_bypass_mode_naming_the_setting(empg_config):
    step_metadata.check_config(empg_config)  # decoupled mode (verl's default): entropy is computed
    config = empg_config.copy()
    config.algorithm.rollout_correction.bypass_mode = True
    with pytest.raises(ValueError, match="Set algorithm.rollout_correction.bypass_mode=False"):
        step_metadata.check_config(config)
    config.algorithm.adv_estimator = "gigpo"  # reads no entropy: the bypass mode is fine
    step_metadata.check_config(config)


def test_example_script_composes_validates_and_passes_overrides():
    overrides = script_overrides("run_empg_alfworld.sh", "algorithm.empg.base=gigpo")
    config = composed(overrides)
    notes = recipe_main().check(config)
    assert notes[0].startswith("estimator=empg env=alfworld")
    assert dict(config.algorithm.empg) == {"base": "gigpo", "k": 1.0, "k_next": 1.0, "zeta": 0.1, "epsilon": 1e-8}
    with pytest.raises(ValueError, match="bypass_mode=False"):
        recipe_main().check(composed([*overrides, "algorithm.rollout_correction.bypass_mode=true"]))


def test_recipe_empg_defaults_are_the_estimator_defaults():
    defaults = EMPGConfig()
    section = composed([]).algorithm.empg
    assert dict(section) == {key: getattr(defaults, key) for key in section}
