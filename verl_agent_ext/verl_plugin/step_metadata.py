"""The step-metadata hook: installs the patches that let step-level estimators see each row's step, and checks it.

verl 0.9's `compute_advantage` calls a registered estimator with `token_level_rewards, response_mask, index,
config` only, and the V1 trainer's `_compute_advantage` reads a fixed list of fields from TransferQueue, so a
step-level estimator (`gigpo`, `scpo`, `sspo`/`3spo`, `empg`, `istar`) never sees which trajectory, step and
observation a row belongs to. This module installs narrow, version-checked patches when verl imports the patched
modules (`post_import`), and holds the start-up check that they work:

- `verl.trainer.ppo.v1.trainer_base.PPOTrainer._compute_advantage` and `.step`: `trainer_patch` (fetch the
  metadata, episode and credit metrics);
- `verl.trainer.ppo.v1.utils.compute_advantage`: `advantage_patch` (hand `non_tensor_batch` to the estimator);
- `verl.utils.config.validate_config`: `check_config` first, then verl's checks with the mini-batch counted in step
  rows, then every Ray process made to import the plugin (`validate_config_patch`);
- `PPOTrainer.__init__`: `check_trainer_start` (`check_config`, the estimator's settings and, for env-loop runs,
  whether Ray has the CPUs the run holds), in the process that trains.

`check_config` fails at start-up when a step-level estimator is selected and the metadata cannot flow: legacy
trainer, unsupported verl version, a patch that failed, or (for an estimator reading `step_entropy`) a
rollout-correction bypass mode that skips the old-log-prob pass; or when the env agent loop runs with a reward
model.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from verl_agent_ext.agent import AGENT_LOOP_NAME
from verl_agent_ext.credit.empg import STEP_ENTROPY_KEY
from verl_agent_ext.estimators import estimator_name, estimator_taking_metadata, extra_metadata_keys
from verl_agent_ext.verl_plugin.advantage_patch import compute_advantage_passing_metadata
from verl_agent_ext.verl_plugin.agent_loop_registry import check_config_before_init, uses_env_agent_loop
from verl_agent_ext.verl_plugin.post_import import when_imported
from verl_agent_ext.verl_plugin.trainer_patch import compute_advantage_with_step_metadata, step_with_whole_step_metrics
from verl_agent_ext.verl_plugin.validate_config_patch import (
    import_plugin_in_ray_processes,
    mini_batch_counted_in_step_rows,
)

logger = logging.getLogger(__name__)

SUPPORTED_VERL = ((0, 9), (0, 10))
"""verl versions [low, high) whose trainer internals the patches were written against."""

V1_TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"
V1_UTILS_MODULE = "verl.trainer.ppo.v1.utils"

hook_status: dict[str, str] = {V1_TRAINER_MODULE: "not imported yet", V1_UTILS_MODULE: "not imported yet"}
"""Per patched module: "installed" or why not."""


def install() -> None:
    """Ask to patch verl's V1 trainer modules when (or if already) imported. Called by the plugin."""
    when_imported(V1_UTILS_MODULE, _patch_v1_utils)
    when_imported(V1_TRAINER_MODULE, _patch_v1_trainer)
    when_imported("verl.utils.config", _patch_validate_config)


# --------------------------------------------------------------------------------------------------------------
# Installing the patches
# --------------------------------------------------------------------------------------------------------------


def verl_version_supported() -> tuple[bool, str]:
    """(supported, version) of the installed verl."""
    from importlib.metadata import version

    from packaging.version import Version

    installed = version("verl")
    release = Version(installed).release[:2]
    low, high = SUPPORTED_VERL
    return low <= release < high, installed


def _patch(module: ModuleType, owner: Any, attribute: str, make: Callable[[Callable[..., Any]], Any]) -> None:
    supported, installed = verl_version_supported()
    if not supported:
        hook_status[module.__name__] = (
            f"verl {installed} is not supported by the step-metadata hook (written for verl >= 0.9, < 0.10)"
        )
        return
    original = getattr(owner, attribute, None)
    if original is None:
        hook_status[module.__name__] = f"{module.__name__} has no {attribute}: verl's internals changed"
        return
    if getattr(original, "__verl_agent_ext_patch__", False):
        hook_status[module.__name__] = "installed"
        return
    setattr(owner, attribute, make(original))
    hook_status[module.__name__] = "installed"


def _patch_v1_utils(module: ModuleType) -> None:
    _patch(module, module, "compute_advantage", compute_advantage_passing_metadata)


def _patch_v1_trainer(module: ModuleType) -> None:
    tq = getattr(module, "tq", None)
    trainer = getattr(module, "PPOTrainer", None)
    if tq is None or trainer is None:
        hook_status[module.__name__] = f"{module.__name__} lacks tq or PPOTrainer: verl's internals changed"
        return
    _patch(module, trainer, "_compute_advantage", lambda original: compute_advantage_with_step_metadata(original, tq))
    if hook_status[module.__name__] == "installed":
        _patch(module, trainer, "step", step_with_whole_step_metrics)
    # verl builds the trainer in its TaskRunner Ray actor, not in the process that validated the config: check
    # there too, or a plugin or patch that failed there would show only at the first advantage computation
    check_config_before_init(trainer, check_trainer_start)


def _patch_validate_config(module: ModuleType) -> None:
    original = getattr(module, "validate_config", None)
    if original is None or getattr(original, "__verl_agent_ext_patch__", False):
        return

    @functools.wraps(original)
    def validate_config(config: Any, *args: Any, **kwargs: Any) -> Any:
        check_config(config)  # first: our reason is the precise one when the run cannot work
        with mini_batch_counted_in_step_rows(config):
            result = original(config, *args, **kwargs)
        import_plugin_in_ray_processes(config)
        return result

    validate_config.__verl_agent_ext_patch__ = True
    module.validate_config = validate_config


# --------------------------------------------------------------------------------------------------------------
# Start-up check
# --------------------------------------------------------------------------------------------------------------


def check_trainer_start(config: Any) -> None:
    """At verl's trainer start (its TaskRunner, where Ray runs), whichever launcher built the run: `check_config`,
    the estimator's settings, and Ray has the CPUs the run holds."""
    from verl_agent_ext.verl_plugin.startup_check import check_estimator_settings

    check_config(config)
    check_estimator_settings(config)
    if uses_env_agent_loop(config):
        from verl_agent_ext.verl_plugin.resource_plan import check_ray_cpus

        check_ray_cpus(config)


def check_config(config: Any) -> None:
    """Raise at start-up if a step-level estimator or the environment agent loop cannot work with this config.

    Runs of the env agent loop (an `env` section, or it is the default agent loop) need the V1 trainer and a
    valid `env` section. A step-level estimator also needs both patches installed (this imports verl's V1
    trainer modules, which installs them in this process). Other runs: no-op.
    """
    from verl_agent_ext.verl_plugin import estimators, sspo  # noqa: F401  (the step estimators must be registered)

    algorithm = config.get("algorithm") or {}
    name = estimator_name(algorithm.get("adv_estimator", "gae"))
    rollout = config.get("actor_rollout_ref", {}).get("rollout", {})
    default_loop = (rollout.get("agent") or {}).get("default_agent_loop")
    step_estimator = estimator_taking_metadata(name) is not None
    if not (step_estimator or uses_env_agent_loop(config)):
        return
    if not (config.get("trainer") or {}).get("use_v1", True):
        raise ValueError(
            f"the {AGENT_LOOP_NAME} agent loop (algorithm.adv_estimator={name}) returns one training row per "
            "environment step, which verl's legacy trainer (trainer.use_v1=False) does not support: its agent-loop "
            "worker keeps one output per session. Use the V1 trainer (trainer.use_v1=True, verl's default)."
        )
    if ((config.get("reward") or {}).get("reward_model") or {}).get("enable", False):
        raise ValueError(
            f"reward.reward_model.enable=True cannot be used with the {AGENT_LOOP_NAME} agent loop: each step row's "
            "reward is its episode's environment return; verl's colocated reward model would overwrite it with a "
            "score of that one step's text, and a reward model on its own resource pool is skipped for rows that "
            "already carry a score. Set reward.reward_model.enable=False: the environment gives the reward."
        )
    from verl_agent_ext.agent.config import EnvLoopConfig

    EnvLoopConfig.from_mapping(config.get("env"))
    sspo.check_config(config)
    if not step_estimator:
        return
    import importlib

    try:
        for module_name in (V1_UTILS_MODULE, V1_TRAINER_MODULE):
            importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise RuntimeError(
            f"verl's V1 trainer cannot be imported ({error}); it needs TransferQueue: "
            "pip install 'TransferQueue>=0.1.10' (included in verl's vllm/sglang/verl-core extras)"
        ) from error
    broken = {module: status for module, status in hook_status.items() if status != "installed"}
    if broken:
        raise RuntimeError(
            f"algorithm.adv_estimator={name} needs the verl_agent_ext step-metadata hook, which is not installed: "
            f"{broken}. Use verl >=0.9.1,<0.10 with verl_agent_ext installed (plugins on: "
            "VERL_USE_EXTERNAL_PLUGINS unset or naming verl_agent_ext)."
        )
    rollout_correction = algorithm.get("rollout_correction") or {}
    if STEP_ENTROPY_KEY in extra_metadata_keys(name) and rollout_correction.get("bypass_mode", False):
        raise ValueError(
            f"algorithm.adv_estimator={name} reads each step's policy entropy from verl's old-log-prob pass, which "
            "algorithm.rollout_correction.bypass_mode=True skips (old log-probs are copied from the rollout, no "
            "entropy is computed). Set algorithm.rollout_correction.bypass_mode=False (decoupled mode)."
        )
    if default_loop != AGENT_LOOP_NAME:
        logger.warning(
            "adv_estimator=%s: rollout.agent.default_agent_loop is %r; rows must name agent_name=%s",
            name,
            default_loop,
            AGENT_LOOP_NAME,
        )


install()
