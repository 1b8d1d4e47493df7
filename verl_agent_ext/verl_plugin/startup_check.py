"""The start-up check of a verl run with the plugin: everything that can be known before Ray or a GPU starts.

`check(config)` is what `recipe/scpo/main_scpo.py` runs before training and for `--dry-run` (any verl launcher
may call it): the plugin registered every estimator and the agent loop; the config resolves and passes verl's
`validate_config` (which the plugin extends with the step-metadata and cpu-platform checks); the chosen
estimator's settings build (`check_estimator_settings`); iStar's PRM patch is in place; on a CUDA machine the
attention implementation the model will load with is importable (`check_attention_implementation`); WebShop task
rows name the catalog the environment will load (`check_task_rows`). It returns
notes for the user; `resource_plan.plan_resources` adds the per-GPU memory and CPU plan (`--dry-run`).
Ray's CPUs are checked later, where Ray runs (`resource_plan.check_ray_cpus`, at verl's trainer start).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from verl_agent_ext.credit.contract import estimator_settings
from verl_agent_ext.estimators import REGISTERED_NAMES

VERL_INSTALL = 'pip install "verl[vllm,fsdp]==0.9.1"'
"""verl's `vllm` extra has no flash-attn; its `fsdp` extra brings it (flash-attn 2.8.3, for torch 2.11)."""
ATTENTION_PACKAGES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def check_registrations() -> None:
    """Raise unless every plugin estimator and the env agent loop are registered in this process's verl."""
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
    from verl.trainer.ppo import core_algos

    from verl_agent_ext.agent import AGENT_LOOP_NAME

    missing = [name for name in REGISTERED_NAMES if name not in core_algos.ADV_ESTIMATOR_REGISTRY]
    if missing:
        raise RuntimeError(f"the verl_agent_ext plugin did not register estimator(s) {missing}: is it installed?")
    if AGENT_LOOP_NAME not in _agent_loop_registry:
        raise RuntimeError(f"the verl_agent_ext plugin did not register agent loop {AGENT_LOOP_NAME!r}")


def check_estimator_settings(config: Any) -> None:
    """Build the chosen plugin estimator's settings from `algorithm`; bad keys or values raise a one-line error.

    The same validation train-local and credit-eval run before any rollout (`credit.contract.estimator_settings`).
    """
    algorithm = config.get("algorithm") or {}
    name = str(getattr(algorithm.get("adv_estimator"), "value", algorithm.get("adv_estimator")))
    estimator_settings(name, algorithm)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_attention_implementation(config: Any) -> None:
    """On CUDA, raise with the exact fix when the model's attention implementation cannot be imported.

    verl loads the actor, reference and PRM with `override_config.attn_implementation` (default
    flash_attention_2, workers/config/model.py), and `use_remove_padding` runs flash-attn's varlen kernels; a
    fresh `verl[vllm]` install has no flash-attn, so every model load would stop with an ImportError.
    """
    from omegaconf import OmegaConf

    if os.environ.get("VERL_PLATFORM", "").lower() == "cpu" or not cuda_available():
        return
    model = "actor_rollout_ref.model"
    attention = OmegaConf.select(config, f"{model}.override_config.attn_implementation", default=None)
    attention = attention or "flash_attention_2"
    package = ATTENTION_PACKAGES.get(str(attention))
    if package is None:
        return
    try:
        importlib.import_module(package)
    except Exception as error:  # ImportError, or an ABI mismatch raising something else on import
        raise RuntimeError(
            f"{model}.override_config.attn_implementation={attention} needs the {package} package, which cannot "
            f"be imported here ({type(error).__name__}: {error}). Install it with {VERL_INSTALL} "
            "(verl's vllm extra lacks flash-attn, its fsdp extra brings it), or run without it: "
            f"+{model}.override_config.attn_implementation=sdpa {model}.use_remove_padding=False"
        ) from error


def check(config: Any) -> list[str]:
    """Validate a composed config as a training run would at start-up; returns notes for the user."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from verl_agent_ext.agent.config import EnvLoopConfig
    from verl_agent_ext.verl_plugin import istar_prm, step_metadata

    check_registrations()
    OmegaConf.resolve(config)
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    step_metadata.check_config(config)  # also run by validate_config when the plugin hook is in place
    check_estimator_settings(config)
    istar_prm.check_config(config)
    check_attention_implementation(config)
    env = EnvLoopConfig.from_mapping(config.get("env"))
    notes = [
        f"estimator={config.algorithm.adv_estimator} env={env.name} max_steps={env.max_steps} "
        f"tasks/iter={config.data.train_batch_size} group={config.actor_rollout_ref.rollout.n} "
        f"iterations={config.trainer.total_training_steps}"
    ]
    notes += data_notes(config, env)
    check_task_rows(config, env)
    return notes


def check_task_rows(config: Any, env: Any) -> None:
    """Raise when the WebShop task rows were prepared from another catalog than the one the env will load.

    Reads only the rows' `env_name` / `data_fingerprint` columns (written by prepare-data); builds the env's
    catalog as the env actors will (a large one is then already in the node's cache for them) and drops it; with
    the full catalog the first check on a node takes as long as loading it once.
    """
    import pandas as pd

    from verl_agent_ext.envs.webshop.tasks import CATALOG_ARGUMENTS, get_catalog

    loaded = None
    for key in ("train_files", "val_files"):
        path = str(config.data[key])
        if not os.path.exists(path):
            continue
        try:
            rows = pd.read_parquet(path, columns=["env_name", "data_fingerprint"])
        except (KeyError, ValueError):  # rows written before fingerprints: nothing to compare
            continue
        prepared = set(rows.data_fingerprint[(rows.env_name == "webshop") & (rows.data_fingerprint != "")])
        if not prepared:
            continue
        webshop = env.env_kwargs.get("webshop") or {}
        kwargs = {name: webshop[name] for name in CATALOG_ARGUMENTS if name in webshop}
        loaded = loaded or get_catalog(**kwargs, keep=False).fingerprint
        if prepared != {loaded}:
            raise ValueError(
                f"data.{key}={path} holds WebShop tasks of catalog(s) {sorted(prepared)}, but the environment "
                f"(env.env_kwargs.webshop={kwargs}) loads catalog {loaded}: every goal index would name another "
                "goal. Give env.env_kwargs.webshop.data_dir (and seed) the values prepare-data was given."
            )


def data_notes(config: Any, env: Any) -> list[str]:
    """Missing data files, and a loud notice when WebShop will play its generated toy catalog."""
    notes = []
    for key in ("train_files", "val_files"):
        path = config.data[key]
        if not os.path.exists(path):
            notes.append(f"note: data.{key}={path} does not exist yet (verl-agent-ext prepare-data writes it)")
    if env.name == "webshop" and not (env.env_kwargs.get("webshop") or {}).get("data_dir"):
        from verl_agent_ext.envs.webshop.tasks import GENERATED_CATALOG_NOTICE

        notes.append(f"NOTICE: {GENERATED_CATALOG_NOTICE} (set env.env_kwargs.webshop.data_dir)")
    return notes
