"""`verl-agent-ext arena`: does better credit train better agents? Learning curves of every estimator over seeds.

    verl-agent-ext arena --env alfworld --estimators grpo,gigpo,scpo,sspo,empg,istar --seeds 0-9 \\
        --episodes 4000 --eval-every 200 --out DIR [--jobs 2] [--set algorithm.scpo.theta=0.9 ...] \\
        [--set arena.max_steps=20 ...]

Each (estimator, seed) run trains the light policy (`arena.policy`) from the seed's warm start and writes
DIR/runs/<estimator>/seed<k>.json when it finishes; a second call with the same settings skips finished runs
(resumable). Then DIR/arena.json (every curve and the summary) and DIR/arena.png (mean held-out success vs
episodes, 95% bands) are written and the tables printed. `--set algorithm.*` / `actor_rollout_ref.*` are verl
settings, as in training; `--set arena.*` the arena's own (`arena.train.ArenaConfig`). See docs/arena.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any


def parse_seeds(text: str) -> list[int]:
    """ "0-9" / "0,2,5" / "0-4,7" -> sorted distinct seeds."""
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if low > high:
                raise ValueError(f"seed range {part!r} is empty")
            seeds.update(range(low, high + 1))
        elif part.isdigit():
            seeds.add(int(part))
        else:
            raise ValueError(f"--seeds {text!r}: {part!r} is not a seed or a range like 0-9")
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    return sorted(seeds)


def register(subparsers: argparse._SubParsersAction) -> None:
    from verl_agent_ext.credit_eval.options import add_estimator_arguments

    parser = subparsers.add_parser(
        "arena",
        help="sample efficiency of advantage estimators: a light policy trained by each, held-out success over seeds",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--env", default="alfworld", help="environment (default alfworld)")
    add_estimator_arguments(
        parser,
        "grpo,gigpo,scpo,sspo,empg,istar",
        "verl setting for every estimator as in training (algorithm.gigpo.mode=mean_std_norm), or an arena setting "
        "(arena.max_steps=20)",
    )
    parser.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-9 or 0,3,5 (default 0-4)")
    parser.add_argument("--episodes", type=int, default=4000, help="training episodes per run (default 4000)")
    parser.add_argument("--eval-every", type=int, default=200, help="episodes between held-out evaluations")
    parser.add_argument("--level", type=float, default=0.5, help="success level of 'episodes to reach' (0.5)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: report the seeds whose runs of every estimator are finished (e.g. while a call runs)",
    )
    parser.add_argument("--out", required=True, help="output folder (runs/, arena.json, arena.png)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from verl_agent_ext.arena.envs import ARENA_ENVS
    from verl_agent_ext.errors import UserError, user_input_errors, writable_folder

    if args.env not in ARENA_ENVS:
        raise UserError(f"unknown environment {args.env!r} for arena; valid names: {list(ARENA_ENVS)}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if not 0.0 < args.level <= 1.0:
        raise UserError(f"--level must be in (0, 1], got {args.level}")
    writable_folder(args.out, "--out")
    from verl_agent_ext.arena.train import ArenaConfig, verl_base_overrides
    from verl_agent_ext.credit_eval.estimators import parse_estimators, verl_config

    with user_input_errors():  # bad seeds, estimator, setting or hydra syntax: stop before any rollout
        seeds = parse_seeds(args.seeds)
        arena_settings = [s for s in args.settings if s.strip().startswith("arena.")]
        verl_settings = [s for s in args.settings if not s.strip().startswith("arena.")]
        config = ArenaConfig.from_settings(
            arena_settings, env=args.env, episodes=args.episodes, eval_every=args.eval_every
        )
        specs = parse_estimators(args.estimators)
        configs = {
            spec.label: verl_config(spec, verl_settings, verl_base_overrides(config, spec.name)) for spec in specs
        }
    names = {spec.label: spec.name for spec in specs}
    out = Path(args.out)
    _check_folder(out, _fingerprint(config, verl_settings), create=not args.report_only)
    start = time.perf_counter()
    if args.report_only:
        seeds = [seed for seed in seeds if all(run_path(out, label, seed).is_file() for label in names)]
        if not seeds:
            raise UserError(f"no seed of {args.seeds} has finished runs of every estimator in {out}")
    else:
        _run_all(out, config, names, configs, seeds, args.jobs)
    print(_report(out, config, names, seeds, args, time.perf_counter() - start))
    return 0


def _fingerprint(config: Any, verl_settings: list[str]) -> str:
    return hashlib.sha256(json.dumps([config.to_dict(), verl_settings], sort_keys=True).encode()).hexdigest()[:16]


def _check_folder(out: Path, fingerprint: str, create: bool) -> None:
    """A folder with runs of other settings cannot be resumed (its curves would mix with these)."""
    from verl_agent_ext.errors import UserError

    marker = out / "settings.sha"
    if marker.is_file() and marker.read_text().strip() != fingerprint:
        raise UserError(f"{out} holds arena runs of other settings (arena.* or global --set); use another --out")
    if create:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(fingerprint + "\n")


def run_path(out: Path, label: str, seed: int) -> Path:
    """Where the run of (label, seed) is stored."""
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)
    return out / "runs" / safe / f"seed{seed}.json"


def _run_all(out: Path, config: Any, names: dict, configs: dict, seeds: list[int], jobs: int) -> None:
    """Every missing (label, seed) run, in `jobs` processes, with a progress bar (and DIR/progress.txt)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm import tqdm

    # seed-major: an interrupted call leaves whole seeds (every estimator) finished first
    todo = [(label, seed) for seed in seeds for label in names if not run_path(out, label, seed).is_file()]
    total = len(names) * len(seeds) * config.episodes
    done = (len(names) * len(seeds) - len(todo)) * config.episodes
    bar = tqdm(total=total, initial=done, unit="ep", desc="arena", smoothing=0.05)
    if jobs == 1:  # in this process: no start-up cost of a worker (each run resets its own state)
        for label, seed in todo:
            _one_run(out, label, names[label], configs[label], config, seed, _Progress(bar, out, total))
        bar.close()
        return
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        queue = manager.Queue()
        pending = {
            pool.submit(_one_run, out, label, names[label], configs[label], config, seed, queue): (label, seed)
            for label, seed in todo
        }
        finished = len(names) * len(seeds) - len(todo)
        while pending:
            ready, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            while not queue.empty():
                bar.update(queue.get())
            for future in ready:
                pending.pop(future)
                future.result()  # a failed run stops the command with its error
                finished += 1
            runs = len(names) * len(seeds)
            elapsed = bar.format_dict["elapsed"]
            (out / "progress.txt").write_text(f"{bar.n}/{total} episodes, {finished}/{runs} runs, {elapsed:.0f} s\n")
    bar.close()


class _Progress:
    """`put(k)` as the workers' queue: advances the bar and rewrites DIR/progress.txt."""

    def __init__(self, bar, out: Path, total: int) -> None:
        self.bar, self.out, self.total = bar, out, total

    def put(self, episodes: int) -> None:
        self.bar.update(episodes)
        elapsed = self.bar.format_dict["elapsed"]
        (self.out / "progress.txt").write_text(f"{self.bar.n}/{self.total} episodes, {elapsed:.0f} s\n")


def _one_run(out: Path, label: str, name: str, verl_config: Any, config: Any, seed: int, queue: Any) -> None:
    from verl_agent_ext.arena.report import write_json
    from verl_agent_ext.arena.train import run_arena

    result = run_arena(config, name, verl_config, seed, progress=queue.put)
    path = run_path(out, label, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"label": label, **result})


def _report(out: Path, config: Any, names: dict, seeds: list[int], args: argparse.Namespace, seconds: float) -> str:
    from verl_agent_ext.arena.report import markdown_tables, plot, summarise, write_json

    runs = {label: {seed: json.loads(run_path(out, label, seed).read_text()) for seed in seeds} for label in names}
    summary = summarise(runs, names, args.level)
    write_json(
        out / "arena.json",
        {
            "env": args.env,
            "estimators": names,
            "seeds": seeds,
            "settings": args.settings,
            "config": config.to_dict(),
            "wall_seconds_this_call": seconds,
            "summary": summary,
            "runs": {label: {str(seed): run for seed, run in by_seed.items()} for label, by_seed in runs.items()},
        },
    )
    plot(out / "arena.png", runs)
    return markdown_tables(summary)
