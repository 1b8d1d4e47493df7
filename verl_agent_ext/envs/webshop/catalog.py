"""The WebShop catalog: products and goals read from the original file schema.

Three JSON files make a catalog (the original WebShop names; `webshop-generate` writes the same schema):

- ``items_shuffle*.json``: a list of raw products (asin, name, full_description, small_description, pricing,
  customization_options, category, query, product_category).
- ``items_ins_v2*.json``: asin -> {attributes, instruction, instruction_attributes} (synthetic goals).
- ``items_human_ins.json``: asin -> [{instruction, instruction_attributes, instruction_options}] (human goals).

Goals are built and ordered as the original engine does (one goal per human instruction, or one per option
combination for synthetic goals; then a shuffle seeded with 233), so goal index i names the same instruction as in
the original WebShop for the same files. Prices and price limits are drawn from a seeded generator (the original
draws them unseeded).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from verl_agent_ext.envs.webshop.search import BM25Index

GOAL_SOURCES = ("human", "synthetic")
# Price limits offered in instructions: $10, $20, ..., $990 (as in the original).
PRICE_LIMITS = [10.0 * i for i in range(1, 100)]
NO_PRICE_LIMIT = 1_000_000.0
GOAL_SHUFFLE_SEED = 233
GENERATED_MARKER = "GENERATED.json"
# Distinct (query, k) searches remembered per catalog: policies choosing among a few queries per instruction repeat
# them constantly, and a search (BM25 over every posting of the query's terms) is the costliest step of an episode.
SEARCH_CACHE_SIZE = 65_536


@dataclass
class Product:
    """One product as the pages show it and the reward reads it.

    pricing: [price] or [low, high] in dollars; price_tag: its display text ("$12.99" or "$10.0 to $15.0").
    options: option name -> values (lower case, "/" shown as " | "), as the original engine normalises them.
    attributes: annotated attribute phrases (["DUMMY_ATTR"] when the product has none).
    """

    asin: str
    title: str
    description: str
    bullet_points: list[str]
    pricing: list[float]
    price_tag: str
    options: dict[str, list[str]]
    attributes: list[str]
    category: str
    query: str
    product_category: str
    rating: str = "N.A."
    reviews: list[dict[str, Any]] = field(default_factory=list)

    def search_text(self) -> str:
        """The indexed document: title, description, first bullet point and options (as the original index)."""
        option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in self.options.items())
        first_bullet = self.bullet_points[0] if self.bullet_points else ""
        return " ".join([self.title, self.description, first_bullet, option_text]).lower()


@dataclass
class Goal:
    """One shopping instruction and what the reward compares the purchase with.

    goal_options: option values the buyer asked for (a list for human goals, name -> value for synthetic ones).
    price_upper: the instruction's price limit in dollars (NO_PRICE_LIMIT when none is stated).
    """

    asin: str
    category: str
    query: str
    name: str
    product_category: str
    instruction_text: str
    attributes: list[str]
    price_upper: float
    goal_options: list[str] | dict[str, str]
    weight: float = 1.0

    @property
    def option_values(self) -> list[str]:
        """The requested option values, whatever the goal kind."""
        if isinstance(self.goal_options, dict):
            return list(self.goal_options.values())
        return list(self.goal_options)


def _parse_pricing(raw: str | list[float] | None) -> tuple[list[float], str]:
    """Original convention: "$a" or "$a$b..." text -> ([a] or [a, b], display tag); missing -> $100.

    A list of numbers (already parsed pricing) is accepted as well.
    """
    if isinstance(raw, list):
        raw = "".join(f"${price}" for price in raw)
    prices = []
    for piece in (raw or "").split("$")[1:]:
        digits = re.sub(r"[^\d.]", "", piece)
        try:
            prices.append(float(Decimal(digits)))
        except InvalidOperation:
            continue
    if not prices:
        return [100.0], "$100.0"
    if len(prices) == 1:
        return prices, f"${prices[0]}"
    return prices[:2], f"${prices[0]} to ${prices[1]}"


def _parse_options(raw: dict[str, Any] | None) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for name, contents in (raw or {}).items():
        if contents is None:
            continue
        options[name.lower()] = [entry["value"].strip().replace("/", " | ").lower() for entry in contents]
    return options


def parse_products(raw_products: list[dict[str, Any]], attributes: dict[str, Any]) -> list[Product]:
    """Raw product records -> Products, skipping bad/duplicate asins as the original loader does."""
    seen: set[str] = set()
    products = []
    for raw in raw_products:
        asin = raw["asin"]
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        pricing, price_tag = _parse_pricing(raw.get("pricing"))
        bullets = raw.get("small_description") or []
        annotation = attributes.get(asin) or {}
        products.append(
            Product(
                asin=asin,
                title=raw["name"],
                description=raw.get("full_description") or "",
                bullet_points=bullets if isinstance(bullets, list) else [bullets],
                pricing=pricing,
                price_tag=price_tag,
                options=_parse_options(raw.get("customization_options")),
                attributes=annotation.get("attributes") or ["DUMMY_ATTR"],
                category=raw["category"],
                query=raw["query"].lower().strip(),
                product_category=raw["product_category"],
            )
        )
    return products


def _draw_prices(products: list[Product], rng: random.Random) -> dict[str, float]:
    """The price paid for each product: its single price, or uniform over its [low, high] range."""
    return {p.asin: p.pricing[0] if len(p.pricing) == 1 else rng.uniform(*p.pricing[:2]) for p in products}


def _draw_price_limit(price: float, rng: random.Random) -> tuple[float, str]:
    """A limit above `price`: the larger of two of the next four $10 steps (original rule)."""
    above = [limit for limit in PRICE_LIMITS if limit > price][:4]
    if len(above) < 2:
        return NO_PRICE_LIMIT, ""
    _, upper = sorted(rng.sample(above, 2))
    return upper, f", and price lower than {upper:.2f} dollars"


def build_goals(
    products: list[Product],
    prices: dict[str, float],
    instructions: dict[str, Any],
    source: str,
    rng: random.Random,
) -> list[Goal]:
    """Goals in the original order (product order, then instruction / option-combination order), unshuffled.

    instructions: items_human_ins (asin -> list) when source == "human", items_ins_v2 (asin -> dict) otherwise.
    Synthetic goals are weighted by the mean inverse frequency of their attributes (original sampling weight).
    """
    goals: list[Goal] = []
    for product in products:
        entry = instructions.get(product.asin)
        if not entry:
            continue
        if source == "human":
            for instruction in entry:
                if not instruction.get("instruction_attributes"):
                    continue
                upper, price_text = _draw_price_limit(prices[product.asin], rng)
                goals.append(
                    Goal(
                        asin=product.asin,
                        category=product.category,
                        query=product.query,
                        name=product.title,
                        product_category=product.product_category,
                        instruction_text=instruction["instruction"].strip(".") + price_text,
                        attributes=list(instruction["instruction_attributes"]),
                        price_upper=upper,
                        goal_options=list(instruction.get("instruction_options") or []),
                    )
                )
            continue
        if not entry.get("instruction") or not entry.get("instruction_attributes"):
            continue
        upper, price_text = _draw_price_limit(prices[product.asin], rng)
        names = sorted(product.options)
        for combination in itertools.product(*(product.options[name] for name in names)):
            chosen = dict(zip(names, combination, strict=True))
            option_text = ", and ".join(f"{name}: {value}" for name, value in chosen.items())
            option_text = f" with {option_text}" if option_text else ""
            goals.append(
                Goal(
                    asin=product.asin,
                    category=product.category,
                    query=product.query,
                    name=product.title,
                    product_category=product.product_category,
                    instruction_text=f"{entry['instruction']}{option_text}{price_text}",
                    attributes=list(entry["instruction_attributes"]),
                    price_upper=upper,
                    goal_options=chosen,
                )
            )
    if source == "synthetic":
        counts: dict[str, int] = {}
        for goal in goals:
            for attribute in goal.attributes:
                counts[attribute] = counts.get(attribute, 0) + 1
        for goal in goals:
            goal.weight = sum(1.0 / counts[a] for a in goal.attributes) / len(goal.attributes)
    return goals


class Catalog:
    """Products, the prices paid for them, the goals, and the search index (built on first use)."""

    def __init__(self, products: list[Product], goals: list[Goal], prices: dict[str, float], generated: bool):
        self.products = products
        self.by_asin = {p.asin: p for p in products}
        self.goals = goals
        self.prices = prices
        self.generated = generated
        self._searches: LRUCache[tuple[str, int], tuple[Product, ...]] = LRUCache(maxsize=SEARCH_CACHE_SIZE)

    @cached_property
    def fingerprint(self) -> str:
        """12 hex digits naming this catalog's goals (order, product, instruction with its price limit).

        Task rows carry it (`Task.data_fingerprint`): a goal index means the same goal only in the same catalog.
        """
        digest = hashlib.sha256(f"{len(self.goals)}:{len(self.products)}:{self.generated}".encode())
        for goal in self.goals:
            digest.update(f"\n{goal.asin}\t{goal.instruction_text}".encode())
        return digest.hexdigest()[:12]

    @cached_property
    def index(self) -> BM25Index:
        return BM25Index([p.search_text() for p in self.products])

    def search(self, query: str, k: int) -> list[Product]:
        """The top `k` products for `query` (BM25 order, ties by catalog order); repeated searches are cached."""
        key = (query, k)
        hits = self._searches.get(key)
        if hits is None:
            hits = tuple(self.products[i] for i in self.index.search(query, k))
            self._searches[key] = hits
        return list(hits)

    @classmethod
    def from_records(
        cls,
        raw_products: list[dict[str, Any]],
        attributes: dict[str, Any],
        human_instructions: dict[str, Any] | None,
        goal_source: str = "human",
        num_products: int | None = None,
        seed: int = 0,
        generated: bool = False,
    ) -> Catalog:
        """Build from the three files' parsed contents (see the module docstring)."""
        if goal_source not in GOAL_SOURCES:
            raise ValueError(f"unknown goal source {goal_source!r}; valid names: {list(GOAL_SOURCES)}")
        if num_products is not None:
            raw_products = raw_products[:num_products]
        products = parse_products(raw_products, attributes)
        rng = random.Random(seed)
        prices = _draw_prices(products, rng)
        if goal_source == "human":
            if human_instructions is None:
                raise ValueError("goal source 'human' needs items_human_ins.json")
            instructions = human_instructions
        else:
            instructions = attributes
        goals = build_goals(products, prices, instructions, goal_source, rng)
        random.Random(GOAL_SHUFFLE_SEED).shuffle(goals)
        if not goals:
            raise ValueError("the catalog has no usable goals (no instructions with attributes)")
        return cls(products, goals, prices, generated)


def _find_file(data_dir: Path, prefix: str) -> Path | None:
    exact = data_dir / f"{prefix}.json"
    if exact.is_file():
        return exact
    matches = sorted(data_dir.glob(f"{prefix}*.json"))
    if len(matches) > 1:
        raise ValueError(f"several {prefix}*.json files in {data_dir}: {[m.name for m in matches]}; keep one")
    return matches[0] if matches else None


def catalog_files(data_dir: str | Path, goal_source: str = "human") -> tuple[Path, Path]:
    """The products and attributes files of a catalog folder; raises (cheaply, nothing is read) when unusable."""
    if goal_source not in GOAL_SOURCES:
        raise ValueError(f"unknown goal source {goal_source!r}; valid names: {list(GOAL_SOURCES)}")
    data_dir = Path(data_dir)
    products_file = _find_file(data_dir, "items_shuffle")
    attributes_file = _find_file(data_dir, "items_ins_v2")
    if products_file is None or attributes_file is None:
        raise FileNotFoundError(
            f"{data_dir} needs items_shuffle*.json and items_ins_v2*.json (and items_human_ins.json for human "
            "goals): the original WebShop data, or run `verl-agent-ext webshop-generate --out DIR`"
        )
    return products_file, attributes_file


def load_catalog(
    data_dir: str | Path, goal_source: str = "human", num_products: int | None = None, seed: int = 0
) -> Catalog:
    """Load a catalog from a folder holding the original WebShop files (or `webshop-generate` output)."""
    data_dir = Path(data_dir)
    products_file, attributes_file = catalog_files(data_dir, goal_source)
    human_file = data_dir / "items_human_ins.json"
    human = json.loads(human_file.read_text(encoding="utf-8")) if human_file.is_file() else None
    return Catalog.from_records(
        json.loads(products_file.read_text(encoding="utf-8")),
        json.loads(attributes_file.read_text(encoding="utf-8")),
        human,
        goal_source=goal_source,
        num_products=num_products,
        seed=seed,
        generated=(data_dir / GENERATED_MARKER).is_file(),
    )
