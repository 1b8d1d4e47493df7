"""The local trainer's actor loss equals verl's own `ppo_loss` (the engine actor's loss) on the same inputs."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.workers.utils.losses import ppo_loss

from verl_agent_ext.actor_loss import actor_loss, set_global_batch_info
from verl_agent_ext.local.config import LocalTrainConfig, actor_config, compose_verl_config


@pytest.fixture(scope="module")
def base_actor_config():
    return actor_config(compose_verl_config(LocalTrainConfig(kl_coef=0.01, entropy_coeff=0.0)))


def _inputs(seed: int, batch: int = 5, prompt_len: int = 7, response_len: int = 6):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, response_len + 1, (batch,), generator=generator)
    lengths[0] = response_len
    mask = (torch.arange(response_len).unsqueeze(0) < lengths.unsqueeze(1)).long()
    log_prob = -torch.rand(batch, response_len, generator=generator) * 3
    return {
        "prompt_len": prompt_len,
        "response_mask": mask,
        "log_prob": log_prob * mask,
        "old_log_prob": (log_prob + 0.3 * torch.randn(batch, response_len, generator=generator)) * mask,
        "ref_log_prob": (log_prob + 0.5 * torch.randn(batch, response_len, generator=generator)) * mask,
        "advantages": torch.randn(batch, 1, generator=generator).expand(-1, response_len) * mask,
    }


def _verl_ppo_loss(config, inputs) -> torch.Tensor:
    """verl's ppo_loss on the same data: log-probs laid out the way its unpadded model output is."""
    mask = inputs["response_mask"]
    batch, response_len = mask.shape
    prompt_len = inputs["prompt_len"]
    attention_mask = torch.cat([torch.ones(batch, prompt_len, dtype=torch.long), mask], dim=1)
    flat = []
    for row in range(batch):
        sequence = torch.full((prompt_len + int(mask[row].sum()),), -99.0)  # positions without a response token
        length = int(mask[row].sum())
        # the log-prob of response token j is predicted at position prompt_len - 1 + j
        sequence[prompt_len - 1 : prompt_len - 1 + length] = inputs["log_prob"][row, :length]
        flat.append(sequence)
    data = TensorDict(
        {
            "prompts": torch.zeros(batch, prompt_len, dtype=torch.long),
            "responses": torch.zeros(batch, response_len, dtype=torch.long),
            "attention_mask": attention_mask,
            "response_mask": mask,
            "old_log_probs": inputs["old_log_prob"],
            "advantages": inputs["advantages"],
            "ref_log_prob": inputs["ref_log_prob"],
        },
        batch_size=[batch],
    )
    tu.assign_non_tensor_data(data, "dp_size", 1)
    tu.assign_non_tensor_data(data, "batch_num_tokens", int(mask.sum()))
    tu.assign_non_tensor_data(data, "global_batch_size", batch)
    loss, _ = ppo_loss(config, {"log_probs": torch.cat(flat)}, data)
    return loss


@pytest.mark.parametrize("loss_agg_mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("use_kl_loss", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_actor_loss_equals_verl_ppo_loss(base_actor_config, loss_agg_mode, use_kl_loss, seed):
    config = dataclasses.replace(copy.deepcopy(base_actor_config), loss_agg_mode=loss_agg_mode, use_kl_loss=use_kl_loss)
    inputs = _inputs(seed)
    expected = _verl_ppo_loss(copy.deepcopy(config), inputs)

    set_global_batch_info(config, int(inputs["response_mask"].sum()), len(inputs["response_mask"]))
    ours, metrics = actor_loss(
        config,
        log_prob=inputs["log_prob"],
        old_log_prob=inputs["old_log_prob"],
        advantages=inputs["advantages"],
        response_mask=inputs["response_mask"],
        ref_log_prob=inputs["ref_log_prob"],
    )
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-7)
    assert torch.isfinite(ours)
    assert ("actor/kl_loss" in metrics) == use_kl_loss


def test_micro_batches_accumulate_to_the_full_batch_loss(base_actor_config):
    """With global batch info set, the micro-batch losses sum to the whole mini-batch's loss (as in verl)."""
    config = copy.deepcopy(base_actor_config)
    inputs = _inputs(3, batch=6)
    set_global_batch_info(config, int(inputs["response_mask"].sum()), 6)
    keys = ("log_prob", "old_log_prob", "advantages", "response_mask", "ref_log_prob")
    full, _ = actor_loss(config, **{key: inputs[key] for key in keys})
    parts = [actor_loss(config, **{key: inputs[key][rows] for key in keys})[0] for rows in (slice(0, 4), slice(4, 6))]
    torch.testing.assert_close(sum(parts), full)


def test_kl_loss_needs_reference(base_actor_config):
    inputs = _inputs(0)
    with pytest.raises(ValueError, match="ref_log_prob"):
        actor_loss(
            base_actor_config,
            log_prob=inputs["log_prob"],
            old_log_prob=inputs["old_log_prob"],
            advantages=inputs["advantages"],
            response_mask=inputs["response_mask"],
        )
