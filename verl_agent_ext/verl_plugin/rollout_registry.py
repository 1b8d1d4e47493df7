"""Registers the ``transformers`` rollout backend (`hf_rollout`) in verl's two rollout registries.

verl resolves ``actor_rollout_ref.rollout.name`` through `RolloutReplicaRegistry` (trainer side: who launches
servers) and ``_ROLLOUT_REGISTRY`` (worker side: the adapter receiving weight syncs). Both entries are loaders or
import paths, so `hf_rollout` (Ray, transformers) is imported only by runs that select the backend.
"""

from __future__ import annotations

from types import ModuleType

from verl_agent_ext.verl_plugin.post_import import when_imported

ROLLOUT_NAME = "transformers"
REPLICA_MODULE = "verl.workers.rollout.replica"
ROLLOUT_BASE_MODULE = "verl.workers.rollout.base"
ADAPTER_TARGET = "verl_agent_ext.verl_plugin.hf_rollout.HFServerAdapter"


def _load_replica() -> type:
    from verl_agent_ext.verl_plugin.hf_rollout import HFReplica

    return HFReplica


def _register_replica(module: ModuleType) -> None:
    module.RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_replica)


def _register_adapter(module: ModuleType) -> None:
    module._ROLLOUT_REGISTRY.setdefault((ROLLOUT_NAME, "async"), ADAPTER_TARGET)


when_imported(REPLICA_MODULE, _register_replica)
when_imported(ROLLOUT_BASE_MODULE, _register_adapter)
