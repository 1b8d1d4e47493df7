"""The local trainer's log-probs and entropy (verl's `logprobs_from_logits` / `entropy_from_logits`) equal a full
float32 log_softmax, the formula it used before, within float rounding; gradients agree too."""

import torch

from verl_agent_ext.local.trainer import response_log_probs


def test_equal_to_a_full_log_softmax_with_gradients():
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, 97, generator=generator) * 4).requires_grad_()
    tokens = torch.randint(0, 97, (3, 5), generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])

    log_probs, entropy = response_log_probs(logits / 0.7, tokens, mask, with_entropy=True)
    reference = torch.log_softmax((logits / 0.7).float(), dim=-1)
    expected_log_probs = reference.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * mask
    expected_entropy = -(reference.exp() * reference).sum(-1) * mask

    torch.testing.assert_close(log_probs, expected_log_probs, rtol=0, atol=1e-5)
    torch.testing.assert_close(entropy, expected_entropy, rtol=0, atol=1e-5)
    assert torch.all(log_probs[mask == 0] == 0) and torch.all(entropy[mask == 0] == 0)
    (grad,) = torch.autograd.grad(log_probs.sum() + entropy.sum(), logits)
    (expected_grad,) = torch.autograd.grad(expected_log_probs.sum() + expected_entropy.sum(), logits)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-5)
    assert response_log_probs(logits, tokens, mask)[1] is None
