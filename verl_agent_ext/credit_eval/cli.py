"""`verl-agent-ext credit-eval`: do the estimators credit the steps that move toward the goal? (oracle: planner)

    verl-agent-ext credit-eval --env alfworld --estimators grpo,gigpo,scpo --epsilon 0.5 --tasks 12 \\
        --group-size 8 --max-steps 30 --seed 0 --out DIR [--set algorithm.scpo.theta=0.8 ...]
    verl-agent-ext credit-eval --estimators "gigpo,gigpo:gigpo.mode=mean_std_norm,scpo:scpo.alpha=5" \\
        --epsilon 0.25,0.5,0.75 --seed 0,1,2,3,4 --out DIR
    verl-agent-ext credit-eval --policy alfworld-pick-smollm2-135m --temperature 1.0 --tasks 2 --group-size 8 \\
        --max-steps 12 --seed 0 --num-threads 1 --out DIR      # SmolLM2 rollouts (credit_eval/llm_rollouts.py)

Prints a markdown table (one row per estimator and epsilon) and writes DIR/credit_eval.json and
DIR/credit_eval.png. Labels are cached ($VERL_AGENT_EXT_CACHE/credit_eval/plans), so a second run of the same
seeds never calls the planner. See docs/credit.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ENVIRONMENTS = ("alfworld", "webshop")
EPSILON_EXPERT = "epsilon-expert"  # the scripted behaviour; llm_rollouts.py imports heavy modules, so not from there


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    from verl_agent_ext.credit_eval.options import add_estimator_arguments

    parser = subparsers.add_parser(
        "credit-eval",
        help="credit quality of advantage estimators against the planner's oracle labels (AUC, shares, Spearman)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--env",
        default="alfworld",
        help="alfworld (planner oracle) or webshop (expert-path oracle, generated catalog, varied search queries; "
        "credit_eval/webshop.py); default alfworld",
    )
    add_estimator_arguments(
        parser, "grpo,gigpo,scpo", "verl config setting for every estimator, as in training (algorithm.scpo.theta=0.8)"
    )
    parser.add_argument(
        "--policy",
        default=EPSILON_EXPERT,
        help=f"alfworld: who plays: {EPSILON_EXPERT} (default: the planner's next action, else a random one at rate "
        "--epsilon), or a language model as `verl-agent-ext eval --policy` takes it (a shipped adapter such as "
        "alfworld-pick-smollm2-135m, a PEFT adapter folder, a train-local run, a model), played through the agent "
        "loop on the warm start's games (pick_and_place_simple unless --task-types); rows carry its response_text",
    )
    parser.add_argument(
        "--epsilon", type=_floats, default=None, help="random-action rate(s), e.g. 0.25,0.5,0.75 (default 0.5)"
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="language-model policy: sampling temperature")
    parser.add_argument("--response-length", type=int, default=24, help="language-model policy: tokens per answer")
    parser.add_argument("--num-threads", type=int, default=0, help="language-model policy: torch CPU threads (0: all)")
    parser.add_argument(
        "--solvable-within",
        type=int,
        default=0,
        help="language-model policy: play only the games the searching expert wins within N steps, as train-local's "
        "option (0: all)",
    )
    parser.add_argument("--tasks", type=int, default=12, help="tasks (groups) per seed and epsilon (default 12)")
    parser.add_argument("--group-size", type=int, default=8, help="rollouts per task (default 8)")
    parser.add_argument("--max-steps", type=int, default=30, help="step limit per rollout (default 30)")
    parser.add_argument("--seed", type=_ints, default=[0], help="seed(s): which games and random actions, e.g. 0,1,2")
    parser.add_argument("--split", default="train", help="split of the games / goals (default train)")
    parser.add_argument("--games", default=None, help="alfworld: folder of games (default: the cached generated set)")
    parser.add_argument("--official", action="store_true", help="alfworld: the official split under $ALFWORLD_DATA")
    parser.add_argument(
        "--task-types",
        default=None,
        help="alfworld: comma-separated task types to play (default: all six; pick_two_obj_and_place labels cost "
        "seconds per state: its plans are the longest)",
    )
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples over tasks (0: none)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the label cache")
    parser.add_argument(
        "--rows",
        default=None,
        help="evaluate the labelled rows of earlier runs (their DIR/rows.jsonl.gz, comma-separated) instead of "
        "rolling out; epsilons (temperatures of a language-model policy) and seeds come from the files",
    )
    parser.add_argument(
        "--paraphrase",
        action="store_true",
        help="alfworld: render each trajectory's observations and actions in one of several paraphrase styles, "
        "drawn per trajectory from the batch's seed (credit_eval/paraphrase.py); labels unchanged",
    )
    parser.add_argument("--out", required=True, help="output folder for credit_eval.json and credit_eval.png")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from verl_agent_ext.errors import (
        UserError,
        existing_folder,
        removed_if_left_empty,
        user_input_errors,
        writable_folder,
    )

    if args.env not in ENVIRONMENTS:
        raise UserError(f"unknown environment {args.env!r} for credit-eval; valid names: {list(ENVIRONMENTS)}")
    for name in ("tasks", "group_size", "max_steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    check_policy(args)
    if not args.epsilon or any(not 0.0 <= e <= 1.0 for e in args.epsilon) or not args.seed:
        raise UserError("--epsilon needs values in [0, 1] and --seed at least one seed")
    if args.games is not None:
        existing_folder(args.games, "--games")
    for path in args.rows.split(",") if args.rows is not None else []:
        if not Path(path).is_file():
            raise UserError(f"--rows {path} is not a file (an earlier run's DIR/rows.jsonl.gz)")
    from verl_agent_ext.credit_eval.estimators import algorithm_config, parse_estimators
    from verl_agent_ext.envs.alfworld.generator import TASK_TYPES

    if args.env != "alfworld" and (args.task_types or args.games or args.official or args.paraphrase):
        raise UserError("--task-types, --games, --official and --paraphrase apply to --env alfworld only")
    unknown = sorted(set(args.task_types.split(",")) - set(TASK_TYPES)) if args.task_types else []
    if unknown:
        raise UserError(f"unknown ALFWorld task types {unknown}; valid names: {list(TASK_TYPES)}")
    with user_input_errors():  # unknown estimator, bad setting or hydra syntax: stop before any rollout
        specs = parse_estimators(args.estimators)
        algorithms = {spec.label: algorithm_config(spec, args.settings) for spec in specs}
    with removed_if_left_empty(args.out):
        writable_folder(args.out, "--out")
        print(evaluate_command(args, specs, algorithms))
    return 0


def check_policy(args: argparse.Namespace) -> None:
    """The settings of `--policy` (fills `--epsilon`: its default, or the temperature of a language model)."""
    from verl_agent_ext.errors import UserError

    if args.policy == EPSILON_EXPERT:
        args.epsilon = [0.5] if args.epsilon is None else args.epsilon
        return
    if args.env != "alfworld" or args.epsilon is not None or args.official:
        raise UserError(f"--policy {args.policy}: a language model plays --env alfworld, no --epsilon or --official")
    if args.temperature <= 0 or args.response_length < 1 or min(args.num_threads, args.solvable_within) < 0:
        raise UserError("--temperature must be > 0, --response-length >= 1, --num-threads and --solvable-within >= 0")
    args.epsilon = [args.temperature]  # the rows' epsilon column holds the temperature (llm_rollouts.py)


def evaluate_command(args: argparse.Namespace, specs: list, algorithms: dict) -> str:
    """Roll out, label, run every estimator, write the files; returns the markdown table."""
    from tqdm import tqdm

    from verl_agent_ext.credit_eval.oracle import PlanOracle
    from verl_agent_ext.credit_eval.report import markdown_table, plot, rollout_summary, write_json
    from verl_agent_ext.credit_eval.rollouts import concat_rows, split_batches, write_rows

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.rows:
        batches, rollout_seconds, oracle = split_batches(read_row_files(args.rows.split(","))), 0.0, PlanOracle(None)
        args.epsilon = sorted({epsilon for epsilon, _ in batches})
        args.seed = sorted({seed for _, seed in batches})
    else:
        start = time.perf_counter()
        if args.env == "webshop":
            batches, oracle = roll_out_webshop(args)
        else:
            batches, oracle = roll_out(args) if args.policy == EPSILON_EXPERT else roll_out_llm(args)
        rollout_seconds = time.perf_counter() - start
        write_rows(out / "rows.jsonl.gz", concat_rows(list(batches.values())))
    if args.paraphrase:
        batches = paraphrased(batches)
    rows = sum(len(batch["uid"]) for batch in batches.values())

    results = {
        spec.label: estimator_results(spec, algorithms[spec.label], batches, args)
        for spec in tqdm(specs, desc="estimators", unit="estimator")
    }

    table = markdown_table(results)
    payload = {
        "command": " ".join(sys.argv),
        "settings": {
            "env": args.env,
            "epsilon": args.epsilon,
            "seed": args.seed,
            "tasks": args.tasks,
            "group_size": args.group_size,
            "max_steps": args.max_steps,
            "split": args.split,
            "task_types": args.task_types,
            "set": args.settings,
            "bootstrap": args.bootstrap,
            "paraphrase": args.paraphrase,
            "policy": args.policy,
            "temperature": None if args.policy == EPSILON_EXPERT else args.temperature,
            "response_length": None if args.policy == EPSILON_EXPERT else args.response_length,
            "solvable_within": None if args.policy == EPSILON_EXPERT else args.solvable_within,
        },
        "load_average": list(os.getloadavg()),
        "rollouts": {
            "by_epsilon": {
                f"{e:g}": rollout_summary(concat_rows([batches[e, s] for s in args.seed])) for e in args.epsilon
            },
            "rows": rows,
            "seconds": rollout_seconds,
            "seconds_per_1000_steps": 1000.0 * rollout_seconds / max(rows, 1),
            "planner_calls": oracle.planner_calls,
            "cache_hits_prefix": oracle.prefix_hits,
            "cache_hits_state": oracle.state_hits,
            "plan_suffixes": oracle.plan_suffixes,
        },
        "estimators": results,
    }
    write_json(out / "credit_eval.json", payload)
    plot(out / "credit_eval.png", results)
    summary = payload["rollouts"]
    return (
        f"{table}\n\n{rows} labelled steps, rollouts + labels {rollout_seconds:.1f} s "
        f"({summary['seconds_per_1000_steps']:.1f} s per 1,000 steps; planner calls {oracle.planner_calls}, "
        f"cache hits {oracle.prefix_hits + oracle.state_hits}); wrote {out / 'credit_eval.json'} and "
        f"{out / 'credit_eval.png'}"
    )


def paraphrased(batches: dict) -> dict:
    """Each (epsilon, seed) batch with its texts in per-trajectory paraphrase styles drawn from its seed."""
    from verl_agent_ext.credit_eval.paraphrase import paraphrase_rows
    from verl_agent_ext.errors import UserError

    if any("paraphrase_style" in batch for batch in batches.values()):
        raise UserError("--paraphrase: these rows are paraphrased already (they have a paraphrase_style column)")
    return {key: paraphrase_rows(batch, seed=key[1]) for key, batch in batches.items()}


def roll_out(args: argparse.Namespace) -> tuple[dict, object]:
    """Labelled rollouts per (epsilon, seed), with a progress bar; returns them and the oracle (its counters)."""

    from verl_agent_ext.credit_eval.oracle import PlanOracle, default_cache_dir
    from verl_agent_ext.credit_eval.rollouts import rollout_rows
    from verl_agent_ext.envs.alfworld.env import AlfworldEnv
    from verl_agent_ext.envs.play_cli import SETUPS

    _, pool = SETUPS["alfworld"](args)
    if args.task_types:
        wanted = set(args.task_types.split(","))
        pool = [task for task in pool if task.task_type in wanted]
    oracle = PlanOracle(None if args.no_cache else default_cache_dir())
    env = AlfworldEnv(max_steps=args.max_steps)

    def play(spec, bar) -> dict:
        rows = rollout_rows(spec, pool, env, oracle, progress=bar.update)
        bar.set_postfix(planner=oracle.planner_calls, cached=oracle.prefix_hits + oracle.state_hits)
        oracle.save()
        return rows

    batches = play_batches(args, play)
    env.close()
    return batches, oracle


def roll_out_llm(args: argparse.Namespace) -> tuple[dict, object]:
    """Labelled rollouts of the language-model policy per (temperature, seed), with a progress bar."""
    from tqdm import tqdm

    from verl_agent_ext.credit_eval.llm_rollouts import LLMRollouts
    from verl_agent_ext.credit_eval.oracle import PlanOracle, default_cache_dir
    from verl_agent_ext.errors import user_input_errors

    oracle = PlanOracle(None if args.no_cache else default_cache_dir())
    with user_input_errors():  # unknown model or adapter, no games of the task types: before any episode
        rollouts = LLMRollouts(args, oracle)
    batches = {}
    total = len(args.seed) * args.tasks * args.group_size
    try:
        desc = f"rollouts ({args.policy}, T={args.temperature:g}, labelled)"
        with tqdm(total=total, desc=desc, unit="episode") as bar:
            for seed in args.seed:
                batches[args.temperature, seed] = rollouts.rows(seed, progress=lambda: bar.update())
                bar.set_postfix(planner=oracle.planner_calls, cached=oracle.prefix_hits + oracle.state_hits)
    finally:
        rollouts.close()
    return batches, oracle


def read_row_files(paths: list[str]) -> dict:
    """The rows of several `rows.jsonl.gz` files, concatenated (they must have the same columns)."""
    from verl_agent_ext.credit_eval.rollouts import concat_rows, read_rows
    from verl_agent_ext.errors import UserError

    parts = [read_rows(path) for path in paths]
    if any(set(part) != set(parts[0]) for part in parts):
        raise UserError(f"--rows {','.join(paths)}: the files have different columns (rows of different kinds)")
    return concat_rows(parts)


def play_batches(args: argparse.Namespace, play) -> dict:
    """`play(spec, progress_bar)` -> labelled rows, for every (epsilon, seed) of the command line."""
    from tqdm import tqdm

    from verl_agent_ext.credit_eval.rollouts import RolloutSpec

    batches = {}
    total = len(args.epsilon) * len(args.seed) * args.tasks * args.group_size
    with tqdm(total=total, desc="rollouts (epsilon-expert, labelled)", unit="episode") as bar:
        for epsilon in args.epsilon:
            for seed in args.seed:
                spec = RolloutSpec(epsilon, seed, args.tasks, args.group_size, args.max_steps)
                batches[epsilon, seed] = play(spec, bar)
    return batches


def roll_out_webshop(args: argparse.Namespace) -> tuple[dict, object]:
    """Labelled WebShop rollouts per (epsilon, seed) on the generated catalog's goals the expert solves."""

    from verl_agent_ext.credit_eval.oracle import PlanOracle
    from verl_agent_ext.credit_eval.webshop import rollout_rows, solvable_tasks
    from verl_agent_ext.envs.webshop.env import WebShopEnv
    from verl_agent_ext.envs.webshop.tasks import list_tasks

    env = WebShopEnv(max_steps=args.max_steps)
    pool = solvable_tasks(env, list_tasks(args.split), args.max_steps)
    batches = play_batches(args, lambda spec, bar: rollout_rows(spec, pool, env, progress=bar.update))
    return batches, PlanOracle(None)  # no planner: the oracle's counters stay 0


def estimator_results(spec, algorithm, batches: dict, args: argparse.Namespace) -> dict:
    """Metrics of one estimator: over every batch, and per epsilon (seeds pooled), with the call times."""
    import numpy as np

    from verl_agent_ext.credit_eval.estimators import estimator_advantages
    from verl_agent_ext.credit_eval.report import evaluate
    from verl_agent_ext.credit_eval.rollouts import concat_rows

    advantages, seconds, diagnostics = {}, {}, {}
    for key, batch in batches.items():
        advantages[key], diagnostics[key], seconds[key] = estimator_advantages(spec.name, batch, algorithm)

    def pooled(keys: list) -> dict:
        columns = concat_rows([batches[key] for key in keys])
        metrics = evaluate(columns, np.concatenate([advantages[key] for key in keys]), args.bootstrap)
        metrics["seconds"] = sum(seconds[key] for key in keys)
        return metrics

    by_epsilon = {}
    for epsilon in args.epsilon:
        keys = [(epsilon, seed) for seed in args.seed]
        by_epsilon[f"{epsilon:g}"] = {
            **pooled(keys),
            "diagnostics": {str(seed): diagnostics[epsilon, seed] for seed in args.seed},
        }
    return {**pooled(list(batches)), "name": spec.name, "overrides": list(spec.overrides), "by_epsilon": by_epsilon}
