"""BM25 search: a hand-worked score, ranking order, analysis, and known queries on a generated catalog."""

import math

import numpy as np
import pytest

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
