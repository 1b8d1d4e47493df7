"""`verl-agent-ext prepare-data`: train/val parquet files of task rows in verl's dataset format.

    verl-agent-ext prepare-data --env alfworld --out ~/data/verl-agent-ext/alfworld
    verl-agent-ext prepare-data --env webshop --out ~/data/verl-agent-ext/webshop --val-size 200

ALFWorld: the official splits when $ALFWORLD_DATA holds them (train 3,553 games; validation
eval_out_of_distribution 134 or eval_in_distribution 140), otherwise the cached generated games (generated on
first use; --per-type games of each of the six task types per split). WebShop: the goals of the catalog in
--data-dir (original files or `webshop-generate` output), otherwise the default generated catalog.
ALFWorld rows can be narrowed to --task-types and, for training, to the games the searching expert wins within
--solvable-within steps (as `train-local --solvable-within`).

One row per task (verl repeats it rollout.n times): `env_name`, `task_id`, `task_type`, `split` name the task;
`agent_name` selects the environment agent loop; `prompt` is a one-line description (verl's dataset requires a
chat prompt; the agent loop renders the real prompts); `data_source` is the env name for training rows and
`<env>/<task_type>` for validation rows, so verl's validation metrics come per task type; `data_fingerprint`
(WebShop: the catalog's fingerprint) lets the environment refuse rows prepared from another catalog.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from verl_agent_ext.agent import AGENT_LOOP_NAME
from verl_agent_ext.errors import UserError, removed_if_left_empty, user_input_errors, writable_folder

ENVS = ("alfworld", "webshop")
ALFWORLD_VAL_SPLITS = ("eval_out_of_distribution", "eval_in_distribution")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare-data",
        help="write train/val parquet task rows for verl",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--env", required=True, choices=ENVS, help="environment")
    parser.add_argument("--out", required=True, type=Path, help="output folder (train.parquet, val.parquet)")
    parser.add_argument("--train-size", type=int, default=None, help="keep the first N training tasks")
    parser.add_argument("--val-size", type=int, default=None, help="keep the first N validation tasks")
    parser.add_argument(
        "--val-split",
        default=None,
        help=f"ALFWorld: {'|'.join(ALFWORLD_VAL_SPLITS)} (default: the first); WebShop: dev|test (default test)",
    )
    parser.add_argument("--per-type", type=int, default=10, help="ALFWorld generated games per task type per split")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated games / catalog")
    parser.add_argument("--task-types", default="", help="ALFWorld: comma-separated task types to keep (default: all)")
    parser.add_argument(
        "--solvable-within",
        type=int,
        default=0,
        help="ALFWorld: training tasks the searching expert wins within N steps only (0: all; see train-local)",
    )
    parser.add_argument("--data-dir", default=None, help="WebShop catalog folder (default: generated catalog)")
    parser.set_defaults(func=run)


def task_rows(tasks: list, validation: bool) -> list[dict]:
    """verl dataset rows for `Task`s (see the module docstring for the columns)."""
    rows = []
    for index, task in enumerate(tasks):
        label = f"{task.env}/{task.task_type}" if task.task_type else task.env
        rows.append(
            {
                "data_source": label if validation else task.env,
                "prompt": [{"role": "user", "content": f"{task.env} task ({task.task_type}): {task.task_id}"}],
                "agent_name": AGENT_LOOP_NAME,
                "env_name": task.env,
                "task_id": task.task_id,
                "task_type": task.task_type,
                "split": task.split,
                "data_fingerprint": task.data_fingerprint,
                "reward_model": {"style": "environment", "ground_truth": ""},
                "extra_info": {"index": index, "split": task.split},
            }
        )
    return rows


def alfworld_tasks(args: argparse.Namespace) -> tuple[list, list, str]:
    from tqdm import tqdm

    from verl_agent_ext.envs.alfworld import games

    val_split = args.val_split or ALFWORLD_VAL_SPLITS[0]
    if val_split not in ALFWORLD_VAL_SPLITS:
        raise UserError(f"--val-split {val_split!r} is not an ALFWorld split; valid names: {ALFWORLD_VAL_SPLITS}")
    data_root = os.environ.get("ALFWORLD_DATA")
    if data_root and (Path(data_root).expanduser() / "json_2.1.1").is_dir():
        source = f"official ALFWorld splits from ALFWORLD_DATA={data_root}"
        train, val = games.list_tasks("train"), games.list_tasks(val_split)
    else:
        source = (
            f"generated ALFWorld games ({args.per_type} per task type per split, seed {args.seed}; "
            "set ALFWORLD_DATA to use the official splits)"
        )
        splits = []
        for split in ("train", val_split):
            with tqdm(desc=f"generating {split} games", unit="game", disable=None) as bar:
                splits.append(games.generated_tasks(split, args.per_type, args.seed, lambda game: bar.update()))
        train, val = splits
    wanted = [name for name in args.task_types.split(",") if name]
    if wanted:
        train, val = ([task for task in tasks if task.task_type in wanted] for tasks in (train, val))
        source += f", task types {wanted}"
    if args.solvable_within:
        from verl_agent_ext.envs.alfworld.solvable import solvable_within

        train = solvable_within(train, args.solvable_within)
        source += f", training tasks the searcher wins within {args.solvable_within} steps"
    if not train:
        raise UserError(f"no training task is left after --task-types / --solvable-within ({source})")
    return train, val, source


def webshop_tasks(args: argparse.Namespace) -> tuple[list, list, str]:
    from verl_agent_ext.envs.webshop.tasks import GENERATED_CATALOG_NOTICE, list_tasks

    val_split = args.val_split or "test"
    source = f"WebShop catalog in {args.data_dir}" if args.data_dir else "the default generated WebShop catalog"
    if not args.data_dir:
        print(f"NOTICE: {GENERATED_CATALOG_NOTICE} (pass --data-dir)", file=sys.stderr)
    train = list_tasks("train", data_dir=args.data_dir, seed=args.seed)
    val = list_tasks(val_split, data_dir=args.data_dir, seed=args.seed)
    source += f", catalog fingerprint {train[0].data_fingerprint} (the env must load the same catalog)"
    return train, val, source


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    for flag, value in (("--train-size", args.train_size), ("--val-size", args.val_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1 (or left out for every task), got {value}")
    if args.env != "alfworld" and (args.task_types or args.solvable_within):
        raise UserError("--task-types and --solvable-within select ALFWorld games; WebShop has neither")
    with removed_if_left_empty(args.out):
        writable_folder(args.out, "--out")
        with user_input_errors():  # unknown split, missing catalog or ALFWorld data
            train, val, source = alfworld_tasks(args) if args.env == "alfworld" else webshop_tasks(args)
    train, val = train[: args.train_size], val[: args.val_size]
    for name, tasks, validation in (("train", train, False), ("val", val, True)):
        path = args.out / f"{name}.parquet"
        pd.DataFrame(task_rows(tasks, validation)).to_parquet(path)
        types = sorted({task.task_type for task in tasks})
        print(f"{path}: {len(tasks)} tasks of split {tasks[0].split if tasks else '-'} ({len(types)} task types)")
    print(f"source: {source}")
    return 0
