"""WebShop candidate actions: deterministic, valid, holding the expert's query and every page's clickables."""

from __future__ import annotations

import pytest

from verl_agent_ext.envs.base import Task
from verl_agent_ext.envs.registry import make_env, make_policy
from verl_agent_ext.envs.webshop.candidates import DROPPED_VARIANTS, candidate_actions, search_queries
from verl_agent_ext.envs.webshop.env import SEARCH_TEMPLATE, WebShopEnv
from verl_agent_ext.envs.webshop.policies import instruction_query
from verl_agent_ext.envs.webshop.tasks import list_tasks


@pytest.fixture(scope="module")
def env() -> WebShopEnv:
    return make_env("webshop")


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    return list_tasks("train", limit=40)


def test_search_queries_are_deterministic_and_start_with_the_full_instruction(env):
    instruction = env.catalog.goals[0].instruction_text
    queries = search_queries(instruction)
    search_queries.cache_clear()
    assert search_queries(instruction) == queries
    assert queries[0] == f"search[{instruction_query(instruction)}]"
    assert len(queries) == len(set(queries)) <= 4 + DROPPED_VARIANTS
    assert all("price lower than" not in query for query in queries)
    assert search_queries(instruction, seed=1)[:4] == queries[:4]  # the seed only picks the dropped words
    assert len(search_queries(instruction, dropped=0)) <= 4


def test_type_and_head_queries_drop_lead_in_and_options():
    queries = search_queries("find me a gold plated hdmi cable, 1 item package quantity and 6 feet length")
    assert "search[gold plated hdmi cable]" in queries and "search[hdmi cable]" in queries
    queries = search_queries("i need some yoga pants that is tummy control, side pockets and high waist, grey color")
    assert "search[yoga pants tummy control side pockets high waist]" in queries and "search[yoga pants]" in queries


def test_candidates_hold_the_expert_actions_and_the_clickables(env, tasks):
    expert = make_policy("webshop", "expert", env)
    searches = 0
    for task in tasks:
        observation = env.reset(task)
        done = False
        while not done:
            candidates = candidate_actions(observation)
            action = expert.act(observation)
            if SEARCH_TEMPLATE in observation.admissible_actions:
                searches += 1
                assert SEARCH_TEMPLATE not in candidates and all(c.startswith("search[") for c in candidates)
                if expert._searches == 1:  # its first query is the instruction; a second one reads the goal
                    assert action in candidates
            else:
                assert candidates == observation.admissible_actions
                assert action in candidates
            result = env.step(action)
            observation, done = result.observation, result.done
    assert searches >= len(tasks)


def test_every_candidate_is_a_valid_action(env, tasks):
    for task in tasks[:5]:
        observation = env.reset(task)
        for search in candidate_actions(observation):
            env.reset(task)
            result = env.step(search)
            assert not result.invalid
        for click in candidate_actions(result.observation):
            env.replay([search])
            assert not env.step(click).invalid


def test_cached_search_returns_fresh_lists_equal_to_the_index(env):
    catalog = env.catalog
    first = catalog.search("hdmi cable gold plated", 50)
    first.clear()  # a caller mutating its list must not touch the cache
    again = catalog.search("hdmi cable gold plated", 50)
    assert again == [catalog.products[i] for i in catalog.index.search("hdmi cable gold plated", 50)]
    assert len(again) == 50


def test_remembered_pages_equal_fresh_renders(env, tasks):
    import random

    rng = random.Random(0)
    for episode in range(60):
        observation = env.reset(tasks[episode % 10])
        done = False
        while not done:
            result = env.step(rng.choice(candidate_actions(observation)))
            observation, done = result.observation, result.done
            assert observation == env._render()
    assert len(env._pages) > 10
