"""The WebShop purchase score in [0, 1] (the original paper's reward, Section 3.1 and its code).

    score = r_type * (attribute matches + option matches + [price <= limit]) / (#attributes + #options + 1)

- attribute match: a goal attribute fuzzy-matches (token-set ratio > 85) one of the product's attributes, or occurs
  verbatim in its title, bullet points or description;
- option match: a requested option value fuzzy-matches (> 85) a chosen option value, colours normalised first;
- r_type in {0, 0.1, 0.5, 1}: is the purchase the requested kind of product (same search query, two shared
  category-path levels, or shared nouns in the title).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from verl_agent_ext.envs.webshop.catalog import Goal, Product
from verl_agent_ext.envs.webshop.textmatch import NOUN_TAGGERS, normalize_color, token_set_ratio

FUZZY_THRESHOLD = 85


@dataclass(frozen=True)
class TypeMatch:
    """r_type and the evidence behind it (title_score: share of the goal title's nouns found in the purchase)."""

    r_type: float
    query_match: bool
    category_match: bool
    title_score: float


@dataclass(frozen=True)
class Score:
    """A purchase's score and its parts (r_option is None when the goal asks for no option)."""

    total: float
    r_type: float
    r_attribute: float
    r_option: float | None
    r_price: bool
    attribute_matches: int
    option_matches: int
    title_score: float
    query_match: bool
    category_match: bool


def type_match(product: Product, goal: Goal, nouns: Callable[[str], list[str]]) -> TypeMatch:
    """How well the purchased product's kind matches the goal's (original thresholds)."""
    query_match = product.query == goal.query
    bought_path = {level.strip() for level in product.product_category.split("›")}
    wanted_path = {level.strip() for level in goal.product_category.split("›")}
    category_match = len(bought_path & wanted_path) >= 2
    bought_nouns = nouns(product.title)
    wanted_nouns = nouns(goal.name)
    title_score = len(set(bought_nouns) & set(wanted_nouns)) / len(wanted_nouns) if wanted_nouns else 0.2
    r_type = 1.0 if (query_match or category_match or title_score > 0.2) else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return TypeMatch(r_type, query_match, category_match, title_score)


def attribute_matches(product: Product, goal_attributes: Iterable[str]) -> int:
    """How many goal attributes the product has (fuzzy against its attributes, else verbatim in its texts)."""
    texts = (product.title.lower(), " ".join(product.bullet_points).lower(), product.description.lower())
    matches = 0
    for wanted in goal_attributes:
        if any(token_set_ratio(have, wanted) > FUZZY_THRESHOLD for have in product.attributes):
            matches += 1
        elif any(wanted in text for text in texts):
            matches += 1
    return matches


def option_matches(chosen: Iterable[str], wanted: Iterable[str]) -> int:
    """How many wanted option values fuzzy-match some chosen value (after colour normalisation)."""
    chosen_normal = [normalize_color(value) for value in chosen]
    return sum(
        any(token_set_ratio(have, normalize_color(value)) > FUZZY_THRESHOLD for have in chosen_normal)
        for value in wanted
    )


def score_purchase(
    product: Product, goal: Goal, price: float, chosen_options: dict[str, str], noun_tagger: str = "lexical"
) -> Score:
    """Score buying `product` at `price` dollars with `chosen_options` (option name -> value) for `goal`."""
    if noun_tagger not in NOUN_TAGGERS:
        raise ValueError(f"unknown noun tagger {noun_tagger!r}; valid names: {sorted(NOUN_TAGGERS)}")
    kind = type_match(product, goal, NOUN_TAGGERS[noun_tagger])
    wanted_options = goal.option_values
    n_attributes = attribute_matches(product, goal.attributes)
    n_options = option_matches(chosen_options.values(), wanted_options)
    within_budget = price <= goal.price_upper
    total = (n_attributes + n_options + within_budget) / (len(goal.attributes) + len(wanted_options) + 1)
    return Score(
        total=total * kind.r_type,
        r_type=kind.r_type,
        r_attribute=n_attributes / len(goal.attributes),
        r_option=n_options / len(wanted_options) if wanted_options else None,
        r_price=within_budget,
        attribute_matches=n_attributes,
        option_matches=n_options,
        title_score=kind.title_score,
        query_match=kind.query_match,
        category_match=kind.category_match,
    )
