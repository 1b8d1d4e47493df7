"""verl on a CPU: the `cpu` platform, FSDP engines for device `cpu`, and one narrow process-group patch.

verl 0.9 resolves its device through a platform registry (`verl.plugin.platform`, chosen by `VERL_PLATFORM` or
auto-detection) and knows only GPU/NPU platforms. The plugin adds:

1. `PlatformCPU`, registered as ``cpu`` and selected by ``VERL_PLATFORM=cpu`` (never auto-detected): device
   ``cpu``, collective backend ``gloo``, Ray resource ``GPU`` (logical: start Ray with ``num_gpus`` = workers),
   and a device-module shim that answers the ``torch.cuda``-style calls verl makes (memory stats, caches,
   RNG, streams) on a machine without an accelerator.
2. verl's FSDP engines (`FSDPEngineWithLMHead`, `FSDPEngineWithValueHead`) registered for device ``cpu``: they
   are device-agnostic but registered for ``cuda``/``npu`` only. Use ``actor.strategy=fsdp2`` (FSDP1 needs an
   accelerator).
3. The only patch (no registry exists): `initialize_global_process_group_ray` builds the backend string
   ``cpu:gloo,<device>:<backend>``, which on device ``cpu`` names ``cpu`` twice and torch rejects it. On the cpu
   platform the default backend becomes plain ``gloo``. Installed only for the verl versions it was written
   against (`SUPPORTED_VERL`); `check_cpu_run` stops a cpu run at start-up otherwise.

`docs/verl_on_cpu.md` lists the config a cpu run needs (the launch scripts' ``--cpu`` profile sets it).
"""

from __future__ import annotations

import functools
import logging
import os
import platform as host_platform
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch

from verl_agent_ext.verl_plugin.post_import import when_imported

logger = logging.getLogger(__name__)

PLATFORM_NAME = "cpu"
DISTRIBUTED_MODULE = "verl.utils.distributed"
ENGINE_WORKERS_MODULE = "verl.workers.engine_workers"
FSDP_ENGINE_MODULE = "verl.workers.engine.fsdp.transformer_impl"

patch_status: dict[str, str] = {DISTRIBUTED_MODULE: "not imported yet", FSDP_ENGINE_MODULE: "not imported yet"}
"""Per patched/registered module: "installed" or why not."""


def platform_selected() -> bool:
    """True when this process runs verl on the cpu platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


class _CPUDeviceModule(ModuleType):
    """Stands in for ``torch.cuda`` on the cpu platform: what torch.cpu lacks is a no-op or a host answer.

    Memory statistics report 0 (verl only logs them), caches and synchronisation do nothing, RNG calls go to
    torch's CPU generator; everything else falls through to `torch.cpu`.
    """

    def __init__(self) -> None:
        super().__init__("verl_agent_ext_cpu_device")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cpu, name)

    @staticmethod
    def is_available() -> bool:
        return False  # no accelerator: verl's memory helpers skip device-memory work

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def current_device() -> str:
        return "cpu"

    @staticmethod
    def set_device(device: Any) -> None:
        return None

    @staticmethod
    def get_device_name(device: Any = None) -> str:
        return host_platform.processor() or host_platform.machine() or "cpu"

    @staticmethod
    def synchronize(device: Any = None) -> None:
        return None

    @staticmethod
    def empty_cache() -> None:
        return None

    @staticmethod
    def ipc_collect() -> None:
        return None

    @staticmethod
    def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
        return None

    @staticmethod
    def reset_peak_memory_stats(device: Any = None) -> None:
        return None

    @staticmethod
    def memory_allocated(device: Any = None) -> int:
        return 0

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    @staticmethod
    def mem_get_info(device: Any = None) -> tuple[int, int]:
        """(free, total) host memory in bytes."""
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page

    @staticmethod
    def get_rng_state(device: Any = None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, device: Any = None) -> None:
        torch.set_rng_state(state)

    @staticmethod
    def manual_seed(seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed


CPU_DEVICE_MODULE = _CPUDeviceModule()


def _register_platform(module: ModuleType) -> None:
    """Define and register `PlatformCPU` in verl's platform registry (module: `verl.plugin.platform`)."""
    from verl.plugin.platform.platform_base import PlatformBase

    @module.PlatformRegistry.register(platform=PLATFORM_NAME)
    class PlatformCPU(PlatformBase):
        """verl platform for hosts without an accelerator (select with ``VERL_PLATFORM=cpu``)."""

        device_name = "cpu"
        vendor_name = "cpu"
        device_module = CPU_DEVICE_MODULE

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check: bool = False) -> bool:
            return False  # never auto-detected: only VERL_PLATFORM=cpu selects it

        def current_device(self) -> str:  # verl builds torch.device(current_device()): "cpu", not an index
            return "cpu"

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            return None

        def synchronize(self, device_index: int | None = None) -> None:
            return None

        def manual_seed(self, seed: int) -> None:
            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            torch.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            return None

        def empty_cache(self) -> None:
            return None

        def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "VERL_AGENT_EXT_VISIBLE_CPUS"  # nothing reads it; Ray's logical GPUs map to no device

        @contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            return None

        def profiler_stop(self) -> None:
            return None

        def ray_resource_name(self) -> str:
            return "GPU"  # logical: verl's placement groups ask for GPU bundles

        def ray_noset_envvars(self) -> list[str]:
            return []

        def is_ipc_supported(self) -> bool:
            return False

        def cudart(self) -> Any:
            return None


def _patch_process_group(module: ModuleType) -> None:
    """On the cpu platform, `initialize_global_process_group_ray`'s default backend becomes ``gloo``."""
    from verl_agent_ext.verl_plugin.step_metadata import verl_version_supported

    supported, installed = verl_version_supported()
    if not supported:
        patch_status[DISTRIBUTED_MODULE] = f"verl {installed} is not supported by the cpu platform (0.9.x only)"
        return
    original = getattr(module, "initialize_global_process_group_ray", None)
    if original is None:
        patch_status[DISTRIBUTED_MODULE] = "verl.utils.distributed has no initialize_global_process_group_ray"
        return
    if getattr(original, "__verl_agent_ext_patch__", False):
        return

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second: Any = None, backend: str | None = None) -> Any:
        from verl.utils.device import get_device_name

        if backend is None and get_device_name() == "cpu":
            backend = "gloo"  # verl's default "cpu:gloo,cpu:gloo" names the cpu device twice
        return original(timeout_second=timeout_second, backend=backend)

    initialize_global_process_group_ray.__verl_agent_ext_patch__ = True
    module.initialize_global_process_group_ray = initialize_global_process_group_ray
    workers = __import__("sys").modules.get(ENGINE_WORKERS_MODULE)
    if workers is not None and getattr(workers, "initialize_global_process_group_ray", None) is original:
        workers.initialize_global_process_group_ray = initialize_global_process_group_ray
    patch_status[DISTRIBUTED_MODULE] = "installed"


def _register_engines(module: ModuleType) -> None:
    """Register verl's FSDP engines (module: `...engine.fsdp.transformer_impl`) for device ``cpu``."""
    from verl.workers.engine.base import EngineRegistry

    for model_type, engine in (
        ("language_model", module.FSDPEngineWithLMHead),
        ("value_model", module.FSDPEngineWithValueHead),
    ):
        for backend in ("fsdp", "fsdp2"):
            if PLATFORM_NAME not in EngineRegistry._engines.get(model_type, {}).get(backend, {}):
                EngineRegistry.register(model_type=model_type, backend=backend, device=PLATFORM_NAME)(engine)
    patch_status[FSDP_ENGINE_MODULE] = "installed"


def check_cpu_run(config: Any) -> None:
    """Raise at start-up if a cpu-platform run cannot work: patch missing or a GPU-only setting chosen."""
    if not platform_selected():
        return
    from verl.utils.device import get_device_name

    if get_device_name() != "cpu":
        raise RuntimeError(
            "VERL_PLATFORM=cpu but verl's platform is "
            f"{get_device_name()!r}: the verl_agent_ext plugin must load before verl picks a platform"
        )
    import importlib

    for module_name in (DISTRIBUTED_MODULE, FSDP_ENGINE_MODULE):
        importlib.import_module(module_name)
    broken = {name: status for name, status in patch_status.items() if status != "installed"}
    if broken:
        raise RuntimeError(f"the verl_agent_ext cpu platform is not usable: {broken}")
    actor = config.actor_rollout_ref.actor
    problems = []
    if config.trainer.get("device") != "cpu":
        problems.append(f"trainer.device={config.trainer.get('device')} (needs cpu)")
    if actor.strategy != "fsdp2":
        problems.append(f"actor_rollout_ref.actor.strategy={actor.strategy} (needs fsdp2: FSDP1 needs a GPU)")
    if config.actor_rollout_ref.model.get("use_remove_padding", False):
        problems.append("actor_rollout_ref.model.use_remove_padding=True (needs flash-attn; set False)")
    rollout = config.actor_rollout_ref.rollout.name
    from verl_agent_ext.verl_plugin.rollout_registry import ROLLOUT_NAME

    if rollout != ROLLOUT_NAME:
        problems.append(f"actor_rollout_ref.rollout.name={rollout} (only {ROLLOUT_NAME} runs on a CPU)")
    if problems:
        raise ValueError("VERL_PLATFORM=cpu: settings that cannot run on a CPU: " + "; ".join(problems))


def _check_in_validate_config(module: ModuleType) -> None:
    """verl's `validate_config` (module: `verl.utils.config`) also runs `check_cpu_run`."""
    original = getattr(module, "validate_config", None)
    if original is None or getattr(original, "__verl_agent_ext_cpu_check__", False):
        return

    @functools.wraps(original)
    def validate_config(config: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(config, *args, **kwargs)
        check_cpu_run(config)
        return result

    validate_config.__verl_agent_ext_cpu_check__ = True
    module.validate_config = validate_config


def install() -> None:
    """Register the platform and the engines, and install the process-group patch, as verl imports them."""
    when_imported("verl.plugin.platform", _register_platform)
    when_imported(DISTRIBUTED_MODULE, _patch_process_group)
    when_imported(FSDP_ENGINE_MODULE, _register_engines)
    when_imported("verl.utils.config", _check_in_validate_config)


install()
