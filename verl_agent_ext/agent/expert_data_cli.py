"""`verl-agent-ext expert-data`: expert demonstrations as supervised fine-tuning data in verl's multi-turn format.

    verl-agent-ext expert-data --env alfworld --out ~/data/verl-agent-ext/alfworld-sft --episodes 120
    verl-agent-ext expert-data --env webshop --out ~/data/verl-agent-ext/webshop-sft --episodes 200

The environment's scripted expert (ALFWorld: the Fast Downward planner; WebShop: the goal-reading oracle) plays
each task; every step of a won episode becomes one row whose `messages` are the agent loop's prompt of that step
(`agent.prompt.step_messages`, the text `EnvAgentLoop` renders) and the expert's action as the answer in the
format the parser reads (`<action>...</action>`, `envs.text.format_action`). The agent loop renders each step as
a fresh single-user-turn prompt with the history inside it, so one (user, assistant) pair per step is exactly
what the policy sees and writes. verl's `MultiTurnSFTDataset` (`data.messages_key=messages`) reads the rows.

Outputs in --out: `train.parquet` and `val.parquet` (rows: `messages`, `data_source`, `env_name`, `task_id`,
`task_type`, `split`, `episode`, `step_index`, `action`), the same rows as `train.jsonl` / `val.jsonl`, and
`info.json` (the settings, so the local warm start renders the same prompts, and the expert's success rate).
Validation rows come from the held-out split (ALFWorld eval_in_distribution, WebShop dev).

Prompt settings default to the local trainer's (`train-local`): ALFWorld's compact template, 1 history turn,
8 listed actions. For verl's GPU recipe pass `--prompt-template "" --history-length 2 --max-actions 40`
(the environment's own template), the settings of `examples/run_*_alfworld.sh`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from verl_agent_ext.agent.config import SMALL_MODEL_PROMPT
from verl_agent_ext.errors import UserError, user_input_errors, writable_folder

ENVS = ("alfworld", "webshop")
HELDOUT_SPLIT = {"alfworld": "eval_in_distribution", "webshop": "dev"}
INFO_FILE = "info.json"


@dataclass(frozen=True)
class DemoSettings:
    """How demonstrations are played and rendered (stored in info.json; the warm start reads them back).

    prompt_template / history_length / max_actions: ALFWorld prompt (template "" = the environment's default);
    WebShop uses its own template with `history_length` turns. max_steps: the expert's step limit per episode.
    per_type: ALFWorld generated games per task type and split; task_types: ALFWorld types ("" = all six).
    policy: the scripted player ("expert"; ALFWorld also "searcher", the planner that first searches for the
    object instead of knowing where it is, so every demonstrated decision is visible in the prompt).
    """

    env: str
    episodes: int
    val_episodes: int
    seed: int
    max_steps: int
    history_length: int
    max_actions: int
    prompt_template: str
    per_type: int
    task_types: str
    data_dir: str | None = None
    policy: str = "expert"


def register(subparsers: argparse._SubParsersAction) -> None:
    local = SMALL_MODEL_PROMPT
    parser = subparsers.add_parser(
        "expert-data",
        help="expert demonstrations as verl multi-turn SFT data (parquet + jsonl)",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--env", required=True, choices=ENVS, help="environment")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--episodes", type=int, default=60, help="expert episodes of the training split")
    parser.add_argument("--val-episodes", type=int, default=12, help="expert episodes of the held-out split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated games / catalog")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="expert step limit (default: ALFWorld 50, WebShop 15)"
    )
    parser.add_argument("--history-length", type=int, default=local.history_length, help="past turns in each prompt")
    parser.add_argument("--max-actions", type=int, default=local.max_actions, help="ALFWorld: actions listed")
    parser.add_argument(
        "--prompt-template", default=local.prompt_template, help="ALFWorld prompt template; '' = the env's default"
    )
    parser.add_argument(
        "--per-type", type=int, default=None, help="ALFWorld generated games per type (default: enough for --episodes)"
    )
    parser.add_argument("--task-types", default="", help="ALFWorld: comma-separated task types (default: all six)")
    parser.add_argument(
        "--policy", default="expert", help="scripted player: expert; ALFWorld also searcher (searches, then plans)"
    )
    parser.add_argument("--data-dir", default=None, help="WebShop catalog folder (default: generated catalog)")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    from verl_agent_ext.envs.alfworld.generator import TASK_TYPES

    if args.episodes < 1 or args.val_episodes < 0:
        raise UserError(f"--episodes must be >= 1 and --val-episodes >= 0, got {args.episodes}, {args.val_episodes}")
    types = [t for t in args.task_types.split(",") if t]
    unknown = sorted(set(types) - set(TASK_TYPES))
    if unknown:
        raise UserError(f"unknown ALFWorld task types {unknown}; valid names: {list(TASK_TYPES)}")
    from verl_agent_ext.envs.registry import ENV_REGISTRY

    players = sorted(set(ENV_REGISTRY[args.env].policies) - {"random"})
    if args.policy not in players:
        raise UserError(f"unknown --policy {args.policy!r} for {args.env}; valid names: {players}")
    per_type = args.per_type or -(-max(args.episodes, args.val_episodes) // len(types or TASK_TYPES))
    return DemoSettings(
        env=args.env,
        episodes=args.episodes,
        val_episodes=args.val_episodes,
        seed=args.seed,
        max_steps=args.max_steps or (50 if args.env == "alfworld" else 15),
        history_length=args.history_length,
        max_actions=args.max_actions,
        prompt_template=args.prompt_template if args.env == "alfworld" else "",
        per_type=per_type,
        task_types=",".join(types),
        data_dir=args.data_dir,
        policy=args.policy,
    )


def make_env(settings: DemoSettings):
    """The environment the agent loop would play, with the prompt settings of `settings`."""
    from verl_agent_ext.envs.registry import make_env as make_registered

    if settings.env == "webshop":
        return make_registered(
            "webshop",
            data_dir=settings.data_dir,
            seed=settings.seed,
            max_steps=settings.max_steps,
            history_length=settings.history_length,
        )
    from verl_agent_ext.envs.alfworld.prompt import PromptConfig

    template = {"template": settings.prompt_template} if settings.prompt_template else {}
    prompt = PromptConfig(history_turns=settings.history_length, max_actions=settings.max_actions, **template)
    return make_registered("alfworld", max_steps=settings.max_steps, prompt=prompt)


def tasks_of(settings: DemoSettings, split: str, count: int) -> list:
    """The first `count` tasks of `split`, task types interleaved (each task played once)."""
    from verl_agent_ext.envs.play_cli import interleave_by_type

    if settings.env == "webshop":
        from verl_agent_ext.envs.webshop.tasks import list_tasks

        return list_tasks(split, limit=count, data_dir=settings.data_dir, seed=settings.seed)
    from verl_agent_ext.envs.alfworld.games import generated_tasks

    tasks = generated_tasks(split, per_type=settings.per_type, seed=settings.seed)
    if settings.task_types:
        wanted = set(settings.task_types.split(","))
        tasks = [task for task in tasks if task.task_type in wanted]
    return interleave_by_type(tasks)[:count]


def expert_episode(env, policy, task, history_length: int) -> tuple[list[dict[str, Any]], bool]:
    """Play `task` with the expert; one row per step (prompt messages + tagged answer) and whether it won.

    The history shown is the agent loop's: the last `history_length` turns of (observation text, parsed action).
    """
    from verl_agent_ext.agent.prompt import step_messages
    from verl_agent_ext.envs.base import Turn
    from verl_agent_ext.envs.text import format_action

    observation, history, rows = env.reset(task), [], []
    for step_index in range(env.max_steps):
        answer = format_action(policy.act(observation))
        parsed = env.parse_action(answer, observation)
        if not parsed.valid:  # the expert's spelling is not admissible: no demonstration of this episode
            return rows, False
        answer = format_action(parsed.action)  # the canonical admissible spelling
        shown = history[len(history) - min(history_length, len(history)) :]
        messages = step_messages(env, observation, shown, step_index) + [{"role": "assistant", "content": answer}]
        rows.append({"messages": messages, "step_index": step_index, "action": parsed.action})
        result = env.step(parsed.action)
        history.append(Turn(observation=observation.text, action=parsed.action))
        observation = result.observation
        if result.done:
            return rows, result.won
    return rows, False


def demonstration_rows(settings: DemoSettings, split: str, count: int) -> Iterator[dict[str, Any]]:
    """Rows of the won expert episodes on the first `count` tasks of `split`; yields a summary dict last."""
    from verl_agent_ext.envs.registry import make_policy

    tasks = tasks_of(settings, split, count) if count else []
    env = make_env(settings)
    policy = make_policy(settings.env, settings.policy, env, seed=settings.seed)
    won = 0
    try:
        for episode, task in enumerate(tasks):
            rows, success = expert_episode(env, policy, task, settings.history_length)
            won += success
            if not success:
                continue
            for row in rows:
                yield {
                    "messages": row["messages"],
                    "data_source": f"{settings.env}/expert",
                    "env_name": settings.env,
                    "task_id": task.task_id,
                    "task_type": task.task_type,
                    "split": task.split,
                    "episode": episode,
                    "step_index": row["step_index"],
                    "action": row["action"],
                }
    finally:
        env.close()
    yield {"summary": {"split": split, "episodes": len(tasks), "won": won}}


def write_split(out: Path, name: str, rows: list[dict[str, Any]]) -> None:
    """`name`.parquet (verl) and `name`.jsonl (the same rows) in `out`."""
    import pandas as pd

    pd.DataFrame(rows).to_parquet(out / f"{name}.parquet")
    with (out / f"{name}.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def read_info(folder: str | Path) -> dict[str, Any]:
    """info.json of an expert-data folder (settings + counts); a clear error when it is not one."""
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: write the data with `verl-agent-ext expert-data --out {folder}`")
    return json.loads(path.read_text())


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    writable_folder(args.out, "--out")
    summaries = {}
    splits = (("train", "train", settings.episodes), ("val", HELDOUT_SPLIT[args.env], settings.val_episodes))
    for name, split, count in splits:
        with user_input_errors():  # missing catalog folder, bad settings
            rows = list(demonstration_rows(settings, split, count))
        summary = rows.pop()["summary"]
        write_split(args.out, name, rows)
        summaries[name] = {**summary, "rows": len(rows)}
        print(
            f"{args.out / (name + '.parquet')}: {len(rows)} step rows from {summary['won']} won expert episodes "
            f"of {summary['episodes']} ({split})"
        )
    info = {"settings": asdict(settings), "splits": summaries}
    (args.out / INFO_FILE).write_text(json.dumps(info, indent=2))
    return 0
