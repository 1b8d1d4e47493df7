"""The `transformers` rollout server (verl's server-actor interface, without Ray): generation through the shared
`HFServerManager`, `global_steps` in every output, weights pushed in buckets replace the served ones."""

from __future__ import annotations

import asyncio
import math

import pytest
import torch
from verl.workers.config import RolloutConfig

from verl_agent_ext.policy.model import hf_folder
from verl_agent_ext.verl_plugin.hf_rollout import HFRolloutServer, _buckets


@pytest.fixture(scope="module")
def server():
    config = RolloutConfig(name="transformers", prompt_length=64, response_length=6, max_num_seqs=8)
    return HFRolloutServer(config, {"path": hf_folder()}, replica_rank=0)


def test_generation_then_a_weight_sync_changes_what_is_served(server):
    tokenizer = server.manager.tokenizer
    messages = [{"role": "user", "content": "Say hi."}]
    prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    greedy = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "logprobs": True}

    async def run():
        before = await server.generate(prompt_ids=prompt_ids, sampling_params=dict(greedy), request_id="a")
        # A final norm of zeros makes every logit 0: the served model must now be uniform.
        zeros = [("model.norm.weight", torch.zeros_like(server.manager.model.model.norm.weight))]
        assert await server.update_weights(zeros) == 1
        missing = await server.finish_weight_update(global_steps=3)
        after = await server.generate(prompt_ids=prompt_ids, sampling_params=dict(greedy), request_id="a")
        return before, missing, after

    before, missing, after = asyncio.run(run())
    assert before.extra_fields == {"global_steps": None} and before.log_probs[0] > -5
    assert "model.embed_tokens.weight" in missing and "model.norm.weight" not in missing  # a partial sync shows
    assert after.extra_fields == {"global_steps": 3}
    vocab = server.manager.model.config.vocab_size
    assert after.log_probs == pytest.approx([-math.log(vocab)] * len(after.log_probs), abs=1e-4)


def test_unknown_weight_names_are_rejected(server):
    with pytest.raises(KeyError, match="not in the rollout model"):
        asyncio.run(server.update_weights([("model.no_such.weight", torch.zeros(2))]))


def test_weights_travel_in_buckets_of_bounded_size():
    weights = [(f"w{i}", torch.zeros(256)) for i in range(10)]  # 1 KiB each
    buckets = list(_buckets(iter(weights), max_bytes=3 * 1024))
    assert [len(bucket) for bucket in buckets] == [3, 3, 3, 1]
    assert [name for bucket in buckets for name, _ in bucket] == [name for name, _ in weights]
