"""iStar's implicit PRM in train-local: a second LoRA adapter ("prm") on the policy's base model.

Each iteration, between the rollout and the policy update (`score_and_update`):
  1. log pi_old: the policy adapter's log-probs of the rows (the data's policy; the trainer's old-log-prob pass);
  2. score: r_t = beta * sum_k (log pi_phi - log pi_old) with the PRM adapter before its update;
  3. update: one AdamW step on the pair loss mean_pairs -log sigmoid(Q_win - Q_lose) of the same batch, trained
     through the per-row surrogate sum_i c_i r_i(phi), c_i = dL/dr_i (same gradient, bounded memory: one
     micro-batch at a time); skipped with `freeze_prm` (the released behaviour) or when no group has a pair;
  4. the rows get `prm_step_reward` = the pre-update r_t, normalised, for the `istar` estimator.
The adapter starts as a copy of the policy adapter's initial weights (both equal the base model) and only
switches in for its own passes; generation and the policy update always see the policy adapter.
`save_prm` / `load_prm` keep its weights and optimizer in the run's checkpoint folder (`PRM_FILE`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from verl_agent_ext.credit.istar import PRM_STEP_REWARD_KEY, IStarConfig, implicit_step_rewards, score_prm_batch
from verl_agent_ext.local.batch import StepRows

logger = logging.getLogger(__name__)

PRM_ADAPTER = "prm"
PRM_FILE = "istar_prm.pt"


class ImplicitPRM:
    """The PRM adapter, its optimizer, and one iteration's scoring + update.

    model: the peft policy model (one LoRA adapter, active). forward(rows, index) -> ((b, R) log-probs with
    grad, _) and log_probs(rows, index) -> (b, R) without grad: the trainer's passes over the active adapter.
    before_step: called right before the PRM's optimizer step (the trainer then defers a Ctrl-C to the end of
    the iteration, so a checkpoint never holds a PRM one update ahead of its iteration count).
    """

    def __init__(
        self,
        model,
        config: IStarConfig,
        forward: Callable[[StepRows, list[int]], tuple[torch.Tensor, Any]],
        log_probs: Callable[[StepRows, range], torch.Tensor],
        micro_batch_size: int,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        before_step: Callable[[], None] | None = None,
    ):
        if not hasattr(model, "peft_config"):
            raise ValueError("estimator istar keeps its PRM as a second LoRA adapter: it needs lora_rank > 0")
        self.model, self.config = model, config
        self.forward, self.log_probs, self.micro_batch_size = forward, log_probs, micro_batch_size
        self.before_step = before_step or (lambda: None)
        self.policy_adapter = model.active_adapter
        model.add_adapter(PRM_ADAPTER, model.peft_config[self.policy_adapter])
        model.set_adapter(self.policy_adapter)
        policy = dict(model.named_parameters())
        self.parameters = {name: p for name, p in policy.items() if f".{PRM_ADAPTER}." in name}
        with torch.no_grad():  # start from the policy's initial weights
            for name, p in self.parameters.items():
                p.copy_(policy[name.replace(f".{PRM_ADAPTER}.", f".{self.policy_adapter}.")])
        self.optimizer = torch.optim.AdamW(
            list(self.parameters.values()), lr=lr, betas=betas, weight_decay=config.prm_weight_decay
        )

    @contextmanager
    def active(self) -> Iterator[None]:
        """The PRM adapter replaces the policy adapter (peft makes only the active adapter trainable)."""
        self.model.set_adapter(PRM_ADAPTER)
        try:
            yield
        finally:
            self.model.set_adapter(self.policy_adapter)

    def score_and_update(self, rows: StepRows, old: torch.Tensor) -> dict[str, float]:
        """Score the rows with the PRM, update it, write `prm_step_reward` into the rows; returns istar/* metrics
        (istar/weight_change: L2 norm of the update's change of the PRM adapter's weights, 0 when not updated).

        old: (n, R) log pi_old of the rows' response tokens (the policy adapter's, no grad).
        """
        config, everything = self.config, range(len(rows))
        with self.active():
            prm = self.log_probs(rows, everything)
        raw = implicit_step_rewards(prm, old, rows.response_mask.to(old.device), config.beta).double().cpu().numpy()
        meta = rows.non_tensor_batch
        scored = score_prm_batch(raw, meta["uid"], meta["traj_uid"], meta["episode_success"].astype(bool), config)
        grad_norm, updated, change = 0.0, False, 0.0
        if scored.pairs and not config.freeze_prm:
            before = self.flat_weights()
            grad_norm, updated = self._update(rows, old, scored.weights)
            change = float((self.flat_weights() - before).norm())
        meta[PRM_STEP_REWARD_KEY] = scored.rewards
        return {
            **scored.metrics,
            "istar/updated": float(updated),
            "istar/grad_norm": grad_norm,
            "istar/weight_change": change,
        }

    def flat_weights(self) -> torch.Tensor:
        """A copy of the PRM adapter's weights as one float32 vector (2.4 M values for SmolLM2-135M, rank 8)."""
        return torch.cat([p.detach().float().flatten().cpu() for p in self.parameters.values()])

    def _update(self, rows: StepRows, old: torch.Tensor, weights: np.ndarray) -> tuple[float, bool]:
        """One optimizer step on the pair loss through its surrogate. Returns (grad norm, stepped)."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.active():
            self.model.train()
            self.accumulate_gradient(rows, old, weights)
            params = list(self.parameters.values())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.prm_grad_clip))
            if not np.isfinite(grad_norm):
                logger.warning("PRM: non-finite gradient norm %s, optimizer step skipped", grad_norm)
                return grad_norm, False
            self.before_step()
            self.optimizer.step()
        return grad_norm, True

    def accumulate_gradient(self, rows: StepRows, old: torch.Tensor, weights: np.ndarray) -> None:
        """Backward of sum_i c_i r_i(phi) over the rows with c_i != 0, one micro-batch at a time (PRM active).

        old: (n, R) log pi_old; weights: (n,) c_i = dL/dr_i at the current phi, so the accumulated gradient is
        the pair loss's.
        """
        index = np.flatnonzero(weights).tolist()
        for start in range(0, len(index), self.micro_batch_size):
            chunk = index[start : start + self.micro_batch_size]
            log_prob, _ = self.forward(rows, chunk)
            mask = rows.response_mask[chunk].to(log_prob.device)
            rewards = implicit_step_rewards(log_prob, old[chunk], mask, self.config.beta)
            c = torch.as_tensor(weights[chunk], dtype=rewards.dtype, device=rewards.device)
            (c * rewards).sum().backward()

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": {name: p.detach().cpu().clone() for name, p in self.parameters.items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = sorted(set(self.parameters) - set(state["weights"]))
        if missing:
            raise ValueError(f"the checkpoint's PRM state lacks {len(missing)} adapter weights, e.g. {missing[0]}")
        with torch.no_grad():
            for name, p in self.parameters.items():
                p.copy_(state["weights"][name].to(p.device))
        self.optimizer.load_state_dict(state["optimizer"])


def save_prm(prm: ImplicitPRM, folder: str | os.PathLike) -> None:
    """Write the PRM's `state_dict()` to `folder/PRM_FILE`."""
    torch.save(prm.state_dict(), os.path.join(folder, PRM_FILE))


def load_prm(prm: ImplicitPRM, folder: str | os.PathLike) -> bool:
    """Restore the PRM from `folder/PRM_FILE`; False (nothing changed) when the file is absent."""
    path = os.path.join(folder, PRM_FILE)
    if not os.path.isfile(path):
        return False
    prm.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))
    return True
