"""Matchers: exact, difflib, the real MiniLM bi-encoder (dedup, LRU cache), a real CrossEncoder."""

from difflib import SequenceMatcher

import numpy as np
import pytest

from verl_agent_ext.credit.contract import estimator_settings
from verl_agent_ext.semantic import (
    CrossEncoderMatcher,
    DifflibMatcher,
    EmbeddingMatcher,
    ExactMatcher,
    make_matcher,
    shared_matcher,
)
from verl_agent_ext.semantic.models import load_bi_encoder, resolve_model

STEPS = ["go to fridge 1", "go to the fridge 1", "open drawer 3", "", "prendre la pomme ☕"]


def test_exact_matcher():
    np.testing.assert_array_equal(ExactMatcher().similarity(["a", "b", "a"], ["a", "c"]), [[1, 0], [0, 0], [1, 0]])
    assert ExactMatcher().similarity([], ["a"]).shape == (0, 1)


def test_difflib_matcher_is_sequence_matcher_ratio_and_prunes_exactly():
    matcher = DifflibMatcher()
    scores = matcher.similarity(STEPS[:3], STEPS[:3])
    assert scores[0, 1] == SequenceMatcher(None, STEPS[0], STEPS[1]).ratio()
    np.testing.assert_array_equal(np.diag(scores), 1.0)
    candidates = ["open drawer 3", "go to the fridge 1", "go to fridge 1"]
    for threshold in (0.5, 0.9, 0.99):
        expected = next(
            (j for j, c in enumerate(candidates) if SequenceMatcher(None, STEPS[0], c).ratio() >= threshold), -1
        )
        assert matcher.first_at_least(STEPS[0], candidates, threshold) == expected


@pytest.fixture(scope="module")
def encoder() -> EmbeddingMatcher:
    return EmbeddingMatcher()


def test_embedding_matcher_scores_paraphrases_above_unrelated_steps(encoder):
    scores = encoder.similarity(STEPS, STEPS)
    assert scores.shape == (5, 5) and np.isfinite(scores).all()
    np.testing.assert_allclose(np.diag(scores), 1.0, atol=1e-5)
    assert scores[0, 1] > 0.9 > scores[0, 2]
    np.testing.assert_allclose(scores, scores.T, atol=1e-6)


def test_identical_texts_are_encoded_once_per_call_and_cached_across_calls():
    matcher = EmbeddingMatcher()
    before = matcher.encoded_texts
    vectors = matcher.encode(["look", "look", "inventory", "look"])
    assert matcher.encoded_texts - before == 2
    np.testing.assert_array_equal(vectors[0], vectors[1])
    matcher.similarity(["look"], ["inventory", "look"])
    assert matcher.encoded_texts - before == 2  # all cached
    matcher.similarity_blocks([(["look", "examine mug 1"], ["inventory"]), (["examine mug 1"], ["look"])])
    assert matcher.encoded_texts - before == 3  # one new text, shared by both blocks


def test_cache_is_bounded_lru():
    matcher = EmbeddingMatcher(cache_size=2)
    matcher.encode(["a", "b"])
    matcher.encode(["a"])  # a becomes most recent
    matcher.encode(["c"])  # evicts b
    count = matcher.encoded_texts
    matcher.encode(["a", "c"])
    assert matcher.encoded_texts == count
    matcher.encode(["b"])
    assert matcher.encoded_texts == count + 1


def test_blocks_equal_single_calls(encoder):
    blocks = [(STEPS[:2], STEPS[2:]), ([], STEPS[:1]), (STEPS[3:], [])]
    for block, single in zip(
        encoder.similarity_blocks(blocks), [encoder.similarity(q, k) for q, k in blocks], strict=True
    ):
        assert block.shape == single.shape
        np.testing.assert_allclose(block, single, atol=1e-6)


def test_model_loads_once_per_process():
    assert load_bi_encoder(None, None) is load_bi_encoder(None, None)
    assert shared_matcher("embedding") is shared_matcher("embedding")
    assert resolve_model("all-MiniLM-L6-v2") == resolve_model(None)


@pytest.fixture(scope="module")
def reranker_folder(tmp_path_factory):
    """No reranker can be downloaded here: a real CrossEncoder built from the MiniLM weights with a one-label
    head, saved as a classification checkpoint, exercises the same code path (tokenising pairs, batching,
    sigmoid) as BGE-reranker. Its head is untrained: the scores are plumbing, not similarity."""
    from sentence_transformers import CrossEncoder

    folder = tmp_path_factory.mktemp("reranker")
    CrossEncoder(resolve_model(None), num_labels=1).save_pretrained(str(folder))
    return str(folder)


def test_cross_encoder_refuses_a_checkpoint_without_a_scoring_head():  # issue 25 finding 8
    with pytest.raises(ValueError, match=r"needs a reranker with a trained scoring head.*BertModel"):
        CrossEncoderMatcher().similarity(["a"], ["b"])
    with pytest.raises(ValueError, match=r"needs a reranker with a trained scoring head"):
        estimator_settings("scpo", {"scpo": {"matcher": "cross_encoder"}})


def test_cross_encoder_bounds_long_texts(reranker_folder):  # issue 25 finding 8
    import time

    matcher = CrossEncoderMatcher(reranker_folder)
    long = "You see a drawer 1. " * 5000  # 100k characters: the tokenizer alone took minutes and GBs
    start = time.perf_counter()
    scores = matcher.similarity([long + "a", long + "b"], [long + "c"])
    assert scores.shape == (2, 1) and np.isfinite(scores).all()
    assert time.perf_counter() - start < 20
    assert matcher.model.max_seq_length == 512


def test_cross_encoder_is_real_and_deduplicates_pairs(reranker_folder):
    matcher = CrossEncoderMatcher(reranker_folder)
    scores = matcher.similarity(["go to fridge 1", "go to fridge 1"], ["open drawer 3", "go to fridge 1"])
    assert scores.shape == (2, 2) and np.all((scores > 0) & (scores < 1))
    np.testing.assert_array_equal(scores[0], scores[1])
    assert matcher.scored_pairs == 2
    again = matcher.similarity_blocks([(["go to fridge 1"], ["open drawer 3"]), (["look"], ["look"])])
    assert again[0][0, 0] == scores[0, 0] and matcher.scored_pairs == 3


def test_unknown_matcher_lists_valid_ones():
    with pytest.raises(ValueError, match=r"valid: \['cross_encoder', 'difflib', 'embedding', 'exact', 'static'\]"):
        make_matcher("bm25")
