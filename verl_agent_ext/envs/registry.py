"""Environment registry: name -> factory, so configs and dataset rows can name an environment by string."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verl_agent_ext.envs.base import Policy, TextEnv


@dataclass(frozen=True)
class EnvSpec:
    """Where to find an environment's pieces, as "module:attribute" strings (imported lazily).

    env: callable(**kwargs) -> TextEnv.
    policies: policy name -> callable(env: TextEnv, seed: int) -> Policy ("expert", "random").
    """

    env: str
    policies: dict[str, str]


ENV_REGISTRY: dict[str, EnvSpec] = {
    "alfworld": EnvSpec(
        env="verl_agent_ext.envs.alfworld.env:AlfworldEnv",
        policies={
            "expert": "verl_agent_ext.envs.alfworld.policies:make_expert",
            "searcher": "verl_agent_ext.envs.alfworld.policies:make_searcher",
            "random": "verl_agent_ext.envs.alfworld.policies:make_random",
        },
    ),
    "webshop": EnvSpec(
        env="verl_agent_ext.envs.webshop.env:WebShopEnv",
        policies={
            "expert": "verl_agent_ext.envs.webshop.policies:make_expert",
            "random": "verl_agent_ext.envs.webshop.policies:make_random",
        },
    ),
}


def _resolve(target: str) -> Callable[..., Any]:
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def _spec(name: str) -> EnvSpec:
    if name not in ENV_REGISTRY:
        raise ValueError(f"unknown environment {name!r}; valid names: {sorted(ENV_REGISTRY)}")
    return ENV_REGISTRY[name]


def make_env(name: str, **kwargs: Any) -> TextEnv:
    """Build environment `name` with its keyword arguments (see each env's constructor)."""
    return _resolve(_spec(name).env)(**kwargs)


def make_policy(env_name: str, policy: str, env: TextEnv, seed: int = 0) -> Policy:
    """Build a scripted policy ("expert", "random") bound to `env`."""
    policies = _spec(env_name).policies
    if policy not in policies:
        raise ValueError(f"unknown policy {policy!r} for {env_name}; valid names: {sorted(policies)}")
    return _resolve(policies[policy])(env, seed)
