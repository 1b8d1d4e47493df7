"""Scripted WebShop policies for smoke tests and `verl-agent-ext play`.

The expert is an oracle: it reads the goal (target asin and wanted options) from the environment, searches with
the instruction, opens the target when it shows up in the first result pages (else searches again with the
product's title), clicks the option values closest to the wanted ones and buys. The random policy clicks
uniformly among the admissible actions and searches with random words of the instruction.
"""

from __future__ import annotations

import random
import re

from verl_agent_ext.envs.base import Observation, TextEnv
from verl_agent_ext.envs.webshop.env import SEARCH_TEMPLATE, WebShopEnv
from verl_agent_ext.envs.webshop.site import (
    BACK_TO_SEARCH,
    BUY_NOW,
    ITEM,
    NEXT_PAGE,
    PREV_PAGE,
    RESULTS,
    SEARCH,
    ShopSession,
)
from verl_agent_ext.envs.webshop.textmatch import token_set_ratio

_PRICE_CLAUSE = re.compile(r",? and price lower than [\d.]+ dollars$")
EXPERT_RESULT_PAGES = 2


def instruction_query(instruction: str) -> str:
    """Search keywords for an instruction: its text without the price clause."""
    return _PRICE_CLAUSE.sub("", instruction).strip()


class WebShopExpert:
    """Buys the goal's product with the wanted options (privileged: it reads the goal from the env)."""

    def __init__(self, env: WebShopEnv):
        self.env = env
        self._session: ShopSession | None = None
        self._searches = 0

    def act(self, observation: Observation) -> str:
        session = self.env.session
        if session is not self._session:  # a new episode
            self._session, self._searches = session, 0
        target = session.goal.asin
        if session.page == SEARCH:
            self._searches += 1
            query = instruction_query(session.goal.instruction_text) if self._searches == 1 else session.goal.name
            return f"search[{query}]"
        if session.page == RESULTS:
            if f"click[{target.lower()}]" in observation.admissible_actions:
                return f"click[{target.lower()}]"
            more = session.page_number * 10 < len(session.hits)
            return (
                f"click[{NEXT_PAGE}]"
                if more and session.page_number < EXPERT_RESULT_PAGES
                else f"click[{BACK_TO_SEARCH}]"
            )
        if session.page == ITEM:
            if session.product is None or session.product.asin != target:
                return f"click[{PREV_PAGE}]"
            option = self._next_option(session.goal.option_values, session.options, session.product.options)
            return f"click[{option}]" if option else f"click[{BUY_NOW}]"
        return f"click[{PREV_PAGE}]"

    @staticmethod
    def _next_option(wanted: list[str], chosen: dict[str, str], offered: dict[str, list[str]]) -> str | None:
        """The offered value closest to the first wanted value not yet chosen, else None."""
        for value in wanted:
            best_group, best_value = max(
                ((name, candidate) for name, values in offered.items() for candidate in values),
                key=lambda pair: (pair[1] == value.lower(), token_set_ratio(pair[1], value)),
                default=(None, None),
            )
            if best_value is not None and chosen.get(best_group) != best_value:
                return best_value
        return None


class WebShopRandom:
    """Uniform over admissible actions; a search uses 1-4 random words of the instruction."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def act(self, observation: Observation) -> str:
        action = self.rng.choice(observation.admissible_actions)
        if action == SEARCH_TEMPLATE:
            words = instruction_query(observation.task_description).split()
            return f"search[{' '.join(self.rng.sample(words, min(len(words), self.rng.randint(1, 4))))}]"
        return action


def make_expert(env: TextEnv, seed: int = 0) -> WebShopExpert:
    """The oracle expert bound to `env` (a WebShopEnv); deterministic, `seed` is unused."""
    if not isinstance(env, WebShopEnv):
        raise TypeError(f"the WebShop expert needs a WebShopEnv, got {type(env).__name__}")
    return WebShopExpert(env)


def make_random(env: TextEnv, seed: int = 0) -> WebShopRandom:
    """A seeded random policy (it only reads observations, so any WebShop-like env works)."""
    return WebShopRandom(seed)
