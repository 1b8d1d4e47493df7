"""The ``transformers`` rollout backend: verl's rollout server on Hugging Face ``generate`` (CPU or one GPU).

Select it with ``actor_rollout_ref.rollout.name=transformers``. verl's trainer then gets, through its two rollout
registries (registered when verl imports them):

- `HFReplica` (`RolloutReplicaRegistry`): one Ray actor `HFRolloutServer` per replica, named
  ``transformers_server_<replica>_0``, on the node of the replica's first training worker.
- `HFServerAdapter` (worker-side ``_ROLLOUT_REGISTRY``): lives in each training worker; after every actor update
  verl's naive checkpoint engine calls `update_weights`, and the replica's first worker pushes the weights to
  the server in buckets (every worker drains the generator: FSDP gathers are collective).

The server is `verl_agent_ext.policy.hf_server.HFServerManager` (the generation backend of ``train-local``):
token ids in, token ids and per-token log-probs out, concurrent requests batched into one left-padded
``model.generate``. Outputs carry ``extra_fields["global_steps"]`` (the weight version verl's trainer checks).
Settings under ``actor_rollout_ref.rollout.engine_kwargs.transformers``: ``batch_wait_s`` (how long a batch
waits for concurrent requests, default 0.2 s) and ``max_batch_size`` (default ``rollout.max_num_seqs``, capped
at 64). LoRA: merged weights (``model.lora.merge=True``) arrive as full weights; adapter weights are loaded into
a peft copy of the model built from the actor's LoRA config.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Generator, Iterable
from typing import Any

import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from verl.plugin.platform import get_platform
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.device import get_device_name, get_resource_name, get_visible_devices_keyword
from verl.workers.config import HFModelConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica

from verl_agent_ext.policy.hf_server import HFServerManager
from verl_agent_ext.policy.model import load_policy
from verl_agent_ext.verl_plugin.rollout_registry import ROLLOUT_NAME

logger = logging.getLogger(__name__)

SERVER_NAME_PREFIX = f"{ROLLOUT_NAME}_"
DEFAULT_BATCH_WAIT_S = 0.2
MAX_BATCH_SIZE = 64
BUCKET_BYTES = 64 << 20  # weights travel to the server in pieces of at most this size (Ray object store)


def server_name(replica_rank: int, node_rank: int = 0) -> str:
    """Ray actor name of a replica's server (the adapter finds it by name)."""
    return f"{SERVER_NAME_PREFIX}server_{replica_rank}_{node_rank}"


def _engine_kwargs(config: Any) -> dict[str, Any]:
    kwargs = dict((config.engine_kwargs or {}).get(ROLLOUT_NAME) or {})
    unknown = set(kwargs) - {"batch_wait_s", "max_batch_size"}
    if unknown:
        raise ValueError(
            f"unknown actor_rollout_ref.rollout.engine_kwargs.{ROLLOUT_NAME} keys {sorted(unknown)}; "
            "valid: ['batch_wait_s', 'max_batch_size']"
        )
    return kwargs


class HFRolloutServer:
    """verl's rollout-server actor interface over one `HFServerManager` (a Ray actor; async methods).

    config: verl's `RolloutConfig`; model_config: the actor's model config (`HFModelConfig` fields).
    visible_devices: the accelerator ids of the replica's worker (ignored on the cpu platform).
    """

    def __init__(self, config: Any, model_config: Any, replica_rank: int, visible_devices: str | None = None):
        self.config = omega_conf_to_dataclass(config)
        self.model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.replica_rank = replica_rank
        device = get_device_name() if get_platform().is_available() else "cpu"
        if device != "cpu":
            if visible_devices is not None:  # the same accelerator as the replica's training worker
                os.environ[get_visible_devices_keyword()] = visible_devices
            device = f"{device}:0"
        self.device = device
        model, tokenizer = load_policy(self.model_config.local_path, device=device)
        options = _engine_kwargs(self.config)
        max_batch = int(options.get("max_batch_size", min(self.config.max_num_seqs, MAX_BATCH_SIZE)))
        max_model_len = self.config.max_model_len or self.config.prompt_length + self.config.response_length
        self.manager = HFServerManager(
            model,
            tokenizer,
            response_length=self.config.response_length,
            max_model_len=max_model_len,
            max_batch_size=max_batch,
            batch_wait_s=float(options.get("batch_wait_s", DEFAULT_BATCH_WAIT_S)),
            target_batch_size=max_batch,
        )
        self._received: set[str] = set()

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Any = None,
        video_data: Any = None,
        **kwargs: Any,
    ):
        """Token-in-token-out generation (verl's server contract); multimodal inputs are not supported."""
        if image_data is not None or video_data is not None:
            raise NotImplementedError(f"the {ROLLOUT_NAME} rollout backend is text-only")
        return await self.manager.generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params)

    # ---- weights ------------------------------------------------------------------------------------------

    async def update_weights(
        self, named_tensors: list[tuple[str, torch.Tensor]], peft_config: dict[str, Any] | None = None
    ) -> int:
        """Load one bucket of weights; `peft_config` (a LoRA config as a dict) marks adapter weights."""
        if peft_config is not None:
            self._ensure_peft(peft_config)
            from peft import set_peft_model_state_dict

            with self.manager._model_lock:
                result = set_peft_model_state_dict(self.manager.model, dict(named_tensors))
            unexpected = getattr(result, "unexpected_keys", [])
            if unexpected:
                raise KeyError(f"LoRA weights not in the rollout model: {unexpected[:5]}")
            return len(named_tensors)
        model = self.manager.model
        if hasattr(model, "peft_config"):  # base weights of a LoRA run: load into the wrapped base model
            base = model.get_base_model()
            state = dict(named_tensors)
            with self.manager._model_lock:
                result = base.load_state_dict(state, strict=False)
            if result.unexpected_keys:
                raise KeyError(f"weights not in the rollout model: {result.unexpected_keys[:5]}")
        else:
            self.manager.load_weights(named_tensors)
        self._received.update(name for name, _ in named_tensors)
        return len(named_tensors)

    def _ensure_peft(self, peft_config: dict[str, Any]) -> None:
        if hasattr(self.manager.model, "peft_config"):
            return
        from peft import LoraConfig, get_peft_model

        fields = {k: v for k, v in peft_config.items() if k in LoraConfig.__dataclass_fields__}
        fields["inference_mode"] = True
        self.manager.model = get_peft_model(self.manager.model, LoraConfig(**fields)).to(self.device)

    async def finish_weight_update(self, global_steps: int | None) -> list[str]:
        """End of one sync: tag outputs with `global_steps`; returns model weights that never arrived."""
        if global_steps is not None:
            self.manager.global_steps = global_steps
        model = self.manager.model
        base = model.get_base_model() if hasattr(model, "peft_config") else model
        tied = {"lm_head.weight"} if getattr(base.config, "tie_word_embeddings", False) else set()
        missing = sorted(set(base.state_dict()) - self._received - tied) if self._received else []
        self._received = set()
        return missing

    async def set_global_steps(self, global_steps: int) -> None:
        self.manager.global_steps = global_steps

    async def get_global_steps(self) -> int | None:
        return self.manager.global_steps

    # ---- lifecycle (verl calls these around weight syncs; nothing to free on a CPU) --------------------------

    async def wake_up(self, tags: list[str] | None = None) -> None:
        if self.device != "cpu":
            self.manager.model.to(self.device)

    async def sleep(self) -> None:
        if self.device != "cpu":  # one GPU shared with training: park the rollout copy on the host
            with self.manager._model_lock:
                self.manager.model.to("cpu")

    async def clear_kv_cache(self) -> None:
        return None  # HF generate keeps no cache between requests

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def wait_for_requests_to_drain(self) -> None:
        while self.manager._pending or self.manager._flushing:
            await asyncio.sleep(0.05)

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        await self.wait_for_requests_to_drain()  # batches are short: finish them instead of aborting
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self) -> None:
        return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None

    async def stats(self) -> dict[str, float]:
        """Generation counters of the backend (requests, batches, generated_tokens, generate_seconds)."""
        return dict(self.manager.stats)


class HFReplica(RolloutReplica):
    """One `HFRolloutServer` per replica; hybrid mode only (the server shares the workers' node)."""

    async def launch_servers(self) -> None:
        if not self.workers:
            raise NotImplementedError(f"the {ROLLOUT_NAME} rollout backend runs in hybrid mode only")
        node_id, accelerator_ids = await self.workers[0].__ray_call__.remote(
            lambda worker: (
                ray.get_runtime_context().get_node_id(),
                ray.get_runtime_context().get_accelerator_ids().get(get_resource_name(), []),
            )
        )
        on_cpu = get_device_name() == "cpu"
        env_vars = {} if on_cpu else {var: "1" for var in get_platform().ray_noset_envvars()}
        server = (
            ray.remote(HFRolloutServer)
            .options(
                name=server_name(self.replica_rank),
                num_cpus=0,  # generation runs while the trainer waits: no CPU reserved for it
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
                runtime_env={"env_vars": env_vars},
                max_concurrency=self.max_concurrency,
            )
            .remote(
                config=self.config,
                model_config=self.model_config,
                replica_rank=self.replica_rank,
                visible_devices=None if on_cpu or not accelerator_ids else str(accelerator_ids[0]),
            )
        )
        await server.get_global_steps.remote()  # wait until the model is loaded
        self.servers = [server]
        self._server_handle = server
        self._server_address = server_name(self.replica_rank)  # a unique key for verl's router


class HFServerAdapter(BaseRollout):
    """Worker-side rollout of the ``transformers`` backend: relays sleep/wake-up and weight syncs to the server."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        cfg = self.config
        rank = int(os.environ.get("RANK", 0))
        world = cfg.tensor_model_parallel_size * cfg.data_parallel_size * cfg.pipeline_model_parallel_size
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self._has_server = rank % world == 0
        self._server = None
        self.sleep_level = 2

    def _server_handle(self) -> Any:
        if self._server is None:
            self._server = ray.get_actor(server_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        if self.config.free_cache_engine and self._has_server:
            await self._server_handle().wake_up.remote(tags=tags)

    async def release(self) -> None:
        if self.config.free_cache_engine and self._has_server:
            await self._server_handle().sleep.remote()

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        wire_format: str = "named_tensors",
        peft_config: Any = None,
        base_sync_done: bool = True,
        global_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Push the actor's weights (full, base or LoRA adapter) to the server; every rank drains `weights`."""
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the {ROLLOUT_NAME} rollout backend takes wire_format='named_tensors' only")
        adapter = _peft_dict(peft_config) if peft_config is not None and base_sync_done else None
        sent = []
        for bucket in _buckets(weights, BUCKET_BYTES):
            if self._has_server:
                sent.append(await self._server_handle().update_weights.remote(bucket, peft_config=adapter))
        if not self._has_server:
            return
        missing = await self._server_handle().finish_weight_update.remote(global_steps)
        if missing and adapter is None:
            raise RuntimeError(f"weight sync to the {ROLLOUT_NAME} rollout server missed {missing[:5]}")
        logger.info(
            "synced %d tensors to %s (global_steps=%s)", sum(sent), server_name(self.replica_rank), global_steps
        )


def _peft_dict(peft_config: Any) -> dict[str, Any]:
    config = peft_config.to_dict() if hasattr(peft_config, "to_dict") else dict(peft_config)
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}


def _buckets(
    weights: Iterable[tuple[str, torch.Tensor]], max_bytes: int
) -> Generator[list[tuple[str, torch.Tensor]], None, None]:
    """Group `(name, tensor)` pairs (materialised on the host) into lists of at most `max_bytes` each."""
    bucket, size = [], 0
    for name, tensor in weights:
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        tensor = tensor.detach().to("cpu", copy=True)
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > max_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += nbytes
    if bucket:
        yield bucket
