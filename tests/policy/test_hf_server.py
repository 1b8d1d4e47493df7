"""HFServerManager: verl's server-manager interface on a real HF model, batching concurrent requests."""

from __future__ import annotations

import asyncio

import pytest
import torch
from verl.workers.rollout.replica import TokenOutput

from verl_agent_ext.policy.hf_server import HFServerManager
from verl_agent_ext.policy.model import load_policy


@pytest.fixture(scope="module")
def model_and_tokenizer():
    torch.manual_seed(0)
    return load_policy()


def prompts(tokenizer) -> list[list[int]]:
    questions = ["Name a fruit.", "Where is the fridge? Answer in one short sentence please.", "Say hi."]
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True)[
            "input_ids"
        ]
        for q in questions
    ]


def generate_all(server, prompt_ids, sampling_params):
    async def run():
        return await asyncio.gather(
            *(
                server.generate(f"r{i}", prompt_ids=ids, sampling_params=dict(sampling_params))
                for i, ids in enumerate(prompt_ids)
            )
        )

    return asyncio.run(run())


def test_concurrent_requests_run_as_one_batch_with_matching_log_probs(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    server = HFServerManager(model, tokenizer, response_length=12)
    prompt_ids = prompts(tokenizer)  # different lengths: left padding must not change any result
    outputs = generate_all(server, prompt_ids, {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True})
    server.close()

    assert server.stats["batches"] == 1 and server.stats["requests"] == 3
    for ids, output in zip(prompt_ids, outputs, strict=True):
        assert isinstance(output, TokenOutput)
        assert 1 <= len(output.token_ids) <= 12
        assert len(output.log_probs) == len(output.token_ids)
        eos = tokenizer.eos_token_id
        assert eos not in output.token_ids[:-1]  # cut at the first end-of-turn token
        # Teacher-forced log-probs of the same tokens, one unpadded sequence at a time.
        with torch.no_grad():
            logits = model(torch.tensor([ids + output.token_ids])).logits[0, len(ids) - 1 : -1]
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(output.token_ids).unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(torch.tensor(output.log_probs), expected, atol=2e-3, rtol=1e-3)


def test_greedy_is_deterministic_and_max_tokens_is_honoured(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    server = HFServerManager(model, tokenizer, response_length=32)
    ids = prompts(tokenizer)[:1]
    params = {"temperature": 0.0, "max_tokens": 5}
    first, second = generate_all(server, ids, params)[0], generate_all(server, ids, params)[0]
    server.close()
    assert first.token_ids == second.token_ids
    assert len(first.token_ids) <= 5


def test_garbage_tokens_produce_unlikely_text(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    server = HFServerManager(model, tokenizer, response_length=8, garbage_tokens=True)
    output = generate_all(server, prompts(tokenizer)[:1], {"temperature": 1.0})[0]
    server.close()
    assert len(output.token_ids) >= 1
    assert sum(output.log_probs) / len(output.log_probs) < -5.0  # far from what the model would say


def test_seeded_requests_sample_the_same_tokens_whatever_shares_their_batch(model_and_tokenizer):
    """Issue 25 finding 10: a request's tokens depend on its seed, not on its batch companions or their order."""
    model, tokenizer = model_and_tokenizer
    ids = prompts(tokenizer)

    def run(order, batch_size):
        server = HFServerManager(
            model, tokenizer, response_length=12, max_batch_size=batch_size, target_batch_size=len(order)
        )
        params = {"temperature": 1.0, "top_p": 0.9, "top_k": 50}

        async def all_requests():
            return await asyncio.gather(
                *(
                    server.generate(f"r{i}", prompt_ids=ids[i], sampling_params={**params, "seed": 100 + i})
                    for i in order
                )
            )

        outputs = asyncio.run(all_requests())
        server.close()
        return {i: output.token_ids for i, output in zip(order, outputs, strict=True)}

    together = run([0, 1, 2], 3)
    torch.manual_seed(123)  # the global generator plays no part
    assert run([2, 0, 1], 3) == together
    assert run([1], 1)[1] == together[1]
    assert len({tuple(tokens) for tokens in together.values()}) == 3
