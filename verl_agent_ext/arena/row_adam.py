"""RowAdam: torch's Adam, bit for bit, computed only on the rows of a parameter that ever had a gradient.

The arena's policy is three hashed-feature tables of 65,536 rows; a batch touches a few thousand of them. Adam on a
row whose gradient and moments are all zero leaves the row exactly as it was (m = lerp(0, 0) = 0, v = 0, the
update adds -lr * 0 / eps = -0.0), so updating only the rows that ever had a nonzero gradient gives the same bits
as `torch.optim.Adam` (its single-tensor path, the CPU default: amsgrad, weight decay, maximize off) while reading
a few thousand rows instead of all of them. Every operation is torch's own elementwise op in torch's order
(`_single_tensor_adam`), applied to the gathered rows; the moments are kept full-size, as torch keeps them.

    optimizer = RowAdam(policy.parameters(), lr=0.05)     # drop-in for torch.optim.Adam(..., lr=0.05)

Per step and parameter: one pass over the gradient to find its nonzero rows (they join the parameter's active
rows for good: their moments decay but stay nonzero), then gather, update and scatter the active rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class RowAdam(torch.optim.Optimizer):
    """Adam (lr, betas, eps as torch.optim.Adam; no weight decay, amsgrad or maximize) over the active rows."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if lr < 0 or eps < 0 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"RowAdam needs lr >= 0, eps >= 0 and betas in [0, 1), got {lr}, {eps}, {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        if closure is not None:
            raise ValueError("RowAdam takes no closure")
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse or param.dim() == 0:
                    raise ValueError("RowAdam updates dense parameters with at least one dimension")
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["active"] = torch.zeros(param.shape[0], dtype=torch.bool)
                grad = param.grad
                active = state["active"]
                active |= grad.reshape(len(grad), -1).any(1)
                rows = active.nonzero().squeeze(1)
                state["step"] += 1
                step = state["step"].item()
                exp_avg = state["exp_avg"].index_select(0, rows)
                exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
                grad_rows = grad.index_select(0, rows)
                values = param.index_select(0, rows)
                # torch.optim.adam._single_tensor_adam, line for line
                exp_avg.lerp_(grad_rows, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad_rows, grad_rows, value=1 - beta2)
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                step_size = lr / bias_correction1
                denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
                values.addcdiv_(exp_avg, denom, value=-step_size)
                state["exp_avg"].index_copy_(0, rows, exp_avg)
                state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
                param.index_copy_(0, rows, values)
