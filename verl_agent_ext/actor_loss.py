"""The actor loss of `train-local` and the arena, assembled from verl's own functions exactly as verl's actor does.

verl's engine-based actor (`verl.workers.utils.losses.ppo_loss`) computes
    loss = policy_loss_fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config)
           - entropy_coeff * agg_loss(entropy)            (when entropy is computed)
           + kl_loss_coef * agg_loss(kl_penalty(log_prob, ref_log_prob, kl_loss_type))   (when use_kl_loss)
with `policy_loss_fn = core_algos.get_policy_loss_fn(config.policy_loss.loss_mode)`; the aggregation reads the
global batch size / token count from `config.global_batch_info`, so micro-batches accumulate to the loss of the
whole mini-batch. `actor_loss` is that computation on padded (batch, response_len) tensors; a test checks it
equals `ppo_loss` on the same inputs.
"""

from __future__ import annotations

import torch
from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn, kl_penalty
from verl.workers.config import ActorConfig


def set_global_batch_info(config: ActorConfig, batch_num_tokens: int, global_batch_size: int) -> None:
    """Tell verl's aggregation the size of the whole mini-batch (one process: dp_size = 1)."""
    config.global_batch_info.update(
        dp_size=1,
        batch_num_tokens=batch_num_tokens,
        global_batch_size=global_batch_size,
        loss_scale_factor=config.loss_scale_factor,
    )


def actor_loss(
    config: ActorConfig,
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    ref_log_prob: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """verl's actor loss for one micro-batch; all tensors (batch, response_len).

    log_prob: current policy log-probs of the response tokens (with grad).
    old_log_prob: log-probs of the policy that collected the data (no grad).
    advantages: per-token advantages (a step's scalar broadcast over its tokens).
    response_mask: 1 for generated tokens, 0 for padding.
    ref_log_prob: reference-policy log-probs, needed when `config.use_kl_loss`.
    entropy: per-token entropy, added with `-config.entropy_coeff` when given.
    Returns (scalar loss, metrics as floats).
    """
    mask = response_mask.bool()
    policy_loss_fn = get_policy_loss_fn(config.policy_loss.get("loss_mode", "vanilla"))
    pg_loss, pg_metrics = policy_loss_fn(
        old_log_prob=old_log_prob,
        log_prob=log_prob,
        advantages=advantages,
        response_mask=mask,
        loss_agg_mode=config.loss_agg_mode,
        config=config,
        rollout_is_weights=None,
    )
    metrics = {**pg_metrics, "actor/pg_loss": pg_loss.item()}
    loss = pg_loss
    if entropy is not None:
        entropy_loss = agg_loss(
            loss_mat=entropy, loss_mask=mask, loss_agg_mode=config.loss_agg_mode, **config.global_batch_info
        )
        loss = loss - config.entropy_coeff * entropy_loss
        metrics["actor/entropy_loss"] = entropy_loss.item()
    if config.use_kl_loss:
        if ref_log_prob is None:
            raise ValueError("actor.use_kl_loss=True needs ref_log_prob")
        kld = kl_penalty(logprob=log_prob, ref_logprob=ref_log_prob, kl_penalty=config.kl_loss_type)
        kl_loss = agg_loss(loss_mat=kld, loss_mask=mask, loss_agg_mode=config.loss_agg_mode, **config.global_batch_info)
        loss = loss + kl_loss * config.kl_loss_coef
        metrics["actor/kl_loss"] = kl_loss.item()
    return loss, metrics
