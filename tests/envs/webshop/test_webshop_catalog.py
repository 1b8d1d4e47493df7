"""Catalog loading from the original file schema, goal construction, the generator and the splits."""

import json

import pytest

from verl_agent_ext.cli import main
from verl_agent_ext.envs.webshop.catalog import NO_PRICE_LIMIT, Catalog, load_catalog
from verl_agent_ext.envs.webshop.generate import generate_catalog, write_catalog
from verl_agent_ext.envs.webshop.tasks import list_tasks, split_range

RAW_PRODUCTS = [
    {
        "asin": "B0TEST0001",
        "name": "Acme Navy Running Shoes",
        "full_description": "Light running shoes.",
        "small_description": "Breathable mesh upper",
        "pricing": "$24.99",
        "customization_options": {
            "Color": [{"value": "Navy/White", "image": None}, {"value": "Black", "image": None}],
            "Size": [{"value": "9", "image": None}, {"value": "10", "image": None}],
            "Style": None,
        },
        "category": "fashion",
        "query": "Men's Running Shoes ",
        "product_category": "Clothing › Men › Shoes",
        "images": [""],
    },
    {
        "asin": "B0TEST0002",
        "name": "Acme Green Tea",
        "full_description": "",
        "small_description": ["Organic leaves"],
        "pricing": "$10.00 - $14.00",
        "customization_options": None,
        "category": "food",
        "query": "green tea",
        "product_category": "Grocery › Tea",
        "images": [""],
    },
    {"asin": "B0TEST0001", "name": "duplicate", "category": "x", "query": "x", "product_category": "x"},
    {"asin": "nan", "name": "no asin", "category": "x", "query": "x", "product_category": "x"},
    {"asin": "B0TEST0003", "name": "Unpriced Mug", "category": "furniture", "query": "mug", "product_category": "K"},
]
ATTRIBUTES = {
    "B0TEST0001": {"attributes": ["breathable mesh"], "instruction": "i need breathable running shoes",
                   "instruction_attributes": ["breathable mesh"]},
    "B0TEST0002": {"attributes": ["organic"], "instruction": "i want organic green tea",
                   "instruction_attributes": ["organic"]},
}  # fmt: skip
HUMAN = {
    "B0TEST0001": [
        {"instruction": "i want navy running shoes in size 10.", "instruction_attributes": ["breathable mesh"],
         "instruction_options": ["navy | white", "10"]},
        {"instruction": "no attributes here", "instruction_attributes": [], "instruction_options": []},
    ],
    "B0TEST0002": [{"instruction": "organic green tea", "instruction_attributes": ["organic"]}],
}  # fmt: skip


def test_products_are_parsed_as_the_original_loader_does():
    catalog = Catalog.from_records(RAW_PRODUCTS, ATTRIBUTES, HUMAN)
    assert [p.asin for p in catalog.products] == ["B0TEST0001", "B0TEST0002", "B0TEST0003"]
    shoes, tea, mug = catalog.products
    assert shoes.options == {"color": ["navy | white", "black"], "size": ["9", "10"]}
    assert shoes.bullet_points == ["Breathable mesh upper"]
    assert shoes.query == "men's running shoes"
    assert (shoes.pricing, shoes.price_tag) == ([24.99], "$24.99")
    assert (tea.pricing, tea.price_tag) == ([10.0, 14.0], "$10.0 to $14.0")
    assert 10.0 <= catalog.prices["B0TEST0002"] <= 14.0
    assert (mug.pricing, mug.attributes) == ([100.0], ["DUMMY_ATTR"])
    listed = Catalog.from_records([dict(RAW_PRODUCTS[1], pricing=[3.5, 4.0])], ATTRIBUTES, HUMAN).products[0]
    assert (listed.pricing, listed.price_tag) == ([3.5, 4.0], "$3.5 to $4.0")
    assert shoes.search_text() == (
        "acme navy running shoes light running shoes. breathable mesh upper color: navy | white, black, and size: 9, 10"
    )


def test_human_goals_skip_attributeless_instructions_and_state_a_price_limit():
    catalog = Catalog.from_records(RAW_PRODUCTS, ATTRIBUTES, HUMAN, seed=3)
    assert len(catalog.goals) == 2
    shoes_goal = next(g for g in catalog.goals if g.asin == "B0TEST0001")
    assert shoes_goal.goal_options == ["navy | white", "10"]
    assert shoes_goal.price_upper in (40.0, 50.0, 60.0)  # larger of two of the next four $10 steps above 24.99
    assert (
        shoes_goal.instruction_text
        == f"i want navy running shoes in size 10, and price lower than {shoes_goal.price_upper:.2f} dollars"
    )


def test_synthetic_goals_enumerate_option_combinations_with_weights():
    catalog = Catalog.from_records(RAW_PRODUCTS, ATTRIBUTES, None, goal_source="synthetic")
    shoes = [g for g in catalog.goals if g.asin == "B0TEST0001"]
    assert len(shoes) == 4  # 2 colours x 2 sizes
    assert {g.goal_options["size"] for g in shoes} == {"9", "10"}
    assert any(
        g.instruction_text.startswith("i need breathable running shoes with color: black, and size: 9") for g in shoes
    )
    assert all(g.weight == pytest.approx(1 / 4) for g in shoes)  # attribute seen in 4 goals
    tea = next(g for g in catalog.goals if g.asin == "B0TEST0002")
    assert tea.goal_options == {} and tea.weight == 1.0


def test_price_limit_is_dropped_for_expensive_products():
    expensive = [dict(RAW_PRODUCTS[0], pricing="$985.00")]
    (goal,) = Catalog.from_records(expensive, ATTRIBUTES, {"B0TEST0001": HUMAN["B0TEST0001"][:1]}).goals
    assert goal.price_upper == NO_PRICE_LIMIT
    assert "price lower" not in goal.instruction_text


def test_unknown_goal_source_lists_the_valid_ones():
    with pytest.raises(ValueError, match="human"):
        Catalog.from_records(RAW_PRODUCTS, ATTRIBUTES, HUMAN, goal_source="mturk")


def test_generator_is_deterministic_and_schema_complete():
    first, again, other = generate_catalog(60, seed=5), generate_catalog(60, seed=5), generate_catalog(60, seed=6)
    assert json.dumps(first) == json.dumps(again)
    assert json.dumps(first) != json.dumps(other)
    products = first["items_shuffle"]
    assert len({p["asin"] for p in products}) == 60
    assert {p["category"] for p in products} == {"beauty", "electronics", "fashion", "food", "furniture"}
    for product in products:
        annotation = first["items_ins_v2"][product["asin"]]
        (instruction,) = first["items_human_ins"][product["asin"]]
        assert set(instruction["instruction_attributes"]) <= set(annotation["attributes"])
        offered = {entry["value"] for values in product["customization_options"].values() for entry in values}
        assert set(instruction["instruction_options"]) <= offered
        assert instruction["instruction_options"], "every generated instruction asks for an option"


def test_written_catalog_loads_back_and_is_marked_generated(tmp_path):
    write_catalog(tmp_path, 40, seed=1)
    catalog = load_catalog(tmp_path)
    assert catalog.generated
    assert len(catalog.products) == 40 and len(catalog.goals) == 40
    assert len(load_catalog(tmp_path, goal_source="synthetic").goals) > 40


def test_missing_files_say_what_is_needed(tmp_path):
    with pytest.raises(FileNotFoundError, match="webshop-generate"):
        load_catalog(tmp_path)


def test_generate_cli_writes_a_loadable_catalog(tmp_path, caplog):
    assert main(["webshop-generate", "--out", str(tmp_path / "shop"), "--products", "30", "--seed", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == [
        "GENERATED.json",
        "items_human_ins.json",
        "items_ins_v2.json",
        "items_shuffle.json",
    ]
    assert len(load_catalog(tmp_path / "shop").products) == 30


def test_splits_follow_the_original_boundaries_or_ten_percent():
    assert (split_range(12087, "test"), split_range(12087, "dev")) == (range(0, 500), range(500, 1500))
    assert split_range(12087, "train") == range(1500, 12087)
    assert [len(split_range(1000, s)) for s in ("test", "dev", "train")] == [100, 100, 800]
    with pytest.raises(ValueError, match="train"):
        split_range(1000, "validation")


def test_list_tasks_names_goal_indices_and_categories():
    tasks = list_tasks("dev", limit=5)
    assert [t.task_id for t in tasks] == ["100", "101", "102", "103", "104"]
    assert all(t.env == "webshop" and t.split == "dev" and t.task_type for t in tasks)
