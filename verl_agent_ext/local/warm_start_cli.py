"""`verl-agent-ext warm-start`: supervised LoRA warm start on expert demonstrations (CPU or one GPU).

    verl-agent-ext expert-data --env alfworld --out runs/alfworld-expert --task-types pick_and_place_simple
    verl-agent-ext warm-start --data runs/alfworld-expert --steps 300 --out runs/alfworld-sft
    verl-agent-ext train-local --init-adapter runs/alfworld-sft ...

Prints the SFT loss and the held-out success rate; the adapter (a plain PEFT folder) is cached by model, data and
settings, so running the same command again reuses it. --out copies it to a folder of your choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import typing
from pathlib import Path

from verl_agent_ext.local.warm_start import WarmStartConfig

HELP = {
    "data": "an `expert-data` output folder",
    "steps": "optimizer steps",
    "batch_size": "step rows per optimizer step",
    "lr": "AdamW learning rate",
    "seed": "seed of batch order, initialisation and evaluation sampling",
    "model": "smollm2-135m (offline default), a local HF folder or a hub name",
    "lora_rank": "LoRA rank",
    "lora_alpha": "LoRA scaling alpha",
    "prompt_length": "prompt budget in tokens",
    "response_prefix": "prefilled answer start (as train-local's --response-prefix)",
    "eval_episodes": "held-out games played after training (0: none)",
    "eval_task_types": "comma-separated ALFWorld task types of the held-out games (default: the data's)",
    "eval_max_steps": "step limit of the held-out episodes",
    "eval_temperature": "sampling temperature of the held-out episodes (0: greedy)",
    "num_threads": "torch CPU threads (0: torch's default)",
    "device": "auto (cuda when available), cpu, cuda, ...",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "warm-start",
        help="supervised LoRA warm start on expert-data demonstrations; reports SFT loss and held-out success",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hints = typing.get_type_hints(WarmStartConfig)
    for field in dataclasses.fields(WarmStartConfig):
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING
        default = None if required else field.default
        parser.add_argument(
            flag, type=hints[field.name], default=default, required=required, help=f"{HELP[field.name]} ({default})"
        )
    parser.add_argument("--out", type=Path, default=None, help="also copy the adapter folder here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Warm start, then end the process at once (see `train_cli.run`: ALFWorld's native teardown)."""
    from verl_agent_ext.errors import existing_folder, user_input_errors
    from verl_agent_ext.local.warm_start import warm_start

    names = {field.name for field in dataclasses.fields(WarmStartConfig)}
    with user_input_errors():  # bad values, a folder that is not expert-data output
        config = WarmStartConfig(**{key: value for key, value in vars(args).items() if key in names})
        existing_folder(config.data, "--data")
        from verl_agent_ext.agent.expert_data_cli import read_info

        read_info(config.data)
    result = warm_start(config)
    record = result.record
    heldout = record.get("heldout", {})
    print(
        f"[warm-start] {record['train_rows']} demonstration steps, {config.steps} steps: SFT loss "
        f"{record['sft_loss_first']:.3f} -> {record['sft_loss_last']:.3f} ({record['train_seconds']:.0f} s)"
    )
    if heldout:
        print(
            f"[warm-start] held-out: success {heldout['eval/success_rate']:.2f}, invalid actions "
            f"{heldout['eval/invalid_action_rate']:.2f} over {heldout['eval/episodes']:.0f} games "
            f"(<= {config.eval_max_steps} steps, temperature {config.eval_temperature})"
        )
    if args.out is not None:
        shutil.rmtree(args.out, ignore_errors=True)
        shutil.copytree(result.adapter_dir, args.out)
    print(f"[warm-start] adapter: {args.out or result.adapter_dir}")
    print(json.dumps({"adapter": str(args.out or result.adapter_dir), "cached": result.cached}))
    sys.stdout.flush()
    os._exit(0)
