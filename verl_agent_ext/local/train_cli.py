"""`verl-agent-ext train-local`: single-process RL training of a small LLM agent on ALFWorld (CPU or one GPU).

Every `LocalTrainConfig` field is an option (`--groups-per-iter 2`, `--no-resume`); any verl config key can be
set with `--set` in hydra syntax (`--set +algorithm.scpo.theta=0.8`). Writes metrics.jsonl, learning_curve.png
and checkpoint/ under --out-dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

from verl_agent_ext.local.config import LocalTrainConfig

HELP = {
    "out_dir": "output folder: metrics.jsonl, learning_curve.png, checkpoint/",
    "iterations": "total iterations (a resumed run continues up to this number)",
    "resume": "continue from OUT_DIR/checkpoint when it exists (same estimator, model, adapter and environment)",
    "force_resume": "resume even when the checkpoint was written with another estimator, model, adapter or environment",
    "model": "smollm2-135m (offline default), a local HF folder or a hub name",
    "lora_rank": "LoRA rank (0: train all weights)",
    "init_adapter": "start from this PEFT LoRA adapter folder (e.g. `warm-start` output); its rank replaces "
    "--lora-rank",
    "games_seed": "seed of the generated games",
    "task_types": "comma-separated ALFWorld task types to train on (default: all six)",
    "solvable_within": "train only on the tasks the searching expert (the warm start's demonstrator) wins within this "
    "many steps (0: all tasks; held-out evaluation games are never filtered)",
    "games_dir": "folder of ALFWorld games (default: the cached generated set)",
    "games_per_type": "generated games per ALFWorld task type (6 types)",
    "groups_per_iter": "tasks per iteration",
    "group_size": "episodes per task (the group the estimator compares)",
    "max_steps": "environment steps per episode",
    "response_length": "generated tokens per step",
    "estimator": "verl advantage estimator: scpo, gigpo, grpo, ...",
    "garbage_tokens": "sample uniformly random tokens (bad-input check: every action invalid, the run finishes)",
    "kl_coef": "KL loss coefficient to the frozen base model (0: off)",
    "seed": "seed of task sampling, generation and initialisation",
    "save_every": "iterations between checkpoints (the last iteration and Ctrl-C always save)",
    "device": "auto (cuda when available), cpu, cuda, cuda:1, ...",
    "num_threads": "torch CPU threads (0: torch's default)",
    "lora_alpha": "LoRA scaling alpha",
    "env": "environment (alfworld)",
    "history_length": "past turns shown in each prompt",
    "response_prefix": "text prefilled at the start of every answer, e.g. '<action>' (small models keep the format); ''"
    " for none",
    "max_actions": "admissible actions listed in the prompt",
    "prompt_length": "prompt budget in tokens (history is dropped to fit)",
    "temperature": "sampling temperature (log-probs use logits / temperature, as verl)",
    "top_p": "nucleus sampling",
    "gamma": "discount of step rewards (algorithm.gamma)",
    "invalid_action_penalty": "penalty of invalid steps (algorithm.gigpo.invalid_action_penalty)",
    "lr": "AdamW learning rate",
    "ppo_epochs": "passes over each iteration's rows (1: on-policy, old log-prob = current)",
    "micro_batch_size": "step rows per forward/backward",
    "clip_ratio": "PPO clip ratio (actor.clip_ratio[_low/_high])",
    "loss_agg_mode": "verl loss aggregation: token-mean, seq-mean-token-mean, ...",
    "kl_type": "verl kl_penalty type: low_var_kl, kl, mse, ...",
    "entropy_coeff": "entropy bonus coefficient (actor.entropy_coeff)",
    "grad_clip": "gradient-norm clip",
    "prompt_template": "ALFWorld prompt template ({task} {history} {step} {observation} {actions}); '' = env default",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-local",
        help="train a small LLM agent on ALFWorld in one process (CPU / one GPU)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(LocalTrainConfig)
    for field in dataclasses.fields(LocalTrainConfig):
        if field.name == "verl_overrides":
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        kind = hints[field.name]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=HELP.get(field.name))
        else:
            value_type = str if kind in (str, str | None) else kind
            parser.add_argument(flag, type=value_type, default=default, help=HELP.get(field.name))
    parser.add_argument("--out", dest="out_dir", default=argparse.SUPPRESS, help="alias of --out-dir")
    parser.add_argument(
        "--set",
        dest="verl_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a verl config override in hydra syntax (repeatable)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, then end the process at once: everything is closed and saved, and skipping the interpreter's
    teardown avoids an intermittent native crash seen there after ALFWorld runs (exit status 139 / -11)."""
    status = _train(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _train(args: argparse.Namespace) -> int:
    from verl_agent_ext.errors import removed_if_left_empty, user_input_errors, writable_folder
    from verl_agent_ext.local.config import check_settings

    names = {field.name for field in dataclasses.fields(LocalTrainConfig)}
    with user_input_errors():  # bad values, unknown estimator/model/games folder: one line, exit 2
        config = LocalTrainConfig.from_dict({key: value for key, value in vars(args).items() if key in names})
        check_settings(config)  # every setting, before the output folder exists
    with removed_if_left_empty(config.out_dir), user_input_errors():
        writable_folder(config.out_dir, "--out-dir")
        from verl_agent_ext.local.trainer import Interrupted, LocalTrainer

        print(f"[train-local] {config.estimator} on {config.env} with {config.model}; output in {config.out_dir}")
        trainer = LocalTrainer(config)
    try:
        records = trainer.train()
    except Interrupted as stop:
        print(f"[train-local] {stop}", file=sys.stderr)
        return 130
    finally:
        trainer.close()
    if records:
        last = records[-1]
        print(
            f"[train-local] done: {len(records)} iterations, last success rate {last['rollout/success_rate']:.2f}, "
            f"metrics in {config.out_dir}/metrics.jsonl, plot in {config.out_dir}/learning_curve.png"
        )
    return 0
