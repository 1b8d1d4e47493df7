"""Environment throughput for the arena, on one core: raw ALFWorld engine, the transition cache, WebShop.

    python benchmarks/bench_arena_envs.py [--games 6] [--episodes 4] [--policy-episodes 40] [--repeats 3]
    python benchmarks/bench_arena_envs.py --curve-episodes 100 [--curve-block 20] [--curve-epsilons 0.1 0.3]

The process pins itself to one CPU core (os.sched_setaffinity) and numpy to one thread. Every number is a
median over --repeats runs (min-max in brackets); steps/s = `env.step` calls of whole episodes / seconds spent in
`env.reset` and `env.step` (the policies' own time, e.g. the expert's planning, is not counted).

ALFWorld (generated training games, one per task type, --max-steps 30; each game's PDDL translation is done
before timing):
- random walk: uniform over the admissible commands. "raw engine": `AlfworldEnv` (with and without engine.py's
  text-derivation speedups; it reloads a game whenever the game changes, ~80 ms). "cached, cold": a
  `CachedAlfworldEnv` starting from empty tables, same walks. "cached, warm replay": those walks again (all hits).
  "cached, warm, new walks": other random walks on the warmed tables (hits and misses).
- epsilon-expert: --policy-episodes episodes per game of the shortest-plan expert taking a uniform admissible
  command with probability --epsilon, from empty tables: like a warm-started policy, it revisits likely paths
  and strays; steps/s over the whole run and the hit rate of its second half.
- hit rate by key: the same runs counted with the command history as the key instead of the world state (the
  hits a history cache would get), to show why the cache keys by state. "cached, cold" and "epsilon-expert" show
  the state key's hit rate (epsilon-expert: in the second half of its episodes).

--curve-episodes N prints instead how the hit rate grows: the epsilon-expert from empty tables, N episodes per
game, the hit rate and steps/s of each block of --curve-block episodes.

WebShop (generated catalog of 1,000 products, 50 training goals): the arena's candidate actions
(`candidate_actions`) with a uniform choice, with and without the search-result LRU; and the scripted expert.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import contextlib  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

from verl_agent_ext.envs.alfworld.cached import CachedAlfworldEnv, clear_tables  # noqa: E402
from verl_agent_ext.envs.alfworld.env import AlfworldEnv  # noqa: E402
from verl_agent_ext.envs.alfworld.games import generated_tasks  # noqa: E402
from verl_agent_ext.envs.base import Observation, Task, TextEnv  # noqa: E402
from verl_agent_ext.envs.registry import make_policy  # noqa: E402
from verl_agent_ext.envs.webshop.candidates import candidate_actions  # noqa: E402
from verl_agent_ext.envs.webshop.env import WebShopEnv  # noqa: E402
from verl_agent_ext.envs.webshop.tasks import list_tasks  # noqa: E402

Chooser = Callable[[Observation, random.Random], str]


def _uniform(observation: Observation, rng: random.Random) -> str:
    return rng.choice(observation.admissible_actions)


def _epsilon_expert(env: AlfworldEnv, epsilon: float) -> Chooser:
    """The first command of the shortest plan, or with probability `epsilon` a uniform admissible command."""

    def choose(observation: Observation, rng: random.Random) -> str:
        if rng.random() < epsilon:
            return rng.choice(observation.admissible_actions)
        plan = env.plan(shortest=True)
        return plan[0] if plan else rng.choice(observation.admissible_actions)

    return choose


def _play(
    env: TextEnv,
    games: list[Task],
    episodes: int,
    choose: Chooser,
    seed: int,
    log: list[str] | None = None,
    seen: set[tuple[str, ...]] | None = None,
) -> tuple[int, float, int]:
    """(steps, seconds in env.reset / env.step, history-key hits) of `episodes` episodes per game.

    log: collects the commands played; seen: the command histories met so far (updated), for the history hits.
    """
    rng = random.Random(seed)
    steps, history_hits, seconds = 0, 0, 0.0
    for _ in range(episodes):
        for game in games:
            start = time.perf_counter()
            observation, done, prefix = env.reset(game), False, (game.task_id,)
            seconds += time.perf_counter() - start
            while not done:
                action = choose(observation, rng)
                start = time.perf_counter()
                result = env.step(action)
                seconds += time.perf_counter() - start
                observation, done = result.observation, result.done
                steps += 1
                prefix = (*prefix, action)
                if log is not None:
                    log.append(action)
                if seen is not None:
                    history_hits += prefix in seen
                    seen.add(prefix)
    return steps, seconds, history_hits


def _replay(env: TextEnv, games: list[Task], episodes: int, log: list[str]) -> tuple[int, float]:
    actions = iter(log)
    steps, start = 0, time.perf_counter()
    for _ in range(episodes):
        for game in games:
            env.reset(game)
            done = False
            while not done:
                done = env.step(next(actions)).done
                steps += 1
    return steps, time.perf_counter() - start


def _summary(values: list[float], fmt: str = ",.0f") -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


@contextlib.contextmanager
def _textworld_text_derivation() -> Iterator[None]:
    """Undo engine.py's two text-derivation speedups (shallow contexts, memoised command texts) for a while."""
    from textworld.envs.pddl import textgen

    from verl_agent_ext.envs.alfworld import engine

    fast = textgen.copy_context, textgen.ContextSensitiveGrammar.derive
    textgen.copy_context, textgen.ContextSensitiveGrammar.derive = (
        engine.textworld_copy_context,
        engine.textworld_derive,
    )
    try:
        yield
    finally:
        textgen.copy_context, textgen.ContextSensitiveGrammar.derive = fast


def alfworld_rows(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    tasks = generated_tasks("train", per_type=10, seed=0)
    games = list({task.task_type: task for task in reversed(tasks)}.values())[: args.games]
    engine = AlfworldEnv(max_steps=args.max_steps)
    for game in games:  # PDDL translation and grammar parses, once per process
        engine.reset(game)
    policy = f"epsilon-expert ({args.epsilon})"
    rates: dict[str, list[float]] = {}
    hit_rates: dict[str, list[float]] = {}

    def record(name: str, steps: int, seconds: float, hits: float | None = None) -> None:
        rates.setdefault(name, []).append(steps / seconds)
        if hits is not None:
            hit_rates.setdefault(name, []).append(hits)

    for repeat in range(args.repeats):
        seed = 1000 * repeat
        with _textworld_text_derivation():
            steps, seconds, _ = _play(engine, games, args.episodes, _uniform, seed)
        record("random walk: raw engine, TextWorld's own text derivation", steps, seconds)
        steps, seconds, history_hits = _play(engine, games, args.episodes, _uniform, seed, seen=set())
        record("random walk: raw engine (AlfworldEnv)", steps, seconds)
        clear_tables()
        cached = CachedAlfworldEnv(max_steps=args.max_steps)
        log: list[str] = []
        steps, seconds, _ = _play(cached, games, args.episodes, _uniform, seed, log)
        record("random walk: cached, cold (empty tables)", steps, seconds, cached.hits / steps)
        hit_rates.setdefault("random walk: history key, cold", []).append(history_hits / steps)
        cached.hits = cached.misses = 0
        steps, seconds = _replay(cached, games, args.episodes, log)
        record("random walk: cached, warm replay (all hits)", steps, seconds, cached.hits / steps)
        cached.hits = cached.misses = 0
        steps, seconds, _ = _play(cached, games, args.episodes, _uniform, seed + 1)
        record("random walk: cached, warm, new walks", steps, seconds, cached.hits / steps)
        cached.close()

        clear_tables()
        cached = CachedAlfworldEnv(max_steps=args.max_steps)
        choose = _epsilon_expert(cached, args.epsilon)
        half, seen = args.policy_episodes // 2, set()
        steps, seconds, _ = _play(cached, games, half, choose, seed + 2, seen=seen)
        cached.hits = cached.misses = 0
        more, more_seconds, history_hits = _play(
            cached, games, args.policy_episodes - half, choose, seed + 3, seen=seen
        )
        record(f"{policy}: cached, from empty tables", steps + more, seconds + more_seconds, cached.hits / more)
        cached.close()
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        hit_rates.setdefault(f"{policy}: history key, second half", []).append(history_hits / more)
    rows = []
    for name, values in rates.items():
        hits = _summary([100 * h for h in hit_rates[name]], ".1f") + " %" if name in hit_rates else ""
        rows.append((f"ALFWorld {name}", _summary(values), hits))
    for name in ("random walk: history key, cold", f"{policy}: history key, second half"):
        rows.append((f"ALFWorld {name}", "", _summary([100 * h for h in hit_rates[name]], ".1f") + " %"))
    return rows


def hit_rate_curve(args: argparse.Namespace) -> list[tuple[str, ...]]:
    """Hit rate per block of --curve-block episodes per game, epsilon-expert from empty tables, per epsilon."""
    tasks = generated_tasks("train", per_type=10, seed=0)
    games = list({task.task_type: task for task in reversed(tasks)}.values())[: args.games]
    rows = []
    for epsilon in args.curve_epsilons:
        clear_tables()
        cached = CachedAlfworldEnv(max_steps=args.max_steps)
        choose = _epsilon_expert(cached, epsilon)
        cells = []
        for block in range(args.curve_episodes // args.curve_block):
            cached.hits = cached.misses = 0
            steps, seconds, _ = _play(cached, games, args.curve_block, choose, 10_000 + block)
            cells.append(f"{100 * cached.hits / steps:.0f} % ({steps / seconds:,.0f}/s)")
        cached.close()
        rows.append((f"epsilon {epsilon}", *cells))
    return rows


def webshop_rows(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    env = WebShopEnv()
    tasks = list_tasks("train", limit=50)
    rows = []

    def run(choose: Chooser, episodes: int, seed: int) -> float:
        steps, seconds, _ = _play(env, tasks, episodes, choose, seed)
        return steps / seconds

    def candidates(observation: Observation, rng: random.Random) -> str:
        return rng.choice(candidate_actions(observation))

    expert = make_policy("webshop", "expert", env)
    run(candidates, 1, 0)  # search index, tagger and caches warm
    for name, choose, episodes, no_cache in (
        ("candidates, uniform choice", candidates, args.webshop_episodes, False),
        ("candidates, uniform choice, no search LRU", candidates, args.webshop_episodes, True),
        ("scripted expert", lambda observation, rng: expert.act(observation), 2, False),
    ):
        searches = env.catalog._searches
        if no_cache:
            env.catalog._searches = _NoCache()
        values = [run(choose, episodes, 7 + repeat) for repeat in range(args.repeats)]
        env.catalog._searches = searches
        rows.append((f"WebShop {name}", _summary(values), ""))
    return rows


class _NoCache(dict):
    """Stands in for the search LRU when timing without it: remembers nothing."""

    def __setitem__(self, key, value) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=6)
    parser.add_argument("--episodes", type=int, default=4, help="random-walk episodes per game")
    parser.add_argument("--policy-episodes", type=int, default=40, help="epsilon-expert episodes per game")
    parser.add_argument("--epsilon", type=float, default=0.3, help="the epsilon-expert's random-action rate")
    parser.add_argument("--webshop-episodes", type=int, default=40, help="WebShop episodes per goal (50 goals)")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=0, help="the CPU core to pin to")
    parser.add_argument("--curve-episodes", type=int, default=0, help="episodes per game of the hit-rate curve")
    parser.add_argument("--curve-block", type=int, default=20)
    parser.add_argument("--curve-epsilons", type=float, nargs="+", default=[0.1, 0.3])
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    if args.curve_episodes:
        rows = hit_rate_curve(args)
        print(f"\nCache hit rate (and steps/s) per block of {args.curve_block} episodes per game, {args.games} games, ")
        print(f"epsilon-expert from empty tables, one core (core {args.core})\n")
        blocks = [f"episodes {b * args.curve_block + 1}-{(b + 1) * args.curve_block}" for b in range(len(rows[0]) - 1)]
        print("| policy | " + " | ".join(blocks) + " |")
        print("|---|" + "---|" * len(blocks))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return

    rows = alfworld_rows(args) + webshop_rows(args)
    print(f"\nEnvironment steps/s on one CPU core (core {args.core}), medians of {args.repeats} runs [min-max]\n")
    print("| environment, workload | steps/s | cache hit rate |")
    print("|---|---|---|")
    for name, rate, hits in rows:
        print(f"| {name} | {rate} | {hits} |")


if __name__ == "__main__":
    main()
