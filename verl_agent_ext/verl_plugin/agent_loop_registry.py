"""Registers the environment agent loop in verl's agent-loop registry, once verl imports that registry.

Equivalent to `@register("verl_agent_ext_env")` on the class, without importing verl's agent-loop module (and
ours) in every process that imports verl: the registry entry is a hydra target, imported when first used.
"""

from __future__ import annotations

from types import ModuleType

from verl_agent_ext.agent import AGENT_LOOP_NAME, AGENT_LOOP_TARGET
from verl_agent_ext.verl_plugin.post_import import when_imported

AGENT_LOOP_MODULE = "verl.experimental.agent_loop.agent_loop"


def _register(module: ModuleType) -> None:
    module._agent_loop_registry.setdefault(AGENT_LOOP_NAME, {"_target_": AGENT_LOOP_TARGET})


when_imported(AGENT_LOOP_MODULE, _register)
