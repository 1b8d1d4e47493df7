"""Estimators by name through verl's registry, configured through the same path as training.

An estimator spec is a registered name, optionally followed by settings under `algorithm.` for that estimator
only: `scpo:scpo.theta=0.8:scpo.alpha=5` (label = the spec as written). Settings become hydra overrides of verl's
`ppo_trainer` config composed as `train-local` composes it (`local.config.compose_verl_config`), so the
estimator reads the same `algorithm` section it reads in training.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from verl_agent_ext.agent import EPISODE_KEYS
from verl_agent_ext.credit import PRM_STEP_REWARD_KEY, REQUIRED_METADATA_KEYS

OPTIONAL_METADATA_KEYS = ("step_entropy", "next_anchor_obs", "response_text", PRM_STEP_REWARD_KEY)
"""Columns rollouts may provide for estimators registered later (empg: step_entropy, sspo: next_anchor_obs, istar:
prm_step_reward) and for SCPO's step_text=obs_response (response_text); those a set of rows lacks are left out."""

UNAVAILABLE = {
    "istar": "it reads the implicit PRM's step rewards (prm_step_reward), which only training produces "
    "(train-local, verl with the PRM, or the arena; docs/istar.md)"
}
"""Registered estimators whose inputs credit-eval's rollouts cannot provide: refused before any rollout."""


@dataclass(frozen=True)
class EstimatorSpec:
    """label: as written on the command line; name: the registered estimator; overrides: hydra overrides."""

    label: str
    name: str
    overrides: tuple[str, ...] = ()


def hydra_override(setting: str) -> str:
    """`KEY=VALUE` -> `++KEY=VALUE` (add or replace, as `--set` means); `+`/`~`-prefixed hydra syntax as is."""
    if "=" not in setting and not setting.startswith("~"):
        raise ValueError(f"setting {setting!r} is not KEY=VALUE")
    return setting if setting.startswith(("+", "~")) else f"++{setting}"


def parse_estimators(text: str) -> list[EstimatorSpec]:
    """`grpo,gigpo:gigpo.mode=mean_std_norm,scpo:scpo.theta=0.8` -> specs (settings relative to `algorithm.`)."""
    specs = []
    for label in (part.strip() for part in text.split(",")):
        if not label:
            continue
        name, *settings = label.split(":")
        overrides = tuple(hydra_override(f"algorithm.{setting.strip()}") for setting in settings)
        specs.append(EstimatorSpec(label=label, name=name.strip(), overrides=overrides))
    if not specs:
        raise ValueError("no estimator given")
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"estimator specs must differ, got {labels}")
    return specs


def algorithm_config(spec: EstimatorSpec, settings: Sequence[str] = ()):
    """verl's `algorithm` section for `spec`, after the global `--set` settings then the spec's own.

    Raises ValueError for an unknown estimator (listing the registered ones), for one whose inputs credit-eval
    cannot provide (UNAVAILABLE), and for any invalid setting.
    """
    if spec.name in UNAVAILABLE:
        raise ValueError(f"estimator {spec.label!r} cannot run in credit-eval: {UNAVAILABLE[spec.name]}")
    return verl_config(spec, settings).algorithm


def verl_config(spec: EstimatorSpec, settings: Sequence[str] = (), base: Sequence[str] = ()):
    """verl's whole `ppo_trainer` config for `spec`: the tool's `base` overrides, then the global `--set`
    settings, then the spec's own. Raises ValueError as `algorithm_config`."""
    from verl_agent_ext.local.advantages import estimator_fn
    from verl_agent_ext.local.config import LocalTrainConfig, compose_verl_config

    estimator_fn(spec.name)
    overrides = [*base, *(hydra_override(setting) for setting in settings), *spec.overrides]
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from verl_agent_ext.credit.contract import estimator_settings

    try:
        config = compose_verl_config(LocalTrainConfig(estimator=spec.name, verl_overrides=overrides))
        estimator_settings(spec.name, config.algorithm)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        message = " ".join(str(error).split())
        raise ValueError(f"settings {overrides} of estimator {spec.label!r} do not apply: {message}") from None
    return config


def estimator_advantages(
    name: str, columns: Mapping[str, np.ndarray], algorithm
) -> tuple[np.ndarray, dict[str, float], float]:
    """(advantage per row (n,), credit diagnostics, seconds of the call) of estimator `name` on step rows.

    columns: the rollouts' (n,) columns; each row is one training row whose response is a single token carrying
    the episode return, so token-level advantages are the per-step scalars.
    """
    from verl_agent_ext.local.advantages import compute_advantages
    from verl_agent_ext.local.batch import StepRows

    n = len(columns["uid"])
    keys = (*REQUIRED_METADATA_KEYS, *EPISODE_KEYS, *(key for key in OPTIONAL_METADATA_KEYS if key in columns))
    rows = StepRows(
        prompts=[[0]] * n,
        responses=torch.zeros((n, 1), dtype=torch.long),
        response_mask=torch.ones((n, 1), dtype=torch.long),
        token_level_rewards=torch.as_tensor(columns["episode_return"], dtype=torch.float32).unsqueeze(-1),
        non_tensor_batch={key: np.asarray(columns[key], dtype=object) for key in keys},
    )
    start = time.perf_counter()
    advantages, metrics = compute_advantages(name, rows, algorithm)
    seconds = time.perf_counter() - start
    return advantages[:, 0].double().numpy(), metrics, seconds
