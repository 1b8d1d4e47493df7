"""The `env:` section of the trainer config: which environment the agent loop plays and how.

In the recipe (`recipe/scpo/config/*.yaml`) or as hydra overrides on verl's own launcher (`+env.max_steps=50`):

    env:
      name: alfworld        # environment for rows that do not name one (column `env_name`)
      max_steps: 50         # steps per episode before it is cut off (ALFWorld 50, WebShop 15)
      history_length: 2     # past (observation, action) turns shown in each prompt
      response_prefix: ""   # text the assistant turn starts with, e.g. "<action>" (prefilled, see below)
      env_kwargs:           # per environment name: keyword arguments of its constructor
        alfworld: {}
      pool:                 # environments per agent-loop worker process (verl_agent_ext.envs.pool.EnvPool)
        backend: ray        # "ray": environments on Ray actors; "inprocess": one background thread
        num_envs: 32        # concurrent episodes per agent-loop worker process (verl runs 8; more sessions wait)
        num_workers: 2      # Ray actors per agent-loop worker process (null: min(num_envs, 4))
        cpus_per_worker: 0.5

`response_prefix` helps small models keep the answer format: its tokens end every prompt (after the chat
template's assistant header), so the model continues from it, and it is put back in front of the decoded response
before the action is parsed. The prefix is part of the prompt, never of the trained response tokens.

The invalid-action penalty is a hyperparameter of the estimator (`algorithm.gigpo.invalid_action_penalty`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from verl_agent_ext.envs.alfworld.prompt import COMPACT_TEMPLATE
from verl_agent_ext.envs.registry import ENV_REGISTRY

POOL_BACKENDS = ("inprocess", "ray")


@dataclass(frozen=True)
class SmallModelPrompt:
    """Prompt defaults of the small-model paths (`train-local`, `expert-data`): short prompts a 135M model can use."""

    history_length: int = 1  # past turns in the prompt
    max_actions: int = 8  # admissible actions listed in the prompt (ALFWorld)
    prompt_template: str = COMPACT_TEMPLATE  # "" for the environment's default template


SMALL_MODEL_PROMPT = SmallModelPrompt()


@dataclass(frozen=True)
class EnvPoolConfig:
    """How each agent-loop worker process holds its environments (see the module docstring)."""

    backend: str = "ray"
    num_envs: int = 32
    num_workers: int | None = 2
    cpus_per_worker: float = 0.5

    def __post_init__(self) -> None:
        if self.backend not in POOL_BACKENDS:
            raise ValueError(f"env.pool.backend={self.backend!r} is unknown; valid names: {list(POOL_BACKENDS)}")
        if self.num_envs < 1 or (self.num_workers is not None and self.num_workers < 1):
            raise ValueError(f"env.pool.num_envs ({self.num_envs}) and env.pool.num_workers must be >= 1")


@dataclass(frozen=True)
class EnvLoopConfig:
    """Environment settings of the agent loop (see the module docstring for each key's meaning)."""

    name: str = "alfworld"
    max_steps: int = 50
    history_length: int = 2
    response_prefix: str = ""
    env_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pool: EnvPoolConfig = field(default_factory=EnvPoolConfig)

    def __post_init__(self) -> None:
        if self.name not in ENV_REGISTRY:
            raise ValueError(f"env.name={self.name!r} is not a known environment; valid names: {sorted(ENV_REGISTRY)}")
        unknown = sorted(set(self.env_kwargs) - set(ENV_REGISTRY))
        if unknown:
            raise ValueError(
                f"env.env_kwargs names unknown environments {unknown}; valid names: {sorted(ENV_REGISTRY)}"
            )
        if self.max_steps < 1 or self.history_length < 0:
            raise ValueError(
                f"env.max_steps ({self.max_steps}) must be >= 1, env.history_length ({self.history_length}) >= 0"
            )

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> EnvLoopConfig:
        """Build from the trainer config's `env` section (a DictConfig or dict; None gives the defaults)."""
        values = _checked(cls, _plain(section) or {}, "env")
        if "pool" in values:
            values["pool"] = EnvPoolConfig(**_checked(EnvPoolConfig, values["pool"] or {}, "env.pool"))
        return cls(**values)


def _checked(config_class: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    valid = {f.name for f in fields(config_class)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(f"unknown keys in the {where} config section: {unknown}; valid keys: {sorted(valid)}")
    return dict(values)


def _plain(value: Any) -> Any:
    """An OmegaConf container as plain Python (dict/list), anything else unchanged."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value
