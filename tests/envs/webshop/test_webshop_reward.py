"""The WebShop purchase score: hand-worked cases and parity of the fuzzy matcher with thefuzz."""

import json
from pathlib import Path

import pytest

from verl_agent_ext.envs.webshop.catalog import Goal, Product
from verl_agent_ext.envs.webshop.reward import attribute_matches, option_matches, score_purchase, type_match
from verl_agent_ext.envs.webshop.textmatch import lexical_nouns, normalize_color, token_set_ratio

FIXTURE = Path(__file__).with_name("thefuzz_token_set_ratio.json")


def _product(**changes) -> Product:
    fields = dict(
        asin="B000000001",
        title="Lumora Classic Sulfate Free Shampoo",
        description="A gentle shampoo for daily use.",
        bullet_points=["Sulfate free formula", "Made with tea tree"],
        pricing=[20.0],
        price_tag="$20.0",
        options={"size": ["8 fl oz", "16 fl oz"], "scent": ["lavender", "coconut"]},
        attributes=["sulfate free", "tea tree"],
        category="beauty",
        query="shampoo",
        product_category="Beauty › Hair Care › Shampoos",
    )
    return Product(**(fields | changes))


def _goal(**changes) -> Goal:
    fields = dict(
        asin="B000000001",
        category="beauty",
        query="shampoo",
        name="Lumora Classic Sulfate Free Shampoo",
        product_category="Beauty › Hair Care › Shampoos",
        instruction_text="i need a sulfate free tea tree shampoo, 16 fl oz, lavender, price lower than 30.00 dollars",
        attributes=["sulfate free", "tea tree"],
        price_upper=30.0,
        goal_options=["16 fl oz", "lavender"],
    )
    return Goal(**(fields | changes))


WANTED = {"size": "16 fl oz", "scent": "lavender"}


def test_full_match_scores_one():
    score = score_purchase(_product(), _goal(), price=20.0, chosen_options=WANTED)
    assert score.total == 1.0
    assert (score.r_type, score.r_attribute, score.r_option, score.r_price) == (1.0, 1.0, 1.0, True)


def test_missing_attribute_costs_its_share():
    # 2 goal attributes, 1 matched: (1 + 2 options + 1 price) / (2 + 2 + 1) = 0.8
    score = score_purchase(_product(), _goal(attributes=["sulfate free", "argan oil"]), 20.0, WANTED)
    assert score.attribute_matches == 1
    assert score.total == pytest.approx(0.8)


def test_attribute_found_verbatim_in_description_counts():
    assert attribute_matches(_product(), ["daily use"]) == 1  # not an annotated attribute, but in the description
    assert attribute_matches(_product(), ["essential oils"]) == 0
    assert attribute_matches(_product(attributes=["tea tree oil"]), ["tea tree"]) == 1  # token-set subset: 100


def test_wrong_or_missing_options_cost_their_share():
    # "8 fl oz" vs "16 fl oz" scores 83 (not > 85): (2 + 1 + 1) / 5
    wrong_size = score_purchase(_product(), _goal(), 20.0, {"size": "8 fl oz", "scent": "lavender"})
    assert wrong_size.option_matches == 1
    assert wrong_size.total == pytest.approx(0.8)
    none_chosen = score_purchase(_product(), _goal(), 20.0, {})
    assert none_chosen.total == pytest.approx(0.6)
    assert none_chosen.r_option == 0.0


def test_no_goal_options_means_no_option_term():
    score = score_purchase(_product(), _goal(goal_options=[]), 20.0, {})
    assert score.r_option is None
    assert score.total == 1.0  # (2 + 0 + 1) / (2 + 0 + 1)


def test_over_budget_loses_the_price_share():
    score = score_purchase(_product(), _goal(), price=35.0, chosen_options=WANTED)
    assert score.r_price is False
    assert score.total == pytest.approx(0.8)


def test_wrong_product_type_scores_zero():
    lipstick = _product(
        asin="B000000002",
        title="Belra Deluxe Matte Lipstick",
        attributes=["long lasting"],
        query="lipstick",
        product_category="Beauty › Makeup › Lips › Lipstick",
        options={"color": ["ruby red"]},
    )
    score = score_purchase(lipstick, _goal(), 10.0, {"color": "ruby red"})
    assert (score.title_score, score.query_match, score.category_match) == (0.0, False, False)
    assert score.r_type == 0.0
    assert score.total == 0.0


def test_related_type_is_halved_and_same_query_is_not():
    goal = _goal(name="Lumora Classic Sulfate Free Shampoo for Dry Hair")  # nouns: 6 candidate words
    dryer = _product(title="Hair Dryer Pro", query="hair dryer", product_category="Electronics › Appliances")
    kind = type_match(dryer, goal, lexical_nouns)
    assert kind.title_score == pytest.approx(1 / 6)  # only "hair" is shared
    assert kind.r_type == 0.5  # no query / category match and title_score <= 0.2
    same_query = _product(title="Hair Dryer Pro", product_category="Electronics › Appliances")
    assert type_match(same_query, goal, lexical_nouns).r_type == 1.0  # query "shampoo" matches


def test_tiny_title_overlap_scores_a_tenth():
    goal = _goal(name="one two three four five six seven eight nine ten eleven shampoo")
    kind = type_match(_product(title="Shampoo"), goal, lexical_nouns)
    assert kind.title_score == pytest.approx(1 / 12)
    assert kind.r_type == 0.1


def test_colours_are_normalised_before_matching():
    assert normalize_color("navy blue") == "blue"  # first colour of the vocabulary found in the text
    assert normalize_color("size 9") == "size 9"
    assert option_matches(["light blue"], ["navy blue"]) == 1  # both reduce to "blue"
    assert option_matches(["ruby red"], ["lavender"]) == 0


def test_token_set_ratio_matches_thefuzz():
    cases = json.loads(FIXTURE.read_text())["cases"]
    assert len(cases) > 50
    assert [token_set_ratio(a, b) for a, b, _ in cases] == [expected for _, _, expected in cases]


def test_unknown_noun_tagger_lists_the_valid_ones():
    with pytest.raises(ValueError, match="lexical"):
        score_purchase(_product(), _goal(), 20.0, WANTED, noun_tagger="nltk")
