"""Entry point of the recipe: `python recipe/scpo/main_scpo.py [--dry-run] [hydra overrides...]`.

The config is verl's `ppo_trainer` extended by `config/scpo_trainer.yaml`; training runs verl's own V1 trainer
(`verl.trainer.main_ppo.run_ppo` with `TaskRunnerV1`). The plugin (loaded by `import verl`) registers the
estimators and the agent loop and installs the step-metadata hook.

`--dry-run` composes the same config and runs the plugin's start-up check (`verl_plugin/startup_check.py`:
registrations, verl's `validate_config` with the plugin's checks, estimator settings), then prints the resource
plan (`verl_plugin/resource_plan.py`: memory per GPU by phase, CPUs) against the node described by
`VAE_NODE=2x80GB,32cpu` (or this machine's GPUs), with a WARNING line for what will not fit; it exits non-zero on
a configuration error and starts nothing (no Ray, no GPU).
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from verl_agent_ext.verl_plugin.startup_check import check

DRY_RUN_FLAG = "--dry-run"
RAY_START_ATTEMPTS = 3  # Ray waits a fixed 30 s for its raylet, which a busy 2-core machine can exceed


def resource_plan_lines(config: DictConfig) -> list[str]:
    """The per-GPU memory and CPU plan of a checked config, against VAE_NODE or this machine's GPUs."""
    from verl_agent_ext.verl_plugin.resource_plan import NodeSpec, plan_resources

    return plan_resources(config, NodeSpec.detect()).lines()


@hydra.main(config_path="config", config_name="scpo_trainer", version_base=None)
def main(config: DictConfig) -> None:
    if os.environ.get("VAE_DRY_RUN") == "1":
        for line in [*check(config), *resource_plan_lines(config)]:
            print(line)
        print("dry run OK: the configuration composes and validates with the verl_agent_ext plugin loaded")
        return
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    check(config)
    for line in resource_plan_lines(config):
        print(line)
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
