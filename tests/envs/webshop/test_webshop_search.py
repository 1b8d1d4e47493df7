"""BM25 search: a hand-worked score, ranking order, analysis, and known queries on a generated catalog."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_agent_ext.envs.webshop.search import BM25Index, analyse, stem
from verl_agent_ext.envs.webshop.tasks import get_catalog


def test_hand_worked_bm25_scores():
    index = BM25Index(["red apple", "green apple pie", "banana"])  # lengths 2, 3, 1; average 2
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # "apple" is in 2 of 3 documents
    k1, b = 0.9, 0.4
    doc0 = idf * 1 * (k1 + 1) / (1 + k1 * (1 - b + b * 2 / 2))
    doc1 = idf * 1 * (k1 + 1) / (1 + k1 * (1 - b + b * 3 / 2))
    np.testing.assert_allclose(index.scores("apple"), [doc0, doc1, 0.0], rtol=1e-6)
    assert index.search("apple", 10) == [0, 1]  # the shorter document first; non-matching ones left out
    assert index.search("the of", 10) == []  # stop words only


def test_ties_break_by_document_order_and_k_cuts():
    index = BM25Index(["blue mug", "red mug", "mug blue", "plate"])
    assert index.search("mug", 10) == [0, 1, 2]
    assert index.search("mug", 2) == [0, 1]
    assert index.search("blue mug", 1) == [0]


def test_analysis_lowercases_drops_stop_words_and_plurals():
    assert analyse("The Running SHOES, for Women's feet") == ["running", "shoe", "women", "s", "feet"]
    assert [stem(w) for w in ("berries", "glass", "bus", "bottles", "is", "oats")] == [
        "berry",
        "glass",
        "bus",
        "bottle",
        "is",
        "oat",
    ]


@pytest.fixture(scope="module")
def catalog():
    return get_catalog(generated_products=1000, seed=0)


def test_a_product_title_ranks_that_product_first(catalog):
    for product in catalog.products[::50]:
        assert catalog.search(product.title, 50)[0].asin == product.asin


def test_search_returns_at_most_k_distinct_products(catalog):
    hits = catalog.search("wireless earbuds noise cancelling black", 50)
    assert len(hits) == 50
    assert len({p.asin for p in hits}) == 50
    assert all("earbuds" in hits[i].title.lower() for i in range(10))


def _naive_bm25(documents: list[str], query: str, k1: float = 0.9, b: float = 0.4) -> list[float]:
    """Per-document BM25 written straight from the formula (the reference for the vectorised index)."""
    docs = [analyse(d) for d in documents]
    average = max(sum(len(d) for d in docs) / len(docs), 1.0)
    scores = []
    for doc in docs:
        total = 0.0
        for term in analyse(query):
            df = sum(term in d for d in docs)
            tf = doc.count(term)
            if tf:
                idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                total += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / average))
        scores.append(total)
    return scores


_WORDS = st.sampled_from("red blue mug mugs cup tea teas green the of large small".split())


@settings(max_examples=200, deadline=None)
@given(
    documents=st.lists(st.lists(_WORDS, max_size=8).map(" ".join), min_size=1, max_size=12),
    query=st.lists(_WORDS, min_size=1, max_size=4).map(" ".join),
    k=st.integers(1, 6),
)
def test_index_matches_the_formula_and_ranks_by_score_then_id(documents, query, k):
    index = BM25Index(documents)
    expected = _naive_bm25(documents, query)
    np.testing.assert_allclose(index.scores(query), expected, rtol=1e-5, atol=1e-6)
    ranked = index.search(query, k)
    reference = sorted(
        (i for i, s in enumerate(index.scores(query)) if s > 0), key=lambda i: (-index.scores(query)[i], i)
    )
    assert ranked == reference[:k]


def test_environments_share_one_catalog():
    first, second = get_catalog(generated_products=1000, seed=0), get_catalog(generated_products=1000, seed=0)
    assert first is second
    assert get_catalog(generated_products=1000, seed=1) is not first
