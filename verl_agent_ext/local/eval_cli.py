"""`verl-agent-ext eval`: success rate and mean steps per task type of one or more policies on held-out ALFWorld games.

    verl-agent-ext eval --policy runs/quickstart_cpu                      # a train-local run (its checkpoint)
    verl-agent-ext eval --policy smollm2-135m --policy runs/quickstart_cpu --episodes 24   # before vs after
    verl-agent-ext eval --policy runs/alfworld-sft --temperature 1.0      # a PEFT adapter folder (warm-start)

A policy is a train-local output folder or its checkpoint/ (the run's model, LoRA and prompt settings are used), a
PEFT adapter folder or shipped adapter name (with the prompt settings of its demonstrations), or a model
(`smollm2-135m`, a Hugging Face folder or hub name). Every policy plays the same games (the split's tasks,
round-robin over task types) through the same agent loop and prompts as training, one episode each, greedy by
default. Prints one table (success / mean steps per task type, one column per policy) and writes the numbers as
JSON (--out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate policies (train-local run, adapter or model) on held-out ALFWorld games, per task type",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--policy", action="append", required=True, help="run folder, adapter folder or model (repeat)")
    parser.add_argument("--env", default="alfworld", help="environment (alfworld; WebShop is not in train-local yet)")
    parser.add_argument("--split", default="eval_in_distribution", help="task split (default eval_in_distribution)")
    parser.add_argument("--episodes", type=int, default=12, help="games, one episode each (default 12)")
    parser.add_argument("--task-types", default=None, help="comma-separated task types (default: the run's / all)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy, default)")
    parser.add_argument("--max-steps", type=int, default=None, help="step limit (default: the run's, else 5)")
    parser.add_argument("--games-dir", default=None, help="folder of ALFWorld games (default: the generated set)")
    parser.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    parser.set_defaults(func=run)


def policy_config(policy: str, args: argparse.Namespace, out_dir: str):
    """(LocalTrainConfig, checkpoint folder or None) that plays `policy` with this command's settings."""
    from verl_agent_ext.errors import UserError
    from verl_agent_ext.local.checkpoint import find_checkpoint, read_config
    from verl_agent_ext.local.config import LocalTrainConfig
    from verl_agent_ext.policy.model import resolve_adapter, shipped_adapters

    path = Path(policy).expanduser()
    checkpoint = find_checkpoint(path / "checkpoint") or find_checkpoint(path)
    settings: dict = {}
    if checkpoint is not None:
        names = {field.name for field in dataclasses.fields(LocalTrainConfig)}
        settings = {key: value for key, value in read_config(checkpoint).items() if key in names}
    elif (path / "adapter_config.json").is_file() or policy in shipped_adapters():
        adapter = resolve_adapter(policy)
        settings["init_adapter"] = str(adapter)
        settings.update(adapter_prompt_settings(adapter))
    elif path.exists() and not (path / "config.json").is_file():
        raise UserError(
            f"--policy {policy}: neither a train-local run (checkpoint/), a PEFT adapter folder nor a model folder"
        )
    else:
        settings["model"] = policy
    settings.update(out_dir=out_dir, resume=False, env=args.env, num_threads=args.num_threads)
    settings.update(groups_per_iter=1, group_size=max(1, min(args.episodes, 8)))  # env pool size: 8 at a time
    settings["max_steps"] = args.max_steps or settings.get("max_steps", 5)
    if args.task_types is not None:
        settings["task_types"] = args.task_types
    if args.games_dir is not None:
        settings["games_dir"] = args.games_dir
    else:  # enough generated games of each type for --episodes (the split is cached per size)
        from verl_agent_ext.envs.alfworld.generator import TASK_TYPES

        types = len([t for t in settings.get("task_types", "").split(",") if t]) or len(TASK_TYPES)
        settings["games_per_type"] = max(settings.get("games_per_type", 2), -(-args.episodes // types))
    return LocalTrainConfig.from_dict(settings), checkpoint


def adapter_prompt_settings(adapter: Path) -> dict:
    """The prompt settings (history_length, max_actions, prompt_template) the adapter's demonstrations were written
    with, from its warm_start.json; {} when the folder has none (a PEFT adapter made elsewhere)."""
    record = adapter / "warm_start.json"
    if not record.is_file():
        return {}
    data = json.loads(record.read_text()).get("data_info", {}).get("settings", {})
    return {key: data[key] for key in ("history_length", "max_actions", "prompt_template") if key in data}


def per_task_type(episodes: list) -> dict[str, dict[str, float]]:
    """{task type or "all": {"episodes", "success_rate", "mean_steps"}} of `LocalTrainer.play` output."""
    finals = {o.extra_fields["traj_uid"]: o.extra_fields for _, episode in episodes for o in episode}.values()
    by_type: dict[str, list] = defaultdict(list)
    for fields in finals:
        for key in (fields["task_type"], "all"):
            by_type[key].append((bool(fields["episode_success"]), int(fields["episode_length"])))
    return {
        key: {
            "episodes": len(rows),
            "success_rate": sum(won for won, _ in rows) / len(rows),
            "mean_steps": sum(steps for _, steps in rows) / len(rows),
        }
        for key, rows in sorted(by_type.items(), key=lambda item: (item[0] == "all", item[0]))
    }


def evaluate_policy(policy: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from verl_agent_ext.envs.play_cli import interleave_by_type
    from verl_agent_ext.errors import user_input_errors
    from verl_agent_ext.local.checkpoint import load_checkpoint
    from verl_agent_ext.local.trainer import LocalTrainer, load_tasks

    with tempfile.TemporaryDirectory(prefix="verl-agent-ext-eval-") as out_dir:
        with user_input_errors():  # unknown model, bad folder, unknown split or task types
            config, checkpoint = policy_config(policy, args, out_dir)
            tasks = interleave_by_type(load_tasks(config, args.split))[: args.episodes]
            if not tasks:
                raise ValueError(f"no {args.split} tasks of task types {config.task_types or 'all'}")
            trainer = LocalTrainer(config, log=lambda line: None)
        try:
            if checkpoint is not None:
                load_checkpoint(checkpoint, trainer.model, trainer.optimizer)
            print(f"[eval] {policy}: {len(tasks)} {args.split} games, <= {config.max_steps} steps", file=sys.stderr)
            return per_task_type(trainer.play(tasks, 1, args.temperature, f"eval {Path(policy).name}"))
        finally:
            trainer.close()


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: one row per task type, one `success / mean steps` column per policy."""
    types = list(dict.fromkeys(key for result in results.values() for key in result))
    lines = [
        "| task type | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for task_type in types:
        cells = []
        for result in results.values():
            row = result.get(task_type)
            cells.append(f"{row['success_rate']:.2f} / {row['mean_steps']:.1f} (n={row['episodes']})" if row else "-")
        lines.append(f"| {task_type} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import os

    from verl_agent_ext.errors import UserError, writable_folder

    if args.env != "alfworld":
        raise UserError(f"--env {args.env!r}: eval plays ALFWorld only for now (train-local's environment)")
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if args.out is not None:
        writable_folder(args.out.expanduser().resolve().parent, "--out's folder")
    results = {policy: evaluate_policy(policy, args) for policy in args.policy}
    print("success rate / mean steps per task type" + (" (greedy)" if args.temperature == 0 else ""))
    print(table(results))
    if args.out is not None:
        settings = {key: value for key, value in vars(args).items() if key not in ("func", "out")}
        args.out.write_text(json.dumps({"settings": settings, "results": results}, indent=2))
        print(f"[eval] wrote {args.out}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as train-local: skip the interpreter teardown that can crash after ALFWorld runs
