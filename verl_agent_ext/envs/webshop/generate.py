"""A deterministic generator of WebShop-schema catalogs, so CI and CPU demos run without the original data.

Products are drawn from a small hand-written taxonomy (the original's five categories: beauty, electronics,
fashion, food, furniture) with attributes, options and price ranges per product type; each product gets one
templated instruction (in items_human_ins.json, although no human wrote it) and one synthetic-goal record (in
items_ins_v2.json). Everything derives from `seed`: the same (num_products, seed) gives byte-identical files.
The folder also gets GENERATED.json so metrics and logs can label results on generated data as such.
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_agent_ext.envs.webshop.catalog import GENERATED_MARKER

PRODUCTS_FILE = "items_shuffle.json"
ATTRIBUTES_FILE = "items_ins_v2.json"
HUMAN_INSTRUCTIONS_FILE = "items_human_ins.json"


@dataclass(frozen=True)
class ProductType:
    """One kind of product: title noun, search query, category path, attribute pool, option pools, price range."""

    category: str
    noun: str
    query: str
    path: str
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]]
    price_range: tuple[float, float]


_COLORS = ("black", "white", "navy blue", "grey", "red", "green", "beige", "pink", "brown", "light blue", "purple")
_APPAREL_SIZES = ("x-small", "small", "medium", "large", "x-large", "xx-large")
_SHOE_SIZES = ("6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "11", "12")
_BEAUTY = "Beauty & Personal Care"
_ELECTRONICS = "Electronics"
_FASHION = "Clothing, Shoes & Jewelry"
_FOOD = "Grocery & Gourmet Food"
_FURNITURE = "Home & Kitchen › Furniture"

TAXONOMY: tuple[ProductType, ...] = (
    ProductType(
        "beauty",
        "shampoo",
        "shampoo",
        f"{_BEAUTY} › Hair Care › Shampoo & Conditioner › Shampoos",
        ("sulfate free", "paraben free", "natural ingredients", "dry hair", "hair growth", "tea tree", "argan oil"),
        {"size": ("8 fl oz", "12 fl oz", "16 fl oz", "33.8 fl oz"), "scent": ("lavender", "coconut", "mint", "rose")},
        (6.0, 40.0),
    ),
    ProductType(
        "beauty",
        "lipstick",
        "lipstick",
        f"{_BEAUTY} › Makeup › Lips › Lipstick",
        ("long lasting", "cruelty free", "highly pigmented", "matte finish", "vegan", "easy to apply"),
        {"color": ("ruby red", "nude", "berry", "coral", "plum", "mauve pink")},
        (5.0, 35.0),
    ),
    ProductType(
        "beauty",
        "face moisturizer",
        "face moisturizer",
        f"{_BEAUTY} › Skin Care › Face › Creams & Moisturizers",
        ("hyaluronic acid", "fragrance free", "sensitive skin", "anti aging", "oil free", "spf 30", "non greasy"),
        {"size": ("1.7 oz", "2.5 oz", "4 oz"), "item package quantity": ("1", "2", "3")},
        (9.0, 60.0),
    ),
    ProductType(
        "beauty",
        "hair dryer",
        "hair dryer",
        f"{_BEAUTY} › Hair Care › Styling Tools › Hair Dryers",
        ("ionic technology", "fast drying", "low noise", "travel size", "cool shot", "ceramic tourmaline"),
        {"color": ("black", "rose gold", "white", "purple")},
        (19.0, 120.0),
    ),
    ProductType(
        "electronics",
        "wireless earbuds",
        "wireless earbuds",
        f"{_ELECTRONICS} › Headphones › Earbud Headphones",
        ("noise cancelling", "bluetooth 5.0", "water resistant", "long battery life", "charging case", "touch control"),
        {"color": ("black", "white", "navy blue", "green")},
        (15.0, 150.0),
    ),
    ProductType(
        "electronics",
        "phone case",
        "phone case",
        f"{_ELECTRONICS} › Cell Phones & Accessories › Cases & Holsters",
        ("shockproof", "wireless charging compatible", "slim fit", "tempered glass", "kickstand", "military grade"),
        {"color": _COLORS[:8], "model": ("iphone 13", "iphone 14", "iphone 15", "galaxy s23", "pixel 8")},
        (7.0, 30.0),
    ),
    ProductType(
        "electronics",
        "usb c charger",
        "usb c charger",
        f"{_ELECTRONICS} › Computers & Accessories › Chargers & Adapters",
        ("fast charging", "foldable plug", "gan technology", "compact design", "overheat protection", "dual port"),
        {"wattage": ("20w", "30w", "45w", "65w", "100w")},
        (10.0, 70.0),
    ),
    ProductType(
        "electronics",
        "hdmi cable",
        "hdmi cable",
        f"{_ELECTRONICS} › Television & Video › Accessories › Cables › HDMI Cables",
        ("high speed", "4k 60hz", "gold plated", "braided nylon", "ethernet channel", "8k ultra hd"),
        {"length": ("3 feet", "6 feet", "10 feet", "15 feet"), "item package quantity": ("1", "2", "5")},
        (5.0, 25.0),
    ),
    ProductType(
        "fashion",
        "running shoes",
        "men's running shoes",
        f"{_FASHION} › Men › Shoes › Athletic › Running",
        ("non slip", "lightweight", "breathable mesh", "memory foam", "arch support", "rubber sole"),
        {"color": _COLORS[:6], "size": _SHOE_SIZES},
        (25.0, 140.0),
    ),
    ProductType(
        "fashion",
        "t-shirt",
        "women's t-shirts",
        f"{_FASHION} › Women › Clothing › Tops, Tees & Blouses › T-Shirts",
        ("short sleeve", "cotton blend", "relaxed fit", "machine wash", "crew neck", "v neck", "moisture wicking"),
        {"color": _COLORS, "size": _APPAREL_SIZES},
        (8.0, 35.0),
    ),
    ProductType(
        "fashion",
        "hoodie",
        "men's hoodies",
        f"{_FASHION} › Men › Clothing › Fashion Hoodies & Sweatshirts",
        ("fleece lined", "pullover", "kangaroo pocket", "drawstring hood", "machine wash", "long sleeve"),
        {"color": _COLORS[:9], "size": _APPAREL_SIZES},
        (18.0, 60.0),
    ),
    ProductType(
        "fashion",
        "yoga pants",
        "women's yoga pants",
        f"{_FASHION} › Women › Clothing › Active › Active Pants › Leggings",
        ("high waist", "tummy control", "squat proof", "four way stretch", "side pockets", "quick drying"),
        {"color": _COLORS[:7], "size": _APPAREL_SIZES[:5]},
        (12.0, 45.0),
    ),
    ProductType(
        "food",
        "green tea",
        "green tea",
        f"{_FOOD} › Beverages › Tea › Green Tea",
        ("organic", "caffeine free", "non gmo", "individually wrapped", "gluten free", "antioxidant rich"),
        {"flavor name": ("jasmine", "matcha", "mint", "honey ginger"), "size": ("20 count", "50 count", "100 count")},
        (4.0, 30.0),
    ),
    ProductType(
        "food",
        "protein bars",
        "protein bars",
        f"{_FOOD} › Snack Foods › Bars › Protein Bars",
        ("high protein", "low sugar", "gluten free", "keto friendly", "plant based", "no artificial sweeteners"),
        {
            "flavor name": ("chocolate chip", "peanut butter", "cookie dough", "salted caramel"),
            "size": ("12 count", "24 count"),
        },
        (12.0, 45.0),
    ),
    ProductType(
        "food",
        "coffee beans",
        "coffee beans",
        f"{_FOOD} › Beverages › Coffee › Whole Coffee Beans",
        ("whole bean", "dark roast", "fair trade", "single origin", "low acid", "usda organic"),
        {"size": ("12 ounce", "2 pound", "5 pound"), "flavor name": ("colombian", "espresso", "french roast")},
        (8.0, 55.0),
    ),
    ProductType(
        "food",
        "mixed nuts",
        "mixed nuts",
        f"{_FOOD} › Snack Foods › Nuts & Seeds › Mixed Nuts",
        ("unsalted", "roasted", "resealable bag", "vegan", "high fiber", "kosher certified"),
        {"size": ("1 pound", "2 pound", "3 pound")},
        (7.0, 35.0),
    ),
    ProductType(
        "furniture",
        "office chair",
        "office chair",
        f"{_FURNITURE} › Home Office Furniture › Home Office Chairs › Desk Chairs",
        ("lumbar support", "adjustable height", "mesh back", "easy assembly", "swivel", "padded armrests"),
        {"color": ("black", "grey", "white", "blue")},
        (60.0, 320.0),
    ),
    ProductType(
        "furniture",
        "bookshelf",
        "bookshelf",
        f"{_FURNITURE} › Living Room Furniture › Bookcases",
        ("solid wood", "easy assembly", "storage space", "engineered wood", "space saving", "wall mounted"),
        {"color": ("walnut", "white", "black", "oak"), "size": ("3 tier", "4 tier", "5 tier")},
        (35.0, 220.0),
    ),
    ProductType(
        "furniture",
        "coffee table",
        "coffee table",
        f"{_FURNITURE} › Living Room Furniture › Tables › Coffee Tables",
        ("tempered glass", "storage shelf", "mid century", "metal frame", "lift top", "easy clean"),
        {"color": ("rustic brown", "white", "black", "natural")},
        (45.0, 260.0),
    ),
    ProductType(
        "furniture",
        "bean bag chair",
        "bean bag chair",
        f"{_FURNITURE} › Living Room Furniture › Chairs › Bean Bags",
        ("memory foam", "removable cover", "machine washable", "faux fur", "living room", "high density"),
        {"color": ("charcoal", "navy blue", "pink", "olive green"), "size": ("3 ft", "4 ft", "5 ft")},
        (40.0, 200.0),
    ),
)

_DESCRIPTORS = ("Classic", "Premium", "Everyday", "Essential", "Deluxe", "Original", "Signature", "Modern", "Pro")
_BRAND_SYLLABLES = ("lu", "mo", "ra", "ven", "ka", "zi", "tor", "bel", "no", "vi", "sa", "dor", "qu", "el", "fi", "ma")
_INSTRUCTION_TEMPLATES = (
    "i am looking for {article} {attributes} {noun}{options}",
    "i need {article} {noun} that is {attributes}{options}",
    "find me {article} {attributes} {noun}{options}",
    "i want to buy {article} {noun} which is {attributes}{options}",
)


def _brand(rng: random.Random) -> str:
    return "".join(rng.choice(_BRAND_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _asin(rng: random.Random, taken: set[str]) -> str:
    while True:
        asin = "B0" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _join_phrases(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _price_text(low: float, high: float, rng: random.Random) -> str:
    price = round(rng.uniform(low, high), 2)
    if rng.random() < 0.2:  # a price range, as some original listings show
        return f"${price:.2f} to ${round(price * rng.uniform(1.1, 1.5), 2):.2f}"
    return f"${price:.2f}"


def _product(kind: ProductType, rng: random.Random, asins: set[str], titles: set[str]) -> dict[str, Any]:
    attributes = rng.sample(kind.attributes, rng.randint(2, 4))
    options = {}
    for name, values in kind.options.items():
        offered = set(rng.sample(values, min(len(values), rng.randint(2, 4))))
        options[name] = [value for value in values if value in offered]  # the pool's natural order (small < large)
    while True:
        in_title = " ".join(word.title() for word in attributes[: rng.randint(1, 2)])
        title = f"{_brand(rng)} {rng.choice(_DESCRIPTORS)} {in_title} {kind.noun.title()}"
        if title not in titles:
            titles.add(title)
            break
    bullets = [
        f"{attribute.capitalize()}: designed for everyday use, this {kind.noun} is {attribute}."
        for attribute in attributes
    ]
    bullets.append(f"What you get: one {kind.noun}, backed by a 30-day satisfaction guarantee.")
    return {
        "asin": _asin(rng, asins),
        "name": title,
        "full_description": f"{title}. A {', '.join(attributes)} {kind.noun} for daily use.",
        "small_description": bullets,
        "pricing": _price_text(*kind.price_range, rng),
        "customization_options": {
            name.title(): [{"value": value, "image": None} for value in values] for name, values in options.items()
        },
        "category": kind.category,
        "query": kind.query,
        "product_category": kind.path,
        "images": [""],
        "attributes": attributes,
    }


def _instruction(kind: ProductType, product: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One templated instruction naming 1-3 of the product's attributes and one value of some of its options."""
    wanted_attributes = rng.sample(product["attributes"], rng.randint(1, min(3, len(product["attributes"]))))
    option_names = list(product["customization_options"])
    chosen_names = sorted(rng.sample(option_names, rng.randint(1, len(option_names)))) if option_names else []
    wanted = [(name, rng.choice(product["customization_options"][name])["value"]) for name in chosen_names]
    option_text = ", " + _join_phrases([f"{value} {name.lower()}" for name, value in wanted]) if wanted else ""
    text = rng.choice(_INSTRUCTION_TEMPLATES).format(
        article="some" if kind.noun.endswith("s") else "a",
        attributes=_join_phrases(wanted_attributes),
        noun=kind.noun,
        options=option_text,
    )
    return {
        "instruction": re.sub(r"\ba (?=[aeiou])", "an ", text),
        "instruction_attributes": wanted_attributes,
        "instruction_options": [value for _, value in wanted],
    }


def generate_catalog(num_products: int, seed: int = 0) -> dict[str, Any]:
    """The three WebShop files' contents for a catalog of `num_products` products (deterministic in `seed`).

    Returns {"items_shuffle": [raw product], "items_ins_v2": {asin: annotation}, "items_human_ins": {asin: [..]}}.
    """
    if num_products < 1:
        raise ValueError(f"num_products must be at least 1, got {num_products}")
    rng = random.Random(seed)
    asins: set[str] = set()
    titles: set[str] = set()
    products, annotations, instructions = [], {}, {}
    for index in range(num_products):
        kind = TAXONOMY[index % len(TAXONOMY)] if index < len(TAXONOMY) else rng.choice(TAXONOMY)
        product = _product(kind, rng, asins, titles)
        instruction = _instruction(kind, product, rng)
        attributes = product.pop("attributes")
        annotations[product["asin"]] = {
            "attributes": attributes,
            "instruction": instruction["instruction"],
            "instruction_attributes": instruction["instruction_attributes"],
        }
        instructions[product["asin"]] = [instruction]
        products.append(product)
    rng.shuffle(products)  # the original file is shuffled too (items_shuffle)
    return {"items_shuffle": products, "items_ins_v2": annotations, "items_human_ins": instructions}


def write_catalog(out_dir: str | Path, num_products: int, seed: int = 0) -> Path:
    """Write a generated catalog in the original file layout to `out_dir`; returns the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = generate_catalog(num_products, seed)
    for name, key in ((PRODUCTS_FILE, "items_shuffle"), (ATTRIBUTES_FILE, "items_ins_v2")):
        (out_dir / name).write_text(json.dumps(contents[key], indent=1), encoding="utf-8")
    (out_dir / HUMAN_INSTRUCTIONS_FILE).write_text(json.dumps(contents["items_human_ins"], indent=1), encoding="utf-8")
    marker = {"generator": "verl-agent-ext webshop-generate", "products": num_products, "seed": seed}
    (out_dir / GENERATED_MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
    return out_dir
