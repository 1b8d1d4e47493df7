"""CachedAlfworldEnv answers exactly as the engine: random walks compared step by step, persistence, game sets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from verl_agent_ext.envs.alfworld.cached import (
    CachedAlfworldEnv,
    TransitionTable,
    cache_dir,
    clear_tables,
    game_key,
    get_table,
    readable_negations,
    save_table,
    train_heldout_tasks,
)
from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.alfworld.games import game_file
from verl_agent_ext.envs.alfworld.generator import TASK_TYPES
from verl_agent_ext.envs.base import Task


def _random_walks(env, games: list[Task], episodes: int, seed: int, actions: list[str] | None = None) -> list:
    """Every reset observation and step result of `episodes` random episodes (or of the logged `actions`)."""
    rng = random.Random(seed)
    replay = iter(actions) if actions is not None else None
    log, played = [], []
    for episode in range(episodes):
        observation = env.reset(games[episode % len(games)])
        log.append(observation)
        done = False
        while not done:
            if replay is not None:
                action = next(replay)
            else:
                draw = rng.random()
                action = rng.choice(observation.admissible_actions)
                if draw < 0.08:
                    action = "dance with the fridge"  # invalid: "Nothing happens.", state unchanged
                elif draw < 0.16:
                    action = f"  {action.upper()} "  # admissible up to case and whitespace
            played.append(action)
            result = env.step(action)
            log.append(result)
            observation, done = result.observation, result.done
    return log, played


@pytest.fixture(scope="module")
def two_games(task_per_type) -> list[Task]:
    return [task_per_type["pick_and_place_simple"], task_per_type["pick_heat_then_place_in_recep"]]


def test_cached_env_equals_the_engine_on_random_walks(two_games):
    clear_tables()
    settings = {"max_steps": 10, "anchor_inventory": True}
    expected, actions = _random_walks(AlfworldEnv(**settings), two_games, episodes=16, seed=0)
    cached = CachedAlfworldEnv(**settings)
    got, _ = _random_walks(cached, two_games, episodes=16, seed=0, actions=actions)
    assert got == expected  # every observation, admissible list, reward, done, won, invalid flag and info
    assert cached.hits > 0 and cached.misses > 0 and cached.jumps > 0  # misses after hits jump the engine
    assert any(r.info.get("truncated") for r in expected[1:] if hasattr(r, "info"))
    assert any(getattr(r, "invalid", False) for r in expected)

    warm = CachedAlfworldEnv(**settings)  # a second instance shares the process's tables: no engine step at all
    again, _ = _random_walks(warm, two_games, episodes=16, seed=0, actions=actions)
    assert again == expected
    assert warm.misses == 0 and warm._engine is None

    clear_tables()  # one engine for two games: every game switch evicts and reloads
    single = CachedAlfworldEnv(max_engines=1, **settings)
    log, _ = _random_walks(single, two_games, episodes=4, seed=0, actions=actions)
    assert log == expected[: len(log)] and len(single._engines) == 1
    single.close()
    assert not single._engines and single._engine is None


def test_cached_env_plans_and_reads_facts_from_the_current_state(two_games):
    clear_tables()
    task = two_games[0]
    walkthrough = json.loads((Path(task.task_id) / "game.tw-pddl").read_text())["walkthrough"]
    first = CachedAlfworldEnv()
    first.reset(task)
    for action in walkthrough[:2]:
        first.step(action)
    second = CachedAlfworldEnv()  # all hits: its engine must be brought to the state before planning
    second.reset(task)
    for action in walkthrough[:2]:
        second.step(action)
    assert second.misses == 0
    engine = AlfworldEnv()
    engine.reset(task)
    for action in walkthrough[:2]:
        engine.step(action)
    assert second.state_facts() == first.state_facts() == engine.state_facts()
    for shortest in (True, False):
        assert second.plan(shortest) == engine.plan(shortest)
        assert first.plan(shortest) == engine.plan(shortest)  # memoised per state by now
    assert len(second._table.plans) == 2
    result = second.step(second.plan(shortest=True)[0])
    assert not result.invalid


def test_tables_persist_on_disk(two_games, tmp_path, monkeypatch):
    monkeypatch.setenv("VERL_AGENT_EXT_CACHE", str(tmp_path))
    clear_tables()
    expected, actions = _random_walks(CachedAlfworldEnv(max_steps=6), two_games[:1], episodes=3, seed=1)
    writer = CachedAlfworldEnv(max_steps=6, persist=True)
    assert _random_walks(writer, two_games[:1], episodes=3, seed=1, actions=actions)[0] == expected
    writer.close()
    key = game_key(game_file(two_games[0].task_id))
    assert (cache_dir() / f"{key}.pkl").is_file() and str(cache_dir()).startswith(str(tmp_path))
    clear_tables()
    reader = CachedAlfworldEnv(max_steps=6, persist=True)
    assert _random_walks(reader, two_games[:1], episodes=3, seed=1, actions=actions)[0] == expected
    assert reader.misses == 0
    # Operator ids are not on disk: the engine catches up by replaying the commands, to the same state.
    engine = AlfworldEnv()
    for env in (reader, engine):
        env.reset(two_games[0])
        for action in actions[:3]:
            env.step(action)
    assert reader.state_facts() == engine.state_facts() and reader.jumps == 0


def test_train_and_heldout_games_are_disjoint_and_cover_all_task_types():
    train, held_out = train_heldout_tasks(train_per_type=1, heldout_per_type=1)
    for tasks in (train, held_out):
        assert {task.task_type for task in tasks} == set(TASK_TYPES)
    train_keys = {game_key(game_file(task.task_id)) for task in train}
    assert not train_keys & {game_key(game_file(task.task_id)) for task in held_out}
    assert {task.split for task in held_out} == {"eval_in_distribution"}


def test_engine_speedups_derive_the_same_text_as_textworld(two_games, monkeypatch):
    """Shallow grammar contexts and memoised command texts (engine.py) against TextWorld's own functions."""
    from textworld.envs.pddl import textgen

    from verl_agent_ext.envs.alfworld import engine

    fast_env = AlfworldEnv(max_steps=12)
    fast, _ = _random_walks(fast_env, two_games, episodes=4, seed=3)
    memo = engine._COMMAND_MEMOS[fast_env._engine.unwrapped._logic.grammar]
    assert memo.texts and memo.qualifies["go to [{r.name | receptacleatlocation(r:receptacle, lend:location)}]"]
    monkeypatch.setattr(textgen, "copy_context", engine.textworld_copy_context)
    monkeypatch.setattr(textgen.ContextSensitiveGrammar, "derive", engine.textworld_derive)
    assert _random_walks(AlfworldEnv(max_steps=12), two_games, episodes=4, seed=3)[0] == fast


def test_command_memo_takes_only_templates_that_cannot_change_with_the_state():
    from verl_agent_ext.envs.alfworld.engine import _CommandMemo

    memo = _CommandMemo({"opened", "holds"}, unconditional_lists=True)
    assert memo.check("take {o} from {r}") and memo.check("go to [{r.name | receptacleatlocation(r:r, l:l)}]")
    assert memo.check("examine {r.name or r.id}")
    assert not memo.check("open [{r.name | opened(r:receptacle)}]")  # a dynamic predicate
    assert not memo.check("#look.feedback#") and not memo.check("{len(context['facts'])}")
    assert not _CommandMemo(set(), unconditional_lists=False).check("go to [{r.name | at(r:r, l:l)}]")


def test_state_key_keeps_the_negated_facts_the_grammar_reads(two_games):
    game = json.loads((Path(two_games[0].task_id) / "game.tw-pddl").read_text())
    assert readable_negations(game) == {"not_inreceptacle", "not_istoggled"}  # ALFWorld's grammar names these
    impure = dict(game, grammar=game["grammar"].replace("{r.name}", "{context['facts']}", 1))
    assert "{r.name}" in game["grammar"] and readable_negations(impure) is None
    assert readable_negations(dict(game, grammar="not a grammar")) is None


def test_saving_skips_unchanged_tables_and_merges_both_ways(tmp_path, monkeypatch):
    """A table is rewritten only when it grew; a save also brings in what another process wrote meanwhile."""
    monkeypatch.setenv("VERL_AGENT_EXT_CACHE", str(tmp_path))
    clear_tables()
    mine = get_table("game", persist=True)
    start = mine.intern(b"a" * 16, ("look", "go to desk 1"), ())
    mine.transitions[(start, "look")] = (start, "You are in a room.", False)
    path = save_table(mine)
    written = path.stat().st_ino
    assert not mine.changed and save_table(mine) == path and path.stat().st_ino == written  # nothing new: skipped
    clear_tables()
    other = get_table("game", persist=True)  # another process: reads the file, finds a new state
    desk = other.intern(b"b" * 16, ("look",), ())
    other.transitions[(other.intern(b"a" * 16, ("look", "go to desk 1"), ()), "go to desk 1")] = (desk, "Desk.", False)
    save_table(other)
    mine.transitions[(start, "inventory")] = (start, "You carry nothing.", False)
    save_table(mine)
    assert len(mine.digests) == 2 and len(mine.transitions) == 3 and mine.digests[start] == b"a" * 16
    clear_tables()
    assert isinstance(get_table("game", persist=True), TransitionTable)
    assert len(get_table("game", persist=True).transitions) == 3
    clear_tables()
