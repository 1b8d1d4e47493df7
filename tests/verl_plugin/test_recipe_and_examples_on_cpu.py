"""recipe/scpo and examples/run_*.sh: each script's full command line composes into a valid verl configuration
with the plugin loaded, carries the published settings, and passes extra overrides through."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from verl_agent_ext.agent.config import EnvLoopConfig
from verl_agent_ext.credit import GiGPOConfig, SCPOConfig
from verl_agent_ext.credit.config import SSPOConfig
from verl_agent_ext.envs.alfworld.prompt import COMPACT_TEMPLATE, PromptConfig
from verl_agent_ext.verl_plugin.rollout_registry import ROLLOUT_NAME

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "recipe" / "scpo" / "config"
SCRIPTS = {
    "run_scpo_alfworld.sh": ("scpo", "alfworld"),
    "run_gigpo_alfworld.sh": ("gigpo", "alfworld"),
    "run_grpo_alfworld.sh": ("grpo", "alfworld"),
    "run_scpo_webshop.sh": ("scpo", "webshop"),
    "run_3spo_alfworld.sh": ("sspo", "alfworld"),
    "run_3spo_webshop.sh": ("sspo", "webshop"),
}


def recipe_main():
    spec = importlib.util.spec_from_file_location("vae_recipe_main_scpo", ROOT / "recipe" / "scpo" / "main_scpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_overrides(script: str, *extra: str) -> list[str]:
    """The hydra overrides the script passes to main_scpo.py (printed by the launcher, not run)."""
    env = {**os.environ, "VAE_PRINT_ONLY": "1", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / script), *extra], capture_output=True, text=True, env=env, check=True
    )
    command = shlex.split(result.stdout.strip().removeprefix("command:"))
    assert command[1].endswith("recipe/scpo/main_scpo.py")
    return command[2:]


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("scpo_trainer", overrides=overrides)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_composes_and_validates(script):
    estimator, env_name = SCRIPTS[script]
    overrides = script_overrides(script, "trainer.total_epochs=7")
    assert overrides[-1] == "trainer.total_epochs=7"  # "$@" passed through
    config = composed(overrides)
    notes = recipe_main().check(config)
    assert notes[0].startswith(f"estimator={estimator} env={env_name}")
    log_prob_micro_batch = config.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu
    assert log_prob_micro_batch == (32 if env_name == "alfworld" else 8)  # WebShop: fp32 logits of 4,608 tokens
    assert config.trainer.total_epochs == 7
    # published settings
    rollout, actor = config.actor_rollout_ref.rollout, config.actor_rollout_ref.actor
    assert (config.data.train_batch_size, rollout.n) == (16, 8)
    assert config.actor_rollout_ref.model.path == "Qwen/Qwen2.5-1.5B-Instruct"
    assert config.data.max_response_length == 512 and actor.optim.lr == 1e-6
    assert (actor.use_kl_loss, actor.kl_loss_coef, actor.kl_loss_type) == (True, 0.01, "low_var_kl")
    assert config.algorithm.gamma == 0.95 and config.algorithm.gigpo.invalid_action_penalty == 0.1
    assert config.trainer.total_training_steps == 150 and config.trainer.test_freq == 5
    assert rollout.val_kwargs.temperature == 0.4
    assert rollout.agent.default_agent_loop == "verl_agent_ext_env"
    # published update schedule: step rows per optimizer step (verl's V1 trainer: ppo_mini_batch_size x n rows)
    rows_per_mini_batch = actor.ppo_mini_batch_size * rollout.n
    if env_name == "alfworld":
        assert (config.env.max_steps, config.data.max_prompt_length) == (50, 2048)
        assert rows_per_mini_batch == 2048
    else:
        assert (config.env.max_steps, config.data.max_prompt_length) == (15, 4096)
        assert rows_per_mini_batch == 512
        assert config.algorithm.gigpo.mode == "mean_norm"
    if estimator == "sspo":  # 3SPO's published defaults, and the callback that checkpoints its table
        sspo = config.algorithm.sspo
        assert (sspo.alpha, sspo.xi, sspo.zeta, sspo.omega_k, sspo.g_max, sspo.branching) == (50, 10, 0.1, 0.1, 8, True)
        assert config.trainer.checkpoint_callback_class.endswith("SSPOCheckpointCallback")


def test_sspo_without_the_checkpoint_callback_fails_the_check():
    config = composed(script_overrides("run_3spo_alfworld.sh", "trainer.checkpoint_callback_class=null"))
    with pytest.raises(ValueError, match="checkpoint_callback_class"):
        recipe_main().check(config)


def test_invalid_combination_fails_the_check():
    config = composed(script_overrides("run_gigpo_alfworld.sh", "trainer.use_v1=false"))
    with pytest.raises(ValueError, match="legacy"):
        recipe_main().check(config)


def test_recipe_defaults_are_the_estimators_defaults():
    config = composed([])
    gigpo_defaults = {f.name: f.default for f in dataclasses.fields(GiGPOConfig) if f.name != "gamma"}
    scpo_defaults = {f.name: f.default for f in dataclasses.fields(SCPOConfig) if f.name != "gigpo"}
    assert dict(config.algorithm.gigpo) == gigpo_defaults
    assert dict(config.algorithm.scpo) == scpo_defaults
    sspo_defaults = {f.name: f.default for f in dataclasses.fields(SSPOConfig) if f.name != "gigpo"}
    assert dict(config.algorithm.sspo) == sspo_defaults
    assert config.algorithm.gamma == GiGPOConfig().gamma


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_cpu_flag_adds_the_cpu_profile_between_the_script_and_the_user(script, monkeypatch):
    estimator, env_name = SCRIPTS[script]
    env = {**os.environ, "VAE_PRINT_ONLY": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / script), "--cpu", "trainer.total_training_steps=3"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=240,
    )
    command = shlex.split(result.stdout.strip().removeprefix("command:"))
    assert command[0] == "VERL_PLATFORM=cpu" and command[2].endswith("recipe/scpo/main_scpo.py")
    overrides = command[3:]
    assert overrides[-1] == "trainer.total_training_steps=3"  # the user's override comes last
    config = composed(overrides)
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    monkeypatch.setattr("verl.utils.device.get_device_name", lambda: "cpu")
    notes = recipe_main().check(config)  # includes the cpu platform's start-up check
    assert notes[0].startswith(f"estimator={estimator} env={env_name} max_steps=5 tasks/iter=2 group=4 iterations=3")
    assert config.actor_rollout_ref.rollout.name == ROLLOUT_NAME and config.trainer.device == "cpu"
    assert config.data.train_files.endswith(f"{env_name}_cpu/train.parquet")
    assert (config.data.max_prompt_length, config.data.max_response_length) == (512, 24)


def test_cpu_warm_start_plays_the_adapters_prompt_games_and_merged_weights():
    env = {**os.environ, "VAE_PRINT_ONLY": "1", "PYTHONPATH": str(ROOT)}
    script = [str(ROOT / "examples" / "run_istar_alfworld.sh"), "--cpu", "--warm-start=alfworld-pick-smollm2-135m"]
    result = subprocess.run(["bash", *script], capture_output=True, text=True, env=env, check=True, timeout=240)
    config = composed(shlex.split(result.stdout.strip().removeprefix("command:"))[3:])
    assert Path(config.actor_rollout_ref.model.path).name.startswith("merged-alfworld-pick-smollm2-135m-")
    assert Path(config.data.train_files).parent.name.startswith("alfworld_cpu-alfworld-pick-smollm2-135m-")
    assert (config.env.max_steps, config.env.history_length) == (8, 0)  # the adapter's evaluation budget, no history
    assert config.data.max_prompt_length == 320
    prompt = PromptConfig.from_value(EnvLoopConfig.from_mapping(config.env).env_kwargs["alfworld"]["prompt"])
    assert prompt == PromptConfig(history_turns=0, max_actions=40, template=COMPACT_TEMPLATE)
    without_cpu = subprocess.run(["bash", script[0], script[2]], capture_output=True, text=True, env=env, timeout=60)
    assert without_cpu.returncode == 2 and "--warm-start needs --cpu" in without_cpu.stderr
    unknown = subprocess.run(["bash", script[0], "--cpu", "--warm-start=nope"], capture_output=True, text=True, env=env)
    assert unknown.returncode != 0 and "alfworld-pick-smollm2-135m" in unknown.stderr  # lists the shipped adapters
