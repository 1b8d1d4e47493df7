"""The cpu platform (`VERL_PLATFORM=cpu`): verl resolves device, backend, engines and the rollout backend through
the plugin, the process-group patch gives a working gloo group, and bad settings stop a cpu run at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types

import pytest
from omegaconf import OmegaConf

from verl_agent_ext.verl_plugin import cpu_platform

PROBE = textwrap.dedent(
    """
    import verl
    import torch
    from verl.utils.device import get_device_name, get_device_id, get_nccl_backend, get_torch_device
    from verl.utils.distributed import initialize_global_process_group_ray
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import get_rollout_replica_class

    assert (get_device_name(), get_nccl_backend(), get_device_id()) == ("cpu", "gloo", "cpu")
    assert torch.device(get_device_id()).type == "cpu"
    device = get_torch_device()
    device.empty_cache(); device.synchronize(); device.set_device(0)
    assert device.memory_allocated() == 0 and device.mem_get_info()[1] > 0 and not device.is_available()
    device.set_rng_state(device.get_rng_state())
    assert EngineRegistry.get_engine_cls("language_model", "fsdp2") is FSDPEngineWithLMHead
    assert get_rollout_class("transformers").__name__ == "HFServerAdapter"
    assert get_rollout_replica_class("transformers").__name__ == "HFReplica"
    initialize_global_process_group_ray()  # verl's default would be "cpu:gloo,cpu:gloo"
    assert torch.distributed.get_backend() == "gloo"
    tensor = torch.ones(2)
    torch.distributed.all_reduce(tensor)
    assert tensor.tolist() == [1.0, 1.0]
    print("PROBE OK")
    """
)


def test_verl_runs_on_the_cpu_platform_in_a_fresh_process():
    env = {
        **os.environ,
        "VERL_PLATFORM": "cpu",
        "RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29517",
    }
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=180)
    assert "PROBE OK" in result.stdout, result.stderr[-3000:]


def test_platform_is_never_auto_detected():
    from verl.plugin.platform import PlatformRegistry

    platform = PlatformRegistry.get("cpu")()
    assert not platform.is_platform_available(use_smi_check=True)
    assert platform.ray_resource_name() == "GPU" and platform.communication_backend_name() == "gloo"


def test_unsupported_verl_version_leaves_the_patch_out(monkeypatch):
    from verl_agent_ext.verl_plugin import step_metadata

    monkeypatch.setattr(step_metadata, "verl_version_supported", lambda: (False, "0.11.0"))
    monkeypatch.setitem(cpu_platform.patch_status, cpu_platform.DISTRIBUTED_MODULE, "not imported yet")
    module = types.ModuleType("fake_distributed")
    module.initialize_global_process_group_ray = lambda timeout_second=None, backend=None: backend
    cpu_platform._patch_process_group(module)
    assert "0.11.0" in cpu_platform.patch_status[cpu_platform.DISTRIBUTED_MODULE]
    assert module.initialize_global_process_group_ray() is None  # unpatched


def cpu_config(**changes):
    config = OmegaConf.create(
        {
            "trainer": {"device": "cpu"},
            "actor_rollout_ref": {
                "actor": {"strategy": "fsdp2"},
                "model": {"use_remove_padding": False},
                "rollout": {"name": "transformers"},
            },
        }
    )
    for key, value in changes.items():
        OmegaConf.update(config, key, value)
    return config


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("actor_rollout_ref.actor.strategy", "fsdp", "fsdp2"),
        ("actor_rollout_ref.model.use_remove_padding", True, "flash-attn"),
        ("actor_rollout_ref.rollout.name", "vllm", "only transformers"),
        ("trainer.device", "cuda", "trainer.device=cuda"),
    ],
)
def test_cpu_run_with_a_gpu_only_setting_stops_at_start_up(monkeypatch, key, value, message):
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    monkeypatch.setattr("verl.utils.device.get_device_name", lambda: "cpu")
    cpu_platform.check_cpu_run(cpu_config())  # the profile's settings pass
    with pytest.raises(ValueError, match=message):
        cpu_platform.check_cpu_run(cpu_config(**{key: value}))


def test_check_is_a_no_op_without_the_cpu_platform(monkeypatch):
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    cpu_platform.check_cpu_run(cpu_config(**{"actor_rollout_ref.rollout.name": "vllm"}))
