"""The planner expert solves generated games of all six task types; the random policy never crashes; the searcher
plays in listed order, and its step counts select the games solvable within a step budget."""

from __future__ import annotations

from collections import Counter

from verl_agent_ext.envs.alfworld.env import AlfworldEnv
from verl_agent_ext.envs.alfworld.generator import TASK_TYPES
from verl_agent_ext.envs.alfworld.solvable import SEARCH_LIMIT, searcher_steps, solvable_within
from verl_agent_ext.envs.registry import make_policy


def play(env, policy, task):
    observation = env.reset(task)
    while True:
        result = env.step(policy.act(observation))
        observation = result.observation
        if result.done:
            return result


def test_expert_solves_all_30_of_half_the_generated_tasks(alfworld_tasks):
    tasks = alfworld_tasks[::2]  # every other one: 5 of each task type (the whole set costs twice the CI time)
    assert Counter(task.task_type for task in tasks) == {task_type: 5 for task_type in TASK_TYPES}
    env = AlfworldEnv()
    expert = make_policy("alfworld", "expert", env)
    results = [play(env, expert, task) for task in tasks]
    failures = [task.task_id for task, result in zip(tasks, results, strict=True) if not result.won]
    assert not failures
    assert all(result.reward == 10.0 and not result.invalid for result in results if result.won)


def test_random_policy_plays_to_the_step_limit_without_errors(task_per_type):
    env = AlfworldEnv(max_steps=15)
    policy = make_policy("alfworld", "random", env, seed=1)
    for task in task_per_type.values():
        result = play(env, policy, task)
        assert result.done and (result.won or result.info["truncated"])
        assert result.info["steps"] <= 15


def test_searcher_searches_in_listed_order_then_wins(alfworld_tasks):
    tasks = [task for task in alfworld_tasks if task.task_type == "pick_and_place_simple"][:6]
    env = AlfworldEnv()
    searcher, expert = make_policy("alfworld", "searcher", env, seed=0), make_policy("alfworld", "expert", env)
    searched = 0
    for task in tasks:
        observation, seen, here, holding = env.reset(task), "", None, False
        while True:
            seen += observation.text
            action = searcher.act(observation)
            if action.startswith("take "):  # only an object it has seen: named in an observation so far
                assert action.split(" from ")[0][len("take ") :] in seen
                holding = True
            if action.startswith("go to ") and not holding:  # searching: the next receptacle in listed order
                moves = [a for a in observation.admissible_actions if a.startswith("go to ")]
                after = [a for a in moves if here is None or a > f"go to {here}"]
                assert action == (after or moves)[0]
                here = action[len("go to ") :]
            result = env.step(action)
            observation = result.observation
            assert not result.invalid
            if result.done:
                break
        assert result.won
        searched += result.info["steps"] > play(env, expert, task).info["steps"]
    assert searched >= 2  # it searched where the planner went straight to the object


def test_solvable_within_keeps_the_games_the_searcher_wins_in_time_and_caches_the_counts(
    alfworld_tasks, tmp_path, monkeypatch
):
    monkeypatch.setenv("VERL_AGENT_EXT_CACHE", str(tmp_path))  # the step counts' cache; the games stay where they are
    tasks = [task for task in alfworld_tasks if task.task_type == "pick_and_place_simple"][:4]
    env = AlfworldEnv(max_steps=SEARCH_LIMIT)
    played = [play(env, make_policy("alfworld", "searcher", env), task) for task in tasks]
    expected = [result.info["steps"] if result.won else None for result in played]
    assert searcher_steps(tasks) == expected
    budget = sorted(steps for steps in expected if steps is not None)[1]
    monkeypatch.setattr("verl_agent_ext.envs.alfworld.solvable._play_searcher", lambda env, task: 1 / 0)  # cached
    kept = solvable_within(tasks, budget)
    assert kept == [task for task, steps in zip(tasks, expected, strict=True) if steps is not None and steps <= budget]
    assert 2 <= len(kept) < len(tasks)  # these four games need different numbers of steps
