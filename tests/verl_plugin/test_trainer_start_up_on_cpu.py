"""Start-up of a run of the recipe in verl's real V1 code: the trainer process and agent-loop workers check the
plugin themselves, a reward model is refused, and verl's trainer uses the published mini-batch in step rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from verl_agent_ext.verl_plugin import step_metadata

CONFIG_DIR = Path(__file__).resolve().parents[2] / "recipe" / "scpo" / "config"


def recipe_config(*overrides: str):
    """The recipe's composed config (verl's ppo_trainer + recipe/scpo/config/scpo_trainer.yaml), resolved."""
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        config = compose("scpo_trainer", overrides=list(overrides))
    OmegaConf.resolve(config)
    return config


def validate(config) -> None:
    """verl's own validate_config as main_ppo calls it (the plugin's wrapper included)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


@pytest.fixture(scope="module")
def config():
    return recipe_config()


def test_reward_model_is_refused_with_the_env_agent_loop():
    config = recipe_config("reward.reward_model.enable=true", "reward.reward_model.model_path=some/reward-model")
    with pytest.raises(ValueError, match="reward.reward_model.enable=True cannot be used with the verl_agent_ext_env"):
        validate(config)


def test_trainer_process_checks_the_hook_when_verl_builds_the_trainer(config, monkeypatch):
    """TaskRunnerV1.run builds `trainer_cls(config=config)` in its own Ray actor: the check runs there too."""
    from verl.trainer.ppo.v1 import PPOTrainerSync

    PPOTrainerSync(config=config)  # a working install passes
    monkeypatch.setitem(step_metadata.hook_status, step_metadata.V1_UTILS_MODULE, "verl 0.11.0 is not supported")
    with pytest.raises(RuntimeError, match="verl 0.11.0 is not supported"):
        PPOTrainerSync(config=config)


def test_agent_loop_worker_that_cannot_import_the_loop_fails_at_creation(config, monkeypatch):
    """verl's AgentLoopWorkerTQ actor, built on a node whose install cannot import the env agent loop."""
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ

    monkeypatch.setitem(sys.modules, "verl_agent_ext.agent.env_agent_loop", None)  # import fails
    worker_class = AgentLoopWorkerTQ.__ray_actor_class__
    with pytest.raises(RuntimeError, match="cannot run the verl_agent_ext_env agent loop"):
        worker_class.__init__(object.__new__(worker_class), config, None)


def test_every_ray_process_of_the_run_imports_the_plugin_loudly(tmp_path):
    """verl swallows a plugin that fails to load; modules in VERL_USE_EXTERNAL_MODULES fail `import verl`."""
    config = recipe_config()
    validate(config)
    env_vars = dict(config.ray_kwargs.ray_init.runtime_env.env_vars)
    assert env_vars["VERL_USE_EXTERNAL_MODULES"] == "verl_agent_ext.verl_plugin"
    broken = tmp_path / "verl_agent_ext"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('simulated broken install on this node')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    # without the setting verl would log the failure at DEBUG level and go on without the plugin
    loud = subprocess.run(
        [sys.executable, "-c", "import verl"], env={**env, **env_vars}, cwd=tmp_path, capture_output=True, text=True
    )
    assert loud.returncode != 0 and "simulated broken install on this node" in loud.stderr


def test_mini_batch_in_step_rows_passes_verl_checks_and_drives_verl_updates(config):
    """The recipe's 256 x 8 = 2,048 step rows per optimizer step (train_batch_size 16 tasks)."""
    from verl.trainer.ppo.v1 import PPOTrainerSync

    assert (config.actor_rollout_ref.actor.ppo_mini_batch_size, config.data.train_batch_size) == (256, 16)
    validate(config)
    assert config.actor_rollout_ref.actor.ppo_mini_batch_size == 256  # restored after verl's checks
    trainer = PPOTrainerSync(config=config)
    trainer.global_steps = 1
    assert trainer._get_required_batch_multiple(dp_size=2) == 2048  # verl pads the step rows to whole mini-batches

    class ActorWorkers:
        def update_actor(self, batch):
            self.extra_info = dict(batch.extra_info)
            return {"metrics": {"mfu": 0.0}}

    from transfer_queue import KVBatchMeta

    trainer.actor_rollout_wg = ActorWorkers()
    trainer._update_actor(KVBatchMeta(keys=[], tags=[], partition_id="train"), metrics={})
    assert trainer.actor_rollout_wg.extra_info["mini_batch_size"] == 2048


def test_mini_batch_above_train_batch_size_is_still_refused_without_the_env_agent_loop():
    from omegaconf import open_dict

    config = recipe_config("algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.agent.default_agent_loop=null")
    with open_dict(config):
        del config["env"]
    with pytest.raises(ValueError, match="must be >= actor.ppo_mini_batch_size"):
        validate(config)
