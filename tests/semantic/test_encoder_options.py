"""Encoder options of SCPO's matchers: per-part encoding, cost metrics, device and threads, ONNX, static vectors."""

import numpy as np
import pytest
import torch

from verl_agent_ext.credit import SCPOConfig, StepBatch, compute_scpo, scpo_config_from
from verl_agent_ext.semantic import EmbeddingMatcher, StaticEmbeddingMatcher, make_matcher, shared_matcher
from verl_agent_ext.semantic.encoder import combine_segments
from verl_agent_ext.semantic.models import load_bi_encoder, resolve_device
from verl_agent_ext.semantic.static import distill_tokens, static_table

OBS = ["You arrive at countertop 1. On the countertop 1, you see a apple 1, and a mug 2.", "Nothing happens."]
STEPS = [(OBS[0], "take apple 1 from countertop 1"), (OBS[0], "take mug 2 from countertop 1"), (OBS[1], "look")]


def test_separate_parts_are_encoded_once_and_combined_by_token_counts():
    matcher = EmbeddingMatcher(segments="separate")
    scores = matcher.step_similarity_blocks([(STEPS, STEPS[:2])])[0]
    assert matcher.encoded_texts == 5  # two distinct observations and three distinct actions, once each
    parts = [OBS[0], "take apple 1 from countertop 1", "take mug 2 from countertop 1"]
    vectors = EmbeddingMatcher().encode(parts)
    tokens = [len(load_bi_encoder().tokenizer.tokenize(p)) for p in parts]
    expected = tokens[0] * vectors[0] + tokens[1] * vectors[1]
    combined = combine_segments([STEPS[0]], {p: i for i, p in enumerate(parts)}, vectors, np.asarray(tokens))
    np.testing.assert_allclose(combined[0], expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(np.diag(scores[:2]), 1.0, atol=1e-5)
    joint = EmbeddingMatcher().step_similarity_blocks([(STEPS, STEPS[:2])])[0]
    assert np.abs(scores - joint).max() < 0.15 and scores[0, 1] > scores[2, 0] and joint[0, 1] > joint[2, 0]


def test_cost_metrics_of_cold_and_warm_calls():
    matcher = EmbeddingMatcher()
    matcher.similarity(["go to fridge 1", "open drawer 3"], ["go to fridge 1"])
    cold = dict(matcher.last_stats)
    matcher.similarity(["go to fridge 1"], ["open drawer 3"])
    assert cold["distinct_texts"] == 2 and cold["cache_hit_rate"] == 0 and cold["encode_seconds"] > 0
    assert matcher.last_stats["cache_hit_rate"] == 1.0 and matcher.last_stats["encode_seconds"] < cold["encode_seconds"]
    batch = StepBatch.from_columns(
        uid=["g"] * 4,
        traj_uid=["s", "s", "f", "f"],
        step_index=[0, 1, 0, 1],
        step_reward=[0, 10, 0, 0],
        anchor_obs=[OBS[0], OBS[1], OBS[0], OBS[1]],
        action_text=["take apple 1 from countertop 1", "look", "take mug 2 from countertop 1", "look"],
    )
    diagnostics = compute_scpo(batch, SCPOConfig(theta=0.85), EmbeddingMatcher(segments="separate")).diagnostics
    assert diagnostics["scpo/distinct_texts"] == 3 and diagnostics["scpo/cache_hit_rate"] == 0
    assert diagnostics["scpo/encode_seconds"] > 0 and diagnostics["scpo/align_seconds"] >= 0


def test_device_defaults_to_cpu_and_threads_are_restored():
    assert resolve_device(None) == "cpu" and EmbeddingMatcher().device == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"valid: \['cpu', 'cuda', 'cuda:<index>', 'auto'\]"):
        scpo_config_from({"scpo": {"device": "tpu"}})
    config = scpo_config_from({"scpo": {"device": "cpu", "threads": 1, "segments": "separate", "backend": "onnx"}})
    assert (config.gigpo.device, config.gigpo.threads, config.segments, config.backend) == (
        "cpu",
        1,
        "separate",
        "onnx",
    )
    with pytest.raises(ValueError, match="threads"):
        scpo_config_from({"scpo": {"threads": 0}})
    before = torch.get_num_threads()
    matcher = make_matcher("embedding", threads=1, device=None)
    assert matcher.threads == 1
    matcher.encode(["a text encoded on one thread"])
    assert torch.get_num_threads() == before
    assert shared_matcher("embedding", threads=1) is shared_matcher("embedding", threads=1)
    with pytest.raises(ValueError, match="runs on the CPU"):
        EmbeddingMatcher(backend="onnx", device="cuda")


@pytest.mark.parametrize("backend, tolerance", [("onnx", 1e-5), ("onnx_int8", 0.03)])
def test_onnx_runtimes_match_the_torch_model(backend, tolerance):
    texts = [OBS[0], "go to fridge 1", "", "prendre la pomme ☕"]
    reference = EmbeddingMatcher().encode(texts)
    vectors = EmbeddingMatcher(backend=backend, threads=1).encode(texts)
    assert vectors.shape == reference.shape
    assert np.all(1 - np.sum(vectors * reference, axis=1) < tolerance)


def test_static_vectors_are_the_models_one_token_outputs_and_filled_on_demand():
    encoder = load_bi_encoder()
    ids = encoder.tokenizer("fridge apple", add_special_tokens=False)["input_ids"]
    distilled = distill_tokens(None, ids)
    for token_id, vector in zip(ids, distilled, strict=True):
        text = encoder.tokenizer.decode([token_id])
        expected = encoder.encode(text, normalize_embeddings=False, convert_to_numpy=True)
        np.testing.assert_allclose(vector / np.linalg.norm(vector), expected / np.linalg.norm(expected), atol=1e-4)
    matcher = StaticEmbeddingMatcher()
    before = static_table().distilled
    scores = matcher.similarity(["go to fridge 1", "go to the fridge 1", "open drawer 3"], ["go to fridge 1"])
    new_tokens = static_table().distilled - before
    matcher.clear_cache()
    matcher.similarity(["go to fridge 1"], ["open drawer 3"])
    assert static_table().distilled - before == new_tokens  # tokens are distilled once per process
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6) and scores[1, 0] > scores[2, 0]
    assert matcher.last_stats["distinct_texts"] == 2


def test_onnx_export_leaves_the_shared_torch_model_in_eval_mode(tmp_path):
    """Dropout left on after an export made static vectors (distilled from the same model) noisy."""
    from verl_agent_ext.semantic.onnx_runtime import _export

    _export(None, tmp_path / "model.onnx")
    transformer = load_bi_encoder(None, "cpu")[0].auto_model
    assert not any(module.training for module in transformer.modules())


def test_static_variants_centre_the_vectors_and_share_a_persisted_token_table(tmp_path, monkeypatch):
    from verl_agent_ext.semantic.static import STATIC_VARIANTS, StaticTable, sif_weights

    texts = ["go to fridge 1", "walk over to the fridge 1", "open drawer 3", "You arrive at cabinet 2."]
    scores = {variant: StaticEmbeddingMatcher(variant=variant).similarity(texts, texts) for variant in STATIC_VARIANTS}
    for matrix in scores.values():
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-5)
    # raw one-token outputs share a common component: centring spreads unrelated pairs further apart
    assert scores["pca"][0, 2] < scores["plain"][0, 2] and scores["sif"][0, 3] < scores["plain"][0, 3]
    assert scores["sif"][0, 1] > scores["sif"][0, 2]  # a paraphrase above an unrelated action
    weights = sif_weights(30522, 1e-4)
    assert weights[2000] < weights[20000] < 1.0  # frequent (low-rank) tokens weigh less

    # the token table persists in the cache folder: a new process (a fresh table) distils nothing it stored
    monkeypatch.setenv("VERL_AGENT_EXT_CACHE", str(tmp_path))
    ids = load_bi_encoder().tokenizer(texts, add_special_tokens=False)["input_ids"]
    first = StaticTable(None)
    rows = first.vectors(ids).copy()
    assert first.distilled > 0 and first.path.is_file() and str(first.path).startswith(str(tmp_path))
    second = StaticTable(None)
    np.testing.assert_array_equal(second.vectors(ids), rows)
    assert second.distilled == 0
    with pytest.raises(ValueError, match=r"valid: \['sif', 'pca', 'plain'\]"):
        StaticEmbeddingMatcher(variant="zipf")
