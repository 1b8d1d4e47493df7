"""What the plugin's `validate_config` wrapper does around verl's checks, besides the start-up check.

- `mini_batch_counted_in_step_rows`: an env-loop run may set `actor.ppo_mini_batch_size` in step rows, above
  `data.train_batch_size` (verl's check assumes one row per session).
- `import_plugin_in_ray_processes`: every Ray process of the run imports the plugin, failing loudly if it cannot.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from verl_agent_ext.estimators import estimator_taking_metadata
from verl_agent_ext.verl_plugin.agent_loop_registry import uses_env_agent_loop


@contextlib.contextmanager
def mini_batch_counted_in_step_rows(config: Any) -> Iterator[None]:
    """During verl's checks, hide an env-loop run's `actor.ppo_mini_batch_size` above `data.train_batch_size`.

    verl's `ActorConfig.validate` requires ppo_mini_batch_size <= train_batch_size (both in prompts), which
    holds when each session is one row. The V1 trainer cuts mini-batches of ppo_mini_batch_size x rollout.n rows
    (`PPOTrainer._update_actor`) whatever the number of prompts, and the env agent loop gives one row per step,
    so the published schedule (256 x 8 = 2,048 step rows per optimizer step with 16 tasks per iteration) needs
    a larger value: the check is run with the value capped at train_batch_size, then the value is restored.
    """
    actor = (config.get("actor_rollout_ref") or {}).get("actor")
    train_batch_size = (config.get("data") or {}).get("train_batch_size")
    value = None if actor is None else actor.get("ppo_mini_batch_size")
    relax = (
        uses_env_agent_loop(config)
        and not actor.get("use_dynamic_bsz", False)
        and isinstance(value, int)
        and isinstance(train_batch_size, int)
        and value > train_batch_size
    )
    if relax:
        actor.ppo_mini_batch_size = train_batch_size
    try:
        yield
    finally:
        if relax:
            actor.ppo_mini_batch_size = value


PLUGIN_MODULE = "verl_agent_ext.verl_plugin"
EXTERNAL_MODULES_ENV = "VERL_USE_EXTERNAL_MODULES"


def import_plugin_in_ray_processes(config: Any) -> None:
    """Make every Ray process of an env-loop run import the plugin, failing loudly if it cannot.

    verl loads `verl.plugins` entry points at `import verl` and logs a failure at DEBUG level only, so a node
    with a broken install would train without the hook or fail its agent-loop sessions one by one. Modules named
    in verl's `VERL_USE_EXTERNAL_MODULES` are imported without that guard: the plugin is added there, in the
    Ray runtime environment of the run (`ray_kwargs.ray_init.runtime_env.env_vars`), so the TaskRunner and
    every worker actor stop at creation with the import error.
    """
    from omegaconf import open_dict

    runtime_env = ((config.get("ray_kwargs") or {}).get("ray_init") or {}).get("runtime_env")
    name = ((config.get("algorithm") or {}).get("adv_estimator")) or "gae"
    if runtime_env is None or not (uses_env_agent_loop(config) or estimator_taking_metadata(name) is not None):
        return
    with open_dict(runtime_env):
        if runtime_env.get("env_vars") is None:
            runtime_env.env_vars = {}
        # the runtime env's value replaces the launching shell's in the Ray processes: keep the modules of both
        named = f"{runtime_env.env_vars.get(EXTERNAL_MODULES_ENV) or ''},{os.environ.get(EXTERNAL_MODULES_ENV, '')}"
        modules = list(dict.fromkeys(name.strip() for name in named.split(",") if name.strip()))
        if PLUGIN_MODULE not in modules:
            runtime_env.env_vars[EXTERNAL_MODULES_ENV] = ",".join([*modules, PLUGIN_MODULE])
