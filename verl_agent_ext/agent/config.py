"""The `env:` section of the trainer config: which environment the agent loop plays and how.

In the recipe (`recipe/scpo/config/*.yaml`) or as hydra overrides on verl's own launcher (`+env.max_steps=50`):

    env:
      name: alfworld        # environment for rows that do not name one (column `env_name`)
      max_steps: 50         # steps per episode before it is cut off (ALFWorld 50, WebShop 15)
      history_length: 2     # past (observation, action) turns shown in each prompt
      env_kwargs:           # per environment name: keyword arguments of its constructor
        alfworld: {}
      pool_workers: 8       # threads that run environment work next to the event loop

The invalid-action penalty is a hyperparameter of the estimator (`algorithm.gigpo.invalid_action_penalty`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from verl_agent_ext.envs.registry import ENV_REGISTRY


@dataclass(frozen=True)
class EnvLoopConfig:
    """Environment settings of the agent loop (see the module docstring for each key's meaning)."""

    name: str = "alfworld"
    max_steps: int = 50
    history_length: int = 2
    env_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pool_workers: int = 8

    def __post_init__(self) -> None:
        if self.name not in ENV_REGISTRY:
            raise ValueError(f"env.name={self.name!r} is not a known environment; valid names: {sorted(ENV_REGISTRY)}")
        unknown = sorted(set(self.env_kwargs) - set(ENV_REGISTRY))
        if unknown:
            raise ValueError(
                f"env.env_kwargs names unknown environments {unknown}; valid names: {sorted(ENV_REGISTRY)}"
            )
        if self.max_steps < 1 or self.history_length < 0 or self.pool_workers < 1:
            raise ValueError(
                f"env.max_steps ({self.max_steps}) and env.pool_workers ({self.pool_workers}) must be >= 1, "
                f"env.history_length ({self.history_length}) >= 0"
            )

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> EnvLoopConfig:
        """Build from the trainer config's `env` section (a DictConfig or dict; None gives the defaults)."""
        if section is None:
            return cls()
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - valid)
        if unknown:
            raise ValueError(f"unknown keys in the env config section: {unknown}; valid keys: {sorted(valid)}")
        values = {key: _plain(section[key]) for key in section}
        return cls(**values)


def _plain(value: Any) -> Any:
    """An OmegaConf container as plain Python (dict/list), anything else unchanged."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with verl
        return value
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value
