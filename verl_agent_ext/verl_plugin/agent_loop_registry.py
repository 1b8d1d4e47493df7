"""Registers the environment agent loop in verl's agent-loop registry, once verl imports that registry.

Equivalent to `@register("verl_agent_ext_env")` on the class, without importing verl's agent-loop module (and
ours) in every process that imports verl: the registry entry is a hydra target, imported when first used.

Also checks, when verl builds an agent-loop worker (`AgentLoopWorker.__init__`) for a run of this loop, that the
worker's process can import the loop and read the `env` section: a node with a broken install then fails at
start-up, instead of failing every session later with errors only in its log.
"""

from __future__ import annotations

import functools
import importlib
import socket
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from verl_agent_ext.agent import AGENT_LOOP_NAME, AGENT_LOOP_TARGET
from verl_agent_ext.verl_plugin.post_import import when_imported

AGENT_LOOP_MODULE = "verl.experimental.agent_loop.agent_loop"


def uses_env_agent_loop(config: Mapping[str, Any]) -> bool:
    """Whether a trainer config runs the env agent loop: it has an `env` section or makes the loop the default."""
    rollout = (config.get("actor_rollout_ref") or {}).get("rollout") or {}
    default_loop = (rollout.get("agent") or {}).get("default_agent_loop")
    return config.get("env") is not None or default_loop == AGENT_LOOP_NAME


def check_agent_loop_worker(config: Mapping[str, Any]) -> None:
    """Raise if this process cannot run the env agent loop that `config` asks for (no-op for other runs)."""
    if not uses_env_agent_loop(config):
        return
    from verl_agent_ext.agent.config import EnvLoopConfig

    try:
        importlib.import_module(AGENT_LOOP_TARGET.rpartition(".")[0])
        EnvLoopConfig.from_mapping(config.get("env"))
    except Exception as error:
        raise RuntimeError(
            f"this agent-loop worker (host {socket.gethostname()}) cannot run the {AGENT_LOOP_NAME} agent loop: "
            f"{type(error).__name__}: {error}. Install verl-agent-ext (with its environment extras) on every node."
        ) from error


def check_config_before_init(owner: type, check: Callable[[Any], None]) -> None:
    """Make `owner.__init__(self, config, ...)` call `check(config)` first (once, however often it is asked)."""
    original = owner.__init__
    if getattr(original, "__verl_agent_ext_patch__", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        check(kwargs["config"] if "config" in kwargs else args[0])
        original(self, *args, **kwargs)

    __init__.__verl_agent_ext_patch__ = True
    owner.__init__ = __init__


def _register(module: ModuleType) -> None:
    module._agent_loop_registry.setdefault(AGENT_LOOP_NAME, {"_target_": AGENT_LOOP_TARGET})
    check_config_before_init(module.AgentLoopWorker, check_agent_loop_worker)


when_imported(AGENT_LOOP_MODULE, _register)
