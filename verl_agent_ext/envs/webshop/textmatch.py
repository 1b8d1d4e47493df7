"""Fuzzy text matching used by the WebShop reward: token-set ratio, colour normalisation, noun extraction.

`token_set_ratio` reproduces the score of `thefuzz.fuzz.token_set_ratio` (which the original reward calls) without
the dependency: Indel similarity 2 * LCS / (len(a) + len(b)) on sorted token sets, in percent, rounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

# Colour words an option value is reduced to before matching (the original reward's colour vocabulary).
COLORS = (
    "alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze brown burgundy camel "
    "camo caramel champagne charcoal cheetah chestnut chocolate christmas coffee cognac copper coral cranberry "
    "cream crystal dark denim eggplant elephant espresso fuchsia gold granite grape graphite grass gray green grey "
    "heather indigo ivory ivy khaki lavender lemon leopard light lilac lime magenta maroon mauve merlot midnight "
    "mint mocha multicolor mushroom mustard natural navy nude olive orange peach pewter pink plum purple rainbow "
    "red rose royal rust sand sapphire seashell silver skull slate steel stone stonewash sunflower tan taupe teal "
    "tiger turquoise violet walnut wheat white wine yellow"
).split()

# Words the lexical noun extractor never counts as product-type nouns.
_NON_NOUNS = frozenset(
    "a an and are as at be but by for from if in into is it its no not of on or such that the their then there these "
    "they this to was will with without your you our my me we i all any each every more most other some new "
    "free high low long short large small big mini extra super ultra best great good premium pro plus".split()
)
_ALNUM = re.compile(r"[^0-9a-z]+")
_WORD = re.compile(r"[a-z]+")


def normalize_color(value: str) -> str:
    """The first colour word contained in `value` (substring test, vocabulary order), else `value` unchanged."""
    for color in COLORS:
        if color in value:
            return color
    return value


def _lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence (bit-parallel, Allison-Dix / Hyyro)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for position, char in enumerate(a):
        masks[char] = masks.get(char, 0) | (1 << position)
    full = (1 << len(a)) - 1
    row = full
    for char in b:
        matches = row & masks.get(char, 0)
        row = ((row + matches) | (row - matches)) & full
    return len(a) - bin(row).count("1")


def _ratio(a: str, b: str) -> int:
    if not a and not b:
        return 0
    return round(200.0 * _lcs_length(a, b) / (len(a) + len(b)))


@lru_cache(maxsize=65536)
def token_set_ratio(first: str, second: str) -> int:
    """Similarity 0..100 of two phrases as token sets (order and repeats ignored; a subset scores 100)."""
    tokens_a = set(_ALNUM.sub(" ", first.lower()).split())
    tokens_b = set(_ALNUM.sub(" ", second.lower()).split())
    if not tokens_a or not tokens_b:
        return 0
    common = " ".join(sorted(tokens_a & tokens_b))
    only_a = " ".join(sorted(tokens_a - tokens_b))
    only_b = " ".join(sorted(tokens_b - tokens_a))
    if common and (not only_a or not only_b):
        return 100
    with_a = f"{common} {only_a}".strip()
    with_b = f"{common} {only_b}".strip()
    return max(_ratio(common, with_a), _ratio(common, with_b), _ratio(with_a, with_b))


def lexical_nouns(text: str) -> list[str]:
    """Candidate nouns of a product name without a tagger: lower-case words of 2+ letters that are not
    function words or common adjectives (a superset of what a POS tagger would keep)."""
    return [word for word in _WORD.findall(text.lower()) if len(word) > 1 and word not in _NON_NOUNS]


@lru_cache(maxsize=1)
def _spacy_pipeline():
    try:
        import spacy

        return spacy.load("en_core_web_sm")
    except (ImportError, OSError) as error:
        raise RuntimeError(
            "noun_tagger='spacy' needs spacy and its en_core_web_sm model (python -m spacy download "
            "en_core_web_sm); use noun_tagger='lexical' otherwise"
        ) from error


def spacy_nouns(text: str) -> list[str]:
    """Nouns and proper nouns of `text` as tagged by spaCy's en_core_web_sm (the original reward's tagger)."""
    return [token.text.lower() for token in _spacy_pipeline()(text) if token.pos_ in ("NOUN", "PROPN")]


NOUN_TAGGERS: dict[str, Callable[[str], list[str]]] = {"lexical": lexical_nouns, "spacy": spacy_nouns}
