"""WebShopEnv: the pure-Python WebShop behind the `TextEnv` contract (no Java, no pyserini, no spaCy model).

Actions are the original `search[keywords]` and `click[button]`; observations are the original "simple" page
text (`[SEP]`-separated). The episode ends on "Buy Now" (reward 10 if the purchase scores exactly 1, the raw
score in `info["score"]`) or after `max_steps` steps (15, the published WebShop setting; score 0). An action that
is not available (malformed, unknown button, empty search, search away from the search page, too long) is
reported as invalid and changes nothing, as in the original, where such actions are no-ops.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from cachetools import LRUCache

from verl_agent_ext.envs.base import Observation, ParsedAction, StepResult, Task, TextEnv, Turn
from verl_agent_ext.envs.text import MAX_ACTION_CHARS, extract_action, normalise
from verl_agent_ext.envs.webshop.site import DONE, SEP, SUB_PAGE, ShopSession
from verl_agent_ext.envs.webshop.tasks import DEFAULT_GENERATED_PRODUCTS, get_catalog
from verl_agent_ext.envs.webshop.textmatch import NOUN_TAGGERS

SEARCH_TEMPLATE = "search[<your query>]"
SUCCESS_REWARD = 10.0
_ACTION = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.DOTALL | re.IGNORECASE)
_MAX_LISTED_BUTTONS = 20
# Rendered pages remembered per env, keyed by what a page shows (instruction, page, query, result page, product,
# sub page): the chosen options and the purchase never change a page's text before "Buy Now".
PAGE_CACHE_SIZE = 16_384


def _split_action(action: str) -> tuple[str, str] | tuple[None, str]:
    """("search" | "click", argument in lower case) or (None, reason)."""
    if len(action) > MAX_ACTION_CHARS:
        return None, f"action longer than {MAX_ACTION_CHARS} characters"
    match = _ACTION.match(action)
    if match is None:
        return None, "malformed action: expected search[query] or click[button]"
    return match.group(1).lower(), " ".join(match.group(2).split()).lower()


class WebShopEnv(TextEnv):
    """One WebShop shopper; `Task.task_id` is the goal index (see `tasks.list_tasks`).

    data_dir: folder with the original WebShop files or `webshop-generate` output; None = a generated catalog
        of `generated_products` products made in memory from `seed`.
    goal_source: "human" (items_human_ins.json; the published setting) or "synthetic" (items_ins_v2.json).
    num_products: use only the first N products of the file.
    show_attributes: show the "Attributes" button on item pages (original `show_attrs`, off by default).
    noun_tagger: "lexical" (default, no model) or "spacy" (en_core_web_sm, the original reward's tagger).
    history_length: past turns shown in the prompt.
    """

    name = "webshop"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        goal_source: str = "human",
        num_products: int | None = None,
        generated_products: int = DEFAULT_GENERATED_PRODUCTS,
        seed: int = 0,
        max_steps: int = 15,
        show_attributes: bool = False,
        noun_tagger: str = "lexical",
        history_length: int = 2,
    ):
        if noun_tagger not in NOUN_TAGGERS:
            raise ValueError(f"unknown noun tagger {noun_tagger!r}; valid names: {sorted(NOUN_TAGGERS)}")
        NOUN_TAGGERS[noun_tagger]("warm up")  # load the tagger now: a missing spaCy model fails here, not mid-episode
        self.catalog = get_catalog(data_dir, goal_source, num_products, generated_products, seed)
        self.max_steps = max_steps
        self.show_attributes = show_attributes
        self.noun_tagger = noun_tagger
        self.history_length = history_length
        self._task: Task | None = None
        self._session: ShopSession | None = None
        self._pages: LRUCache[tuple, Observation] = LRUCache(maxsize=PAGE_CACHE_SIZE)
        self._steps = 0

    @property
    def current_task(self) -> Task | None:
        return self._task

    @property
    def session(self) -> ShopSession:
        """The running episode's site state (the goal, page, chosen product and options)."""
        if self._session is None:
            raise RuntimeError("no episode: call reset(task) first")
        return self._session

    def reset(self, task: Task) -> Observation:
        try:
            goal_index = int(task.task_id)
        except ValueError as error:
            raise ValueError(f"WebShop task_id must be a goal index, got {task.task_id!r}") from error
        if not 0 <= goal_index < len(self.catalog.goals):
            raise ValueError(f"goal index {goal_index} out of range: this catalog has {len(self.catalog.goals)}")
        self._task = task
        self._session = ShopSession(
            self.catalog, self.catalog.goals[goal_index], self.show_attributes, self.noun_tagger
        )
        self._steps = 0
        return self._observe()

    def step(self, action: str) -> StepResult:
        session = self.session
        if session.page == DONE or self._steps >= self.max_steps:
            return StepResult(self._observe(), 0.0, done=True, invalid=True, invalid_reason="the episode is over")
        self._steps += 1
        reason = self._apply(action)
        score = session.score
        won = score is not None and score.total == 1.0
        done = score is not None or self._steps >= self.max_steps
        info = {
            "task_type": session.goal.category,
            "goal_asin": session.goal.asin,
            "generated_data": self.catalog.generated,
            "page": session.page,
            "steps": self._steps,
        }
        if score is not None:
            info |= {
                "score": score.total,
                "purchased_asin": session.product.asin if session.product else None,
                "r_type": score.r_type,
                "r_attribute": score.r_attribute,
                "r_option": score.r_option,
                "r_price": score.r_price,
            }
        elif done:
            info["score"] = 0.0  # cut off before buying: the original's reward for an unfinished episode
        return StepResult(
            observation=self._observe(),
            reward=SUCCESS_REWARD if won else 0.0,
            done=done,
            won=won,
            invalid=reason is not None,
            invalid_reason=reason,
            info=info,
        )

    def _apply(self, action: str) -> str | None:
        """Apply `action` to the session; the reason it is invalid (state unchanged), else None."""
        session = self.session
        kind, argument = _split_action(action)
        if kind is None:
            return argument
        if kind == "search":
            if not session.has_search_bar:
                return "search is only available on the search page (click[back to search] first)"
            if not argument:
                return "empty search query"
            session.search(argument)
            return None
        clickables = session.clickables()
        if argument not in clickables:
            listed = ", ".join(clickables[:_MAX_LISTED_BUTTONS]) or "none"
            return f"unknown button {argument[:80]!r}; clickable now: {listed}"
        session.click(argument)
        return None

    def _observe(self) -> Observation:
        """The current page's observation; pages other than the final one are remembered (an LRU per env)."""
        session = self.session
        if session.page == DONE:
            return self._render()
        product = session.product.asin if session.product is not None else None
        sub_page = session.sub_page if session.page == SUB_PAGE else ""
        key = (session.goal.instruction_text, session.page, session.keywords, session.page_number, product, sub_page)
        observation = self._pages.get(key)
        if observation is None:
            observation = self._pages[key] = self._render()
        return observation

    def _render(self) -> Observation:
        session = self.session
        text = session.render()
        actions = ([SEARCH_TEMPLATE] if session.has_search_bar else []) + [f"click[{c}]" for c in session.clickables()]
        return Observation(
            text=text, anchor=text, admissible_actions=tuple(actions), task_description=session.goal.instruction_text
        )

    def format_prompt(self, observation: Observation, history: Sequence[Turn], step_index: int) -> str:
        """Task, the last `history_length` turns, the current page (without the repeated instruction), actions."""
        lines = [
            "You are shopping on the WebShop website for the customer instruction below.",
            f"Instruction: {observation.task_description}",
        ]
        recent = list(history)[-self.history_length :] if self.history_length > 0 else []
        if recent:
            # Number turns from step_index: the caller may pass an already windowed history.
            lines.append(f"You have taken {step_index} step(s) so far. The last {len(recent)}:")
            for number, turn in enumerate(recent, start=step_index - len(recent) + 1):
                lines.append(f"[step {number}] page: {page_text(turn.observation)}")
                lines.append(f"[step {number}] action: {turn.action}")
        lines += [
            f"Step {step_index + 1} of at most {self.max_steps}. Current page: {page_text(observation.text)}",
            f"Available actions: {', '.join(observation.admissible_actions)}",
            "Replace <your query> with your own search words. Think about which action brings you closer to buying "
            "the right product with the right options within the price limit, inside <think> </think>, then give "
            "exactly one action inside <action> </action>, e.g. <action>click[buy now]</action>.",
        ]
        return "\n".join(lines)

    def parse_action(self, response: str, observation: Observation) -> ParsedAction:
        """The action of a `<think>..</think><action>..</action>` response, checked against the page."""
        action, reason = extract_action(response)
        if action is None:
            return ParsedAction(action="", valid=False, reason=reason)
        kind, argument = _split_action(action)
        if kind is None:
            return ParsedAction(action=action, valid=False, reason=argument)
        if kind == "search":
            if SEARCH_TEMPLATE not in observation.admissible_actions:
                return ParsedAction(action=action, valid=False, reason="search is not available on this page")
            if not argument:
                return ParsedAction(action=action, valid=False, reason="empty search query")
            return ParsedAction(action=f"search[{argument}]", valid=True)
        canonical = f"click[{argument}]"
        if normalise(canonical) not in {normalise(a) for a in observation.admissible_actions}:
            return ParsedAction(action=action, valid=False, reason="not an admissible action")
        return ParsedAction(action=canonical, valid=True)


def page_text(observation_text: str) -> str:
    """A page's text without its leading "Instruction: [SEP] <instruction>" (the prompt states the task once)."""
    parts = observation_text.split(SEP)
    for index, part in enumerate(parts[:3]):
        if part == "Instruction:":
            return SEP.join(parts[:index] + parts[index + 2 :])
    return observation_text
