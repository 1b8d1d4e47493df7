"""credit-eval on WebShop: epsilon-expert rollouts whose search queries vary, every step labelled by the expert path.

Oracle. d(s) = the number of steps the expert's decision sequence still needs from state s to a full-score
purchase (reward 10), inf when it has none:

- search page: 1 (a search) + the results' distance of the expert's query: the instruction without its price
  clause, or the target's title when the instruction does not list the target among its 50 hits;
- results page: when the target is among the hits, the page turns to reach it (`next >` / `< prev`), 1 click on
  it, then the item's distance; else (or when shorter) 1 (`back to search`) + the search page's distance;
- the target's item page: one click per wanted option value not yet chosen (the option the expert would pick,
  `WebShopExpert._next_option`), then 1 (`buy now`); inf when that purchase would not score 1;
- another item's page: 1 (`< prev`) + the results page's distance; a sub page: 1 (`< prev`) + its item page's;
- done: 0 after a full-score purchase, inf after any other.

A step is good when it is valid and d(s_{t+1}) < d(s_t) (progress > 0), as on ALFWorld. So a search is good when
it lists the target on a results page no later than the expert's query does; a click on a wrong option, a sub
page, another product or an unneeded page turn is bad.

Behaviour (seeded per rollout): with probability 1 - epsilon the expert's next step, else a uniformly random
admissible action. Searches are written the way people and models write them (`write_query`): the expert's
searches in one of `EXPERT_QUERY_STYLES`, random searches in one of `NOISY_QUERY_STYLES` (dropped or extra
attributes, random words, synonyms). Whether such a query still finds the target is up to the site's BM25 search,
so a paraphrase of a good query may be labelled bad: the oracle labels what the query does, not how it reads.

Tasks: goals of the generated catalog's train split on which the expert itself scores 1 (`solvable_tasks`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np

from verl_agent_ext.credit_eval.rollouts import (
    RolloutSpec,
    choose_tasks,
    columns_of,
    finish_episode,
    labelled_step,
    mixture_entropy,
)
from verl_agent_ext.envs.base import Task
from verl_agent_ext.envs.webshop.env import SEARCH_TEMPLATE, WebShopEnv
from verl_agent_ext.envs.webshop.policies import WebShopExpert, instruction_query
from verl_agent_ext.envs.webshop.reward import score_purchase
from verl_agent_ext.envs.webshop.site import (
    BACK_TO_SEARCH,
    BUY_NOW,
    DONE,
    ITEM,
    NEXT_PAGE,
    PREV_PAGE,
    RESULTS,
    RESULTS_PER_PAGE,
    SEARCH,
    SEARCH_RESULTS,
    SUB_PAGE,
    ShopSession,
)

UNREACHABLE = math.inf
EXPERT_QUERY_STYLES = ("instruction", "reordered", "keywords", "request", "synonyms")
NOISY_QUERY_STYLES = ("dropped", "extra", "random_words", "synonyms_dropped")
# A few spelling / wording variants people and models use in shopping queries (applied word by word or to phrases).
SYNONYMS = {
    "women": "ladies",
    "womens": "ladies",
    "men": "guys",
    "mens": "guys",
    "long sleeve": "long-sleeved",
    "short sleeve": "short-sleeved",
    "hoodie": "hooded sweatshirt",
    "shoes": "sneakers",
    "lightweight": "light weight",
    "machine wash": "machine washable",
    "easy clean": "easy to clean",
    "non slip": "anti-slip",
    "gluten free": "gluten-free",
    "sugar free": "no sugar",
    "high quality": "premium",
    "pack": "count",
    "color": "colour",
    "size": "sz",
    "small": "s",
    "large": "l",
    "black": "dark black",
    "water resistant": "waterproof",
    "fleece lined": "fleece-lined",
    "find me": "i want",
    "i need": "looking for",
    "i am looking for": "searching",
}
REQUEST_PREFIXES = ("i want to buy ", "can you find ", "looking for ", "search for ", "please show me ")


def solvable_tasks(env: WebShopEnv, tasks: Sequence[Task], max_steps: int) -> list[Task]:
    """The tasks on which the scripted expert buys the target with a full score within `max_steps`."""
    kept = []
    for task in tasks:
        observation = env.reset(task)
        expert = WebShopExpert(env)
        for _ in range(max_steps):
            result = env.step(expert.act(observation))
            observation = result.observation
            if result.done:
                break
        if result.won:
            kept.append(task)
    return kept


class ExpertPath:
    """d(s) of the module docstring for one goal, with its search results cached per query."""

    def __init__(self, session: ShopSession) -> None:
        self.goal = session.goal
        self.catalog = session.catalog
        self.noun_tagger = session.noun_tagger
        self.target = self.goal.asin
        self._hits: dict[str, list[str]] = {}
        self.queries = (instruction_query(self.goal.instruction_text), self.goal.name)
        self._fresh: float | None = None

    def hits(self, query: str) -> list[str]:
        key = " ".join(query.lower().split())
        if key not in self._hits:
            self._hits[key] = [product.asin for product in self.catalog.search(key, SEARCH_RESULTS)]
        return self._hits[key]

    def distance(self, session: ShopSession) -> float:
        if session.page == DONE:
            return 0.0 if session.score is not None and session.score.total == 1.0 else UNREACHABLE
        if session.page == SEARCH:
            return self.search_distance()
        if session.page == RESULTS:
            return self.results_distance([p.asin for p in session.hits], session.page_number)
        on_target = session.product is not None and session.product.asin == self.target
        if session.page == ITEM:
            if on_target:
                return self.item_distance(session)
            return 1.0 + self.results_distance([p.asin for p in session.hits], session.page_number)
        if session.page == SUB_PAGE:
            if on_target:
                return 1.0 + self.item_distance(session)
            return 2.0 + self.results_distance([p.asin for p in session.hits], session.page_number)
        raise ValueError(f"unknown WebShop page {session.page!r}")

    def search_distance(self) -> float:
        """1 + the results' distance of the expert's query: the instruction's, or the title's when that fails."""
        instruction, title = (self._after_search(self.hits(query)) for query in self.queries)
        return 1.0 + (instruction if instruction < UNREACHABLE else title)

    def _after_search(self, hits: list[str]) -> float:
        if self.target not in hits:
            return UNREACHABLE
        return hits.index(self.target) // RESULTS_PER_PAGE + 1.0 + self._fresh_item_distance()

    def results_distance(self, hits: list[str], page_number: int) -> float:
        best = 1.0 + self.search_distance()
        if self.target in hits:
            turns = abs(hits.index(self.target) // RESULTS_PER_PAGE + 1 - page_number)
            best = min(best, turns + 1.0 + self._fresh_item_distance())
        return best

    def _fresh_item_distance(self) -> float:
        if self._fresh is None:
            product = next(p for p in self.catalog.products if p.asin == self.target)
            self._fresh = self._option_clicks(product, {})
        return self._fresh

    def item_distance(self, session: ShopSession) -> float:
        assert session.product is not None
        return self._option_clicks(session.product, session.options)

    def _option_clicks(self, product, options: dict[str, str]) -> float:
        """Clicks on option values the expert would still make, plus buy now; inf when buying would not score 1."""
        chosen = dict(options)
        clicks = 0
        while (value := WebShopExpert._next_option(self.goal.option_values, chosen, product.options)) is not None:
            group = [name for name, values in product.options.items() if value in values][-1]
            chosen[group] = value
            clicks += 1
            if clicks > 20:
                return UNREACHABLE
        price = self.catalog.prices[product.asin]
        score = score_purchase(product, self.goal, price, chosen, self.noun_tagger)
        return clicks + 1.0 if score.total == 1.0 else UNREACHABLE


def expert_action(session: ShopSession, path: ExpertPath, query: Callable[[], str]) -> str:
    """The expert's next action (the one its decision sequence takes from here); `query` writes its search."""
    target = path.target
    if session.page == SEARCH:
        return f"search[{query()}]"
    if session.page == RESULTS:
        hits = [p.asin for p in session.hits]
        here = path.results_distance(hits, session.page_number)
        back = 1.0 + path.search_distance()
        if target in hits and here < back:
            wanted_page = hits.index(target) // RESULTS_PER_PAGE + 1
            if wanted_page == session.page_number:
                return f"click[{target.lower()}]"
            return f"click[{NEXT_PAGE if wanted_page > session.page_number else PREV_PAGE}]"
        return f"click[{BACK_TO_SEARCH}]"
    if session.page == ITEM and session.product is not None and session.product.asin == target:
        option = WebShopExpert._next_option(path.goal.option_values, session.options, session.product.options)
        return f"click[{option}]" if option else f"click[{BUY_NOW}]"
    return f"click[{PREV_PAGE}]"


def write_query(goal, style: str, rng: random.Random, other_attributes: Sequence[str]) -> str:
    """A search query for `goal` written in `style` (EXPERT_QUERY_STYLES or NOISY_QUERY_STYLES)."""
    base = instruction_query(goal.instruction_text)
    attributes = list(goal.attributes) + list(goal.option_values)
    if style == "instruction":
        return base
    if style == "reordered":
        words = base.split()
        rng.shuffle(words)
        return " ".join(words)
    if style == "keywords":
        return " ".join([*attributes, _head_noun(goal)])
    if style == "request":
        return rng.choice(REQUEST_PREFIXES) + " ".join([_head_noun(goal), *attributes])
    if style == "synonyms":
        return _with_synonyms(base)
    if style == "dropped":
        kept = [a for a in attributes if rng.random() < 0.4]
        return " ".join([*kept, _head_noun(goal)])
    if style == "extra":
        extra = rng.sample(list(other_attributes), min(2, len(other_attributes)))
        return " ".join([*attributes, *extra, _head_noun(goal)])
    if style == "random_words":
        words = base.split()
        return " ".join(rng.sample(words, min(len(words), rng.randint(1, 4))))
    if style == "synonyms_dropped":
        return _with_synonyms(" ".join([a for a in attributes if rng.random() < 0.5] + [_head_noun(goal)]))
    raise ValueError(f"unknown query style {style!r}; valid: {list(EXPERT_QUERY_STYLES + NOISY_QUERY_STYLES)}")


def _head_noun(goal) -> str:
    """The product kind the goal asks for: the last words of its product query ("men's hoodies")."""
    return goal.query or goal.name.split()[-1]


def _with_synonyms(text: str) -> str:
    text = f" {text.lower()} "
    for phrase, other in sorted(SYNONYMS.items(), key=lambda item: -len(item[0])):
        text = text.replace(f" {phrase} ", f" {other} ")
    return " ".join(text.split())


def rollout_rows(
    spec: RolloutSpec, pool: Sequence[Task], env: WebShopEnv, progress: Callable[[], None] | None = None
) -> dict[str, np.ndarray]:
    """Labelled step rows of `spec`'s WebShop rollouts (the columns of `rollouts.rollout_rows`).

    Extra columns: `episode_return`, `seed`, `epsilon`, `task_id`, `query_style` (the style of the step's
    search, "" for clicks).
    """
    other_attributes = sorted({a for goal in env.catalog.goals[:300] for a in goal.attributes})
    rows: list[dict] = []
    for task_index, task in enumerate(choose_tasks(pool, spec.tasks, spec.seed)):
        uid = f"s{spec.seed}-e{spec.epsilon:g}-t{task_index}"
        for member in range(spec.group_size):
            rng = np.random.default_rng([spec.seed, task_index, member, round(spec.epsilon * 1000)])
            writer = random.Random(int(rng.integers(1 << 31)))
            rows.extend(_one_rollout(env, task, uid, f"{uid}-r{member}", spec, rng, writer, other_attributes))
            if progress is not None:
                progress()
    return columns_of(rows)


def _one_rollout(env, task, uid, traj_uid, spec, rng, writer, other_attributes) -> list[dict]:
    observation = env.reset(task)
    path = ExpertPath(env.session)
    steps: list[dict] = []
    for step_index in range(spec.max_steps):
        session = env.session
        admissible = observation.admissible_actions
        style = ""
        if rng.random() < spec.epsilon:
            action = admissible[rng.integers(len(admissible))]
            if action == SEARCH_TEMPLATE:
                style = NOISY_QUERY_STYLES[rng.integers(len(NOISY_QUERY_STYLES))]
                action = f"search[{write_query(session.goal, style, writer, other_attributes)}]"
        else:
            style = EXPERT_QUERY_STYLES[rng.integers(len(EXPERT_QUERY_STYLES))] if session.page == SEARCH else ""
            goal = session.goal
            action = expert_action(session, path, lambda: write_query(goal, style, writer, other_attributes))  # noqa: B023
        d_before = path.distance(session)
        result = env.step(action)
        d_after = 0.0 if result.won else path.distance(env.session)
        entropy = mixture_entropy(len(admissible), True, spec.epsilon)
        row = labelled_step(
            (uid, traj_uid, step_index), task, observation, action, result, entropy, (d_before, d_after)
        )
        steps.append({**row, "query_style": style})
        observation = result.observation
        if result.done:
            break
    return finish_episode(steps, result.won, spec.seed, spec.epsilon)
