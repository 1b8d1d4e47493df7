"""A finite action set for WebShop policies that choose among candidates (e.g. a softmax over scored actions).

    actions = candidate_actions(observation)          # tuple of env action strings, deterministic
    result = env.step(actions[i])

On the search page (the only page with a search bar) the candidates are search queries built from the
instruction alone (no privileged goal fields), in this order, duplicates dropped:

1. full: the instruction without its price clause, exactly what the expert sends first (`instruction_query`);
2. content: its content words (lead-in, articles, relative pronouns and "and" removed, punctuation dropped);
3. head: the content words without the last comma-separated segment when there are several (instructions name
   the options last: "..., black color and 10 feet length"): the attribute words and the product type;
4. type: the product-type words: the words between the lead-in and "that is" / "which is" when the instruction
   has that shape, else the last two words of the head;
5. `dropped` variants of the content query with one word left out: which words is drawn by a
   `random.Random` seeded with (seed, crc32 of the instruction), so the set depends only on the text and seed.

On every other page the candidates are the page's clickables (`click[...]` actions, page order).
"""

from __future__ import annotations

import random
import re
import zlib
from functools import lru_cache

from verl_agent_ext.envs.base import Observation
from verl_agent_ext.envs.webshop.env import SEARCH_TEMPLATE
from verl_agent_ext.envs.webshop.policies import instruction_query

DROPPED_VARIANTS = 3
_LEAD_IN = re.compile(
    r"^(i am looking for|i'm looking for|looking for|i want to buy|i would like|i want|i need|find me)\s+"
)
_ARTICLE = re.compile(r"^(an|a|some|the)\s+")
_RELATIVE = re.compile(r"\s+(?:that|which) (?:is|are|has|have)\s+")
_FILLER = frozenset("a an the some and or that which is are has have with of for to i me".split())
_WORD = re.compile(r"[a-z0-9][a-z0-9.'&-]*")


def _words(text: str) -> list[str]:
    return [word.rstrip(".") for word in _WORD.findall(text.lower()) if word.rstrip(".") not in _FILLER]


@lru_cache(maxsize=65_536)
def search_queries(instruction: str, dropped: int = DROPPED_VARIANTS, seed: int = 0) -> tuple[str, ...]:
    """The candidate search queries of `instruction` (see the module docstring), deterministic in (text, seed)."""
    full = instruction_query(instruction)
    core = _ARTICLE.sub("", _LEAD_IN.sub("", full.lower().strip()))
    content = _words(core)
    segments = core.rsplit(",", 1)
    head = _words(segments[0])
    relative = _RELATIVE.split(segments[0], maxsplit=1)
    product_type = _words(relative[0]) if len(relative) == 2 else head[-2:]
    queries = [full, " ".join(content), " ".join(head), " ".join(product_type)]
    if len(content) > 1:
        rng = random.Random(f"{seed}:{zlib.crc32(instruction.encode())}")
        for index in sorted(rng.sample(range(len(content)), min(dropped, len(content)))):
            queries.append(" ".join(content[:index] + content[index + 1 :]))
    return tuple(dict.fromkeys(f"search[{query}]" for query in queries if query))


def candidate_actions(observation: Observation, dropped: int = DROPPED_VARIANTS, seed: int = 0) -> tuple[str, ...]:
    """Search queries on the search page, the clickables on every other page (env action strings)."""
    admissible = observation.admissible_actions
    if SEARCH_TEMPLATE in admissible:
        clicks = tuple(action for action in admissible if action != SEARCH_TEMPLATE)
        return search_queries(observation.task_description, dropped, seed) + clicks
    return admissible
