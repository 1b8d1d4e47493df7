"""Entry point of the recipe: `python recipe/scpo/main_scpo.py [--dry-run] [hydra overrides...]`.

The config is verl's `ppo_trainer` extended by `config/scpo_trainer.yaml`; training runs verl's own V1 trainer
(`verl.trainer.main_ppo.run_ppo` with `TaskRunnerV1`). The plugin (loaded by `import verl`) registers the
estimators and the agent loop and installs the step-metadata hook.

`--dry-run` composes the same config, resolves it and runs verl's `validate_config` (which the plugin extends
with its start-up check), then checks the plugin's registrations; it exits non-zero on any problem and starts
nothing (no Ray, no GPU).
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

DRY_RUN_FLAG = "--dry-run"
RAY_START_ATTEMPTS = 3  # Ray waits a fixed 30 s for its raylet, which a busy 2-core machine can exceed


def check(config: DictConfig) -> list[str]:
    """Validate a composed config as a training run would at start-up; returns notes for the user."""
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from verl_agent_ext.agent import AGENT_LOOP_NAME
    from verl_agent_ext.agent.config import EnvLoopConfig
    from verl_agent_ext.verl_plugin import istar_prm, step_metadata

    for name in ("gigpo", "scpo", "istar"):
        if name not in core_algos.ADV_ESTIMATOR_REGISTRY:
            raise RuntimeError(f"the verl_agent_ext plugin did not register estimator {name!r}: is it installed?")
    if AGENT_LOOP_NAME not in _agent_loop_registry:
        raise RuntimeError(f"the verl_agent_ext plugin did not register agent loop {AGENT_LOOP_NAME!r}")
    OmegaConf.resolve(config)
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    step_metadata.check_config(config)  # also run by validate_config when the plugin hook is in place
    istar_prm.check_config(config)
    env = EnvLoopConfig.from_mapping(config.get("env"))
    notes = [
        f"estimator={config.algorithm.adv_estimator} env={env.name} max_steps={env.max_steps} "
        f"tasks/iter={config.data.train_batch_size} group={config.actor_rollout_ref.rollout.n} "
        f"iterations={config.trainer.total_training_steps}"
    ]
    for key in ("train_files", "val_files"):
        path = config.data[key]
        if not os.path.exists(path):
            notes.append(f"note: data.{key}={path} does not exist yet (verl-agent-ext prepare-data writes it)")
    return notes


@hydra.main(config_path="config", config_name="scpo_trainer", version_base=None)
def main(config: DictConfig) -> None:
    if os.environ.get("VAE_DRY_RUN") == "1":
        for note in check(config):
            print(note)
        print("dry run OK: the configuration composes and validates with the verl_agent_ext plugin loaded")
        return
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    check(config)
    for attempt in range(RAY_START_ATTEMPTS):
        try:
            run_ppo(config, task_runner_class=TaskRunnerV1)
            return
        except Exception as error:  # only Ray's own start-up timeout is retried: nothing else has started yet
            if "timed out during startup" not in str(error) or attempt == RAY_START_ATTEMPTS - 1:
                raise
            import ray

            ray.shutdown()
            print(f"Ray did not start in time (busy machine); retrying ({attempt + 2}/{RAY_START_ATTEMPTS})")


if __name__ == "__main__":
    if DRY_RUN_FLAG in sys.argv:
        sys.argv.remove(DRY_RUN_FLAG)
        os.environ["VAE_DRY_RUN"] = "1"
    main()
