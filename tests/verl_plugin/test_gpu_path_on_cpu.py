"""The GPU path as a cluster user meets it, checked on the CPU: install line, start-up checks, mini-batch order and
sizes, Ray CPUs, and the `--dry-run` resource plan against described nodes (no GPU runs here)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from packaging.requirements import Requirement
from tensordict import TensorDict
from test_recipe_and_examples_on_cpu import ROOT, composed, script_overrides

from verl_agent_ext.verl_plugin import startup_check
from verl_agent_ext.verl_plugin.resource_plan import NodeSpec, check_ray_cpus, cpu_needs, plan_resources

LAUNCH_SCRIPTS = sorted(path.name for path in (ROOT / "examples").glob("run_*.sh"))
TWO_H100 = NodeSpec.parse("2x80GB,32cpu")
ONE_24GB = NodeSpec.parse("1x24GB,8cpu")


@pytest.fixture(scope="module")
def script_configs():
    """Each launch script's composed and checked config (the same check `--dry-run` runs)."""
    configs = {}
    for script in LAUNCH_SCRIPTS:
        config = composed(script_overrides(script))
        startup_check.check(config)
        configs[script] = config
    return configs


# 1. install ---------------------------------------------------------------------------------------------------


def extras_closure(distribution: str, extras: set[str]) -> set[str]:
    """Names of the requirements `distribution[extras]` installs (its own extras followed recursively)."""
    names, pending, seen = set(), set(extras), set()
    requirements = [Requirement(text) for text in importlib.metadata.requires(distribution) or []]
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for requirement in requirements:
            if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
                continue
            if requirement.name.lower() == distribution:
                pending |= set(requirement.extras) - seen
            else:
                names.add(requirement.name.lower())
    return names


def test_readme_gpu_install_brings_flash_attn_with_the_pinned_verl():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r'pip install "verl\[([a-z0-9_,-]+)\]==([0-9.]+)"', readme)
    assert match, "README has no pinned verl install line"
    extras, version = set(match.group(1).split(",")), match.group(2)
    assert version == importlib.metadata.version("verl")
    installed = extras_closure("verl", extras)
    assert {"flash-attn", "vllm", "transferqueue"} <= installed
    assert "flash-attn" not in extras_closure("verl", {"vllm"})  # why the fsdp extra is needed
    assert f"verl[{match.group(1)}]=={version}" in startup_check.VERL_INSTALL  # the start-up check says the same


def test_attention_check_on_cuda_names_the_exact_fix(script_configs, monkeypatch):
    config = script_configs["run_scpo_alfworld.sh"].copy()
    monkeypatch.setattr(startup_check, "cuda_available", lambda: True)
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # not importable, as on a fresh verl[vllm] install
    with pytest.raises(RuntimeError) as error:
        startup_check.check_attention_implementation(config)
    message = str(error.value)
    assert startup_check.VERL_INSTALL in message and "attn_implementation=sdpa" in message
    with open_dict(config):
        config.actor_rollout_ref.model.override_config.attn_implementation = "sdpa"
    startup_check.check_attention_implementation(config)  # sdpa needs nothing more
    monkeypatch.setattr(startup_check, "cuda_available", lambda: False)
    startup_check.check_attention_implementation(script_configs["run_scpo_alfworld.sh"])  # not checked off CUDA


# start-up check: every estimator -----------------------------------------------------------------------------


def test_start_up_check_covers_every_registered_estimator(script_configs):
    from verl_agent_ext.credit.contract import SETTINGS_READERS
    from verl_agent_ext.estimators import register_estimators

    register_estimators()
    from verl.trainer.ppo import core_algos

    ours = {name for name, fn in core_algos.ADV_ESTIMATOR_REGISTRY.items() if fn.__module__.startswith("verl_agent")}
    assert ours == set(startup_check.REGISTERED_NAMES) == set(SETTINGS_READERS)
    for script, bad in [
        ("run_3spo_alfworld.sh", "algorithm.sspo.zeta=-1"),
        ("run_empg_alfworld.sh", "algorithm.empg.k=-1"),
    ]:
        config = composed(script_overrides(script, bad))
        with pytest.raises(ValueError, match=bad.split(".")[-1].split("=")[0]):
            startup_check.check(config)


def test_start_up_check_refuses_webshop_rows_of_another_catalog(tmp_path):
    from verl_agent_ext.agent.config import EnvLoopConfig
    from verl_agent_ext.cli import main
    from verl_agent_ext.envs.webshop.generate import write_catalog

    shop, data = tmp_path / "shop", tmp_path / "data"
    write_catalog(shop, 40, seed=1)
    assert main(["prepare-data", "--env", "webshop", "--out", str(data), "--data-dir", str(shop)]) == 0
    files = [f"data.train_files={data / 'train.parquet'}", f"data.val_files={data / 'val.parquet'}"]
    config = composed(script_overrides("run_scpo_webshop.sh", *files))  # the env is not given --data-dir
    with pytest.raises(ValueError, match="loads catalog .* every goal index would name another goal"):
        startup_check.check_task_rows(config, EnvLoopConfig.from_mapping(config.env))
    config = composed(script_overrides("run_scpo_webshop.sh", *files, f"+env.env_kwargs.webshop.data_dir={shop}"))
    startup_check.check_task_rows(config, EnvLoopConfig.from_mapping(config.env))


# 3. mini-batch order -------------------------------------------------------------------------------------------


def test_every_mini_batch_mixes_successes_and_failures(script_configs):
    """Rows in TransferQueue insertion order (successes finish first, then failures, padding last) through verl's own
    mini-batch split (`make_iterator`, what the actor's `train_mini_batch` uses) with the recipe's settings."""
    from verl.utils.tensordict_utils import make_iterator

    config = script_configs["run_scpo_alfworld.sh"]
    actor = config.actor_rollout_ref.actor
    rows = actor.ppo_mini_batch_size * config.actor_rollout_ref.rollout.n * 3  # three optimizer steps
    successes, failures = rows // 4, rows // 2
    kind = torch.tensor([1] * successes + [0] * failures + [-1] * (rows - successes - failures))
    batches = make_iterator(
        TensorDict({"kind": kind}, batch_size=rows),
        mini_batch_size=actor.ppo_mini_batch_size * config.actor_rollout_ref.rollout.n,
        epochs=actor.ppo_epochs,
        seed=actor.data_loader_seed,
        dataloader_kwargs={"shuffle": actor.shuffle},  # as PPOTrainer._update_actor passes it
    )
    for batch in batches:
        assert (batch["kind"] == 1).any() and (batch["kind"] == 0).any()
    # the path this follows in verl 0.9.1: the trainer passes actor.shuffle, the worker hands it to make_iterator
    import inspect

    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.workers.engine_workers import TrainingWorker

    assert '"shuffle": self.config.actor_rollout_ref.actor.shuffle' in inspect.getsource(PPOTrainer._update_actor)
    assert "dataloader_kwargs=dataloader_kwargs" in inspect.getsource(TrainingWorker.train_mini_batch)


# 5. mini-batch size ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", LAUNCH_SCRIPTS)
def test_mini_batch_fits_the_rows_of_an_iteration(script, script_configs):
    config = script_configs[script]
    n = config.actor_rollout_ref.rollout.n
    rows_per_iteration = config.data.train_batch_size * n * config.env.max_steps  # at most: every episode full length
    assert config.actor_rollout_ref.actor.ppo_mini_batch_size * n <= rows_per_iteration


# 6. Ray CPUs ----------------------------------------------------------------------------------------------------


def test_too_few_ray_cpus_fail_fast_with_the_numbers_and_overrides_that_fit(script_configs):
    config = script_configs["run_scpo_alfworld.sh"].copy()
    needed = sum(line.gb for line in cpu_needs(config))
    assert needed == 2 * 3 + 9 + 1 + 8 * 2 * 0.5
    check_ray_cpus(config, available=32)
    with pytest.raises(RuntimeError) as error:
        check_ray_cpus(config, available=12)
    message = str(error.value)
    assert "Ray has 12 CPUs, this run holds 24" in message and "env pool 8" in message
    overrides = re.search(r"add the overrides (.*)\.$", message).group(1).split()
    composed_fix = composed(script_overrides("run_scpo_alfworld.sh", *overrides))
    check_ray_cpus(composed_fix, available=12)  # the advice fits


def test_verl_trainer_start_in_its_task_runner_checks_rays_cpus(script_configs, monkeypatch):
    """verl builds its trainer in the TaskRunner actor: there, Ray's CPUs are the run's (faked: no cluster here)."""
    import ray
    from verl.trainer.ppo.v1 import PPOTrainerSync

    class InsideAnActor:
        @staticmethod
        def get_actor_id() -> str:
            return "task-runner"

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 12.0})
    monkeypatch.setattr(ray, "get_runtime_context", InsideAnActor)
    with pytest.raises(RuntimeError, match="Ray has 12 CPUs, this run holds 24"):
        PPOTrainerSync(config=script_configs["run_scpo_alfworld.sh"])
    bad = composed(script_overrides("run_empg_alfworld.sh", "algorithm.empg.zeta=-1"))  # verl's own launcher too
    with pytest.raises(ValueError, match="empg.zeta"):
        PPOTrainerSync(config=bad)


def test_cpu_profile_fits_its_own_ray():
    env = {**os.environ, "VAE_PRINT_ONLY": "1", "PYTHONPATH": str(ROOT)}
    script = ROOT / "examples" / "run_scpo_alfworld.sh"
    result = subprocess.run(["bash", str(script), "--cpu"], capture_output=True, text=True, env=env, check=True)
    config = composed(shlex.split(result.stdout.strip().removeprefix("command:"))[3:])
    check_ray_cpus(config, available=config.ray_kwargs.ray_init.num_cpus)
    assert config.actor_rollout_ref.actor.shuffle  # the CPU trainer updates on shuffled mini-batches too


# 2, 7, 8. the resource plan -------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", LAUNCH_SCRIPTS)
def test_plan_fits_two_80gb_gpus_and_warns_on_one_24gb(script, script_configs):
    config = script_configs[script]
    plan = plan_resources(config, TWO_H100)
    assert plan.fits, plan.lines()
    assert {phase.label for phase in plan.phases} >= {"generate", "old log-prob", "actor update"}
    small = plan_resources(config, ONE_24GB)
    assert not small.fits and any(line.startswith("WARNING") for line in small.lines())


def test_istar_prm_is_offloaded_and_counted(script_configs):
    config = script_configs["run_istar_webshop.sh"]
    plan = plan_resources(config, TWO_H100)
    labels = {phase.label: phase.gb for phase in plan.phases}
    assert "PRM update" in labels and labels["generate"] < 45  # PRM and actor states are off the GPU meanwhile
    config = composed(script_overrides("run_istar_webshop.sh", "algorithm.istar.prm_offload=false"))
    assert not plan_resources(config, TWO_H100).fits  # a resident 7B PRM does not fit beside the update


def test_webshop_log_prob_micro_batch_of_32_would_not_fit(script_configs):
    config = composed(
        script_overrides("run_scpo_webshop.sh", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32")
    )
    plan = plan_resources(config, TWO_H100)
    assert not plan.fits and "old log-prob" in plan.warnings[-1]


def test_dry_run_prints_the_plan_for_the_described_node():
    """The one `--dry-run` subprocess of the suite (each takes ~30 s): command, check, notices, plan, warnings."""
    script = ROOT / "examples" / "run_istar_webshop.sh"
    env = {**os.environ, "PYTHON": sys.executable, "VAE_NODE": "1x24GB,8cpu"}
    result = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]  # a plan that does not fit warns; only errors fail
    assert result.stdout.startswith("command:")
    assert "resource plan (2 GPU(s) in the run; node: 1 x 24 GB, 8 CPUs)" in result.stdout
    assert "WARNING: the run asks for trainer.n_gpus_per_node=2, the node has 1" in result.stdout
    assert "resource plan: WILL NOT FIT" in result.stdout and "dry run OK" in result.stdout
    assert "NOTICE: WebShop plays a GENERATED toy catalog" in result.stdout


def test_node_descriptions_parse():
    assert NodeSpec.parse("2x80GB,32cpu") == NodeSpec(2, 80.0, 32)
    assert NodeSpec.parse("8 x 141") == NodeSpec(8, 141.0, None)
    with pytest.raises(ValueError, match="GPUSxMEMORY"):
        NodeSpec.parse("two H100s")


def test_node_is_measured_with_nvidia_smi_without_a_cuda_context(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 81559\necho 81559\n")  # two H100 80GB (MiB, as nvidia-smi reports them)
    fake.chmod(0o755)
    monkeypatch.delenv("VAE_NODE", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    node = NodeSpec.detect()
    assert node.gpus == 2 and round(node.gpu_memory_gb, 1) == 85.5 and node.cpus == os.cpu_count()
    monkeypatch.setenv("VAE_NODE", "1x24GB")
    assert NodeSpec.detect() == NodeSpec(1, 24.0, None)


def test_model_size_is_read_from_a_local_folder_or_the_hub_cache(tmp_path, monkeypatch):
    from verl_agent_ext.verl_plugin.resource_plan import model_shape

    config = {"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100, "intermediate_size": 128}
    (tmp_path / "config.json").write_text(__import__("json").dumps({**config, "num_attention_heads": 4}))
    shape = model_shape(str(tmp_path))
    assert shape.params == 2 * (64 * 3 * 64 + 64 * 64 + 3 * 64 * 128) + 2 * 100 * 64
    assert model_shape("Qwen/Qwen2.5-7B-Instruct").layers == 28 and model_shape(str(Path("nowhere"))) is None
    import huggingface_hub  # a hub id whose config.json is in the Hugging Face cache (nothing downloaded)

    cached = {("org/tiny-model", "config.json"): str(tmp_path / "config.json")}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: cached.get((repo, name)))
    assert model_shape("org/tiny-model") == shape and model_shape("org/other-model") is None
