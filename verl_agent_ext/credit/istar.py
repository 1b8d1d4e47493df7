"""iStar (arXiv 2509.19199): step rewards from an implicit PRM trained with a trajectory-level DPO loss.

Implicit PRM pi_phi (initialised from the policy; its reference is the rollout policy pi_old), per step row t:
    r_t = beta * sum_{response tokens k of step t} (log pi_phi(y_k) - log pi_old(y_k))
    r_t <- r_t / (max_batch |r| + eps)                         (normalize="batch_max", the released istar_norm)
PRM loss over the (success, failure) trajectory pairs of each group (uid), on the raw r:
    Q(tau) = mean_t r_t(tau);    L_phi = mean_pairs -log sigmoid(Q(tau_win) - Q(tau_lose))
Policy advantage, RLOO at both levels:
    A^E = n/(n-1) (S - mean_uid S)       S: episode score; n trajectories of the group, one entry each
    A^S = M/(M-1) (r_t - mean_uid r)     M step rows of the group (step_baseline="all_steps")
    A   = A^E + w * A^S
A group with a single entry keeps its raw value (no baseline), as verl's `rloo`. docs/istar.md lists where the
released code differs (first-step baseline of A^S, a PRM loss on detached tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from verl_agent_ext.credit.batch import (
    NONFINITE_POLICIES,
    StepBatch,
    contiguous_ids,
    group_count,
    group_first_row,
    group_sum,
    trajectory_ids,
)
from verl_agent_ext.credit.config import check_choice, check_range, check_types, get_setting, settings_section
from verl_agent_ext.credit.episode import penalised_scores, relative_advantage
from verl_agent_ext.credit.result import CreditResult

PRM_STEP_REWARD_KEY = "prm_step_reward"
"""The per-row `non_tensor_batch` key holding the (normalised) implicit step reward r_t."""

STEP_BASELINES = ("all_steps", "first_steps")
NORMALIZATIONS = ("batch_max", "none")


@dataclass(frozen=True)
class IStarConfig:
    """iStar settings, `algorithm.istar.*` in verl's config (read by the estimator and by both PRM trainers).

    Estimator:
    step_advantage_w: weight w of the step channel, A = A^E + w * A^S.
    step_baseline: "all_steps" (leave-one-out over every step row of the group, the paper's "all other steps
        in the same group") or "first_steps" (the released code: the mean of each trajectory's first step).
    invalid_action_penalty: subtracted from the episode score of invalid rows (default: algorithm.gigpo's).
    Implicit PRM:
    beta: scale of the log-ratio, r = beta * sum_k (log pi_phi - log pi_old).
    normalize: "batch_max" (r / (max |r| over the batch + epsilon), the released istar_norm) or "none".
    freeze_prm: True reproduces the released runs, whose PRM loss never reaches the weights (docs/istar.md).
    prm_lr / prm_weight_decay / prm_grad_clip: the PRM's AdamW (prm_lr None: the policy's learning rate).
    prm_model_path: verl only, the PRM's initial weights (None: the policy's actor_rollout_ref.model.path).
    prm_offload: verl only, keep the PRM's parameters and AdamW states in host memory except while it scores or
        trains (verl's engine param/optimizer offload): a second full model would otherwise stay on the actor's GPUs.
    on_nonfinite: "raise" or "mask" for non-finite rewards, returns and PRM step rewards (default: algorithm.gigpo's;
        see GiGPOConfig).
    """

    step_advantage_w: float = 1.0
    step_baseline: str = "all_steps"
    invalid_action_penalty: float = 0.1
    beta: float = 0.05
    normalize: str = "batch_max"
    epsilon: float = 1e-6
    freeze_prm: bool = False
    prm_lr: float | None = None
    prm_weight_decay: float = 0.0
    prm_grad_clip: float = 10.0
    prm_model_path: str | None = None
    prm_offload: bool = True
    on_nonfinite: str = "raise"

    def __post_init__(self) -> None:
        check_types(self, "istar")
        check_choice("istar.on_nonfinite", self.on_nonfinite, NONFINITE_POLICIES)
        check_choice("istar.step_baseline", self.step_baseline, STEP_BASELINES)
        check_choice("istar.normalize", self.normalize, NORMALIZATIONS)
        check_range("istar.beta", self.beta, 0.0, float("inf"))
        check_range("istar.epsilon", self.epsilon, 0.0, float("inf"))
        check_range("istar.prm_grad_clip", self.prm_grad_clip, 0.0, float("inf"))
        if self.prm_lr is not None:
            check_range("istar.prm_lr", self.prm_lr, 0.0, float("inf"))


ISTAR_KEYS = tuple(f.name for f in fields(IStarConfig))


def istar_config_from(config: Any = None) -> IStarConfig:
    """IStarConfig from verl's `algorithm` section (DictConfig, dict, dataclass) or None (defaults).

    Reads `algorithm.istar`; `invalid_action_penalty` defaults to `algorithm.gigpo.invalid_action_penalty`.
    Unknown keys raise, listing the valid ones. An IStarConfig is returned unchanged.
    """
    if isinstance(config, IStarConfig):
        return config
    options = settings_section(config, "istar", ISTAR_KEYS)
    gigpo = get_setting(config, "gigpo", None)
    penalty = get_setting(gigpo, "invalid_action_penalty", None) if gigpo is not None else None
    if penalty is not None:
        options.setdefault("invalid_action_penalty", penalty)
    on_nonfinite = get_setting(gigpo, "on_nonfinite", None) if gigpo is not None else None
    if on_nonfinite is not None:
        options.setdefault("on_nonfinite", on_nonfinite)
    return IStarConfig(**options)


# ---------------------------------------------------------------------------------------------------------------
# Implicit PRM: step rewards and the pairwise trajectory loss (torch, differentiable)
# ---------------------------------------------------------------------------------------------------------------


def implicit_step_rewards(
    prm_log_prob: torch.Tensor, old_log_prob: torch.Tensor, response_mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """r = beta * sum_k (log pi_phi - log pi_old) over each row's response tokens.

    prm_log_prob, old_log_prob, response_mask: (n, R). Returns (n,) float32, differentiable in prm_log_prob.
    """
    mask = response_mask.to(prm_log_prob.dtype)
    return beta * ((prm_log_prob - old_log_prob.to(prm_log_prob.dtype)) * mask).sum(-1)


def normalise_step_rewards(rewards: np.ndarray, normalize: str, epsilon: float = 1e-6) -> np.ndarray:
    """r / (max |r| + epsilon) over the batch ("batch_max") or r unchanged ("none"). rewards: (n,)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if normalize == "none" or len(rewards) == 0:
        return rewards
    return rewards / (np.abs(rewards).max() + epsilon)


def trajectory_pairs(
    group_ids: np.ndarray, traj_ids: np.ndarray, success: np.ndarray, active: np.ndarray | None = None
) -> np.ndarray:
    """All (winning trajectory, losing trajectory) pairs inside each group. Returns int64 (P, 2) trajectory ids.

    group_ids, traj_ids (contiguous), success: (n,) per row; active: (n,) rows that count (None: all). A trajectory
    is a win when its rows' success is True; groups without both a win and a loss give no pair.
    """
    active = np.ones(len(traj_ids), dtype=bool) if active is None else np.asarray(active, dtype=bool)
    if not active.any():
        return np.zeros((0, 2), dtype=np.int64)
    first = group_first_row(traj_ids)
    kept = np.zeros(len(first), dtype=bool)
    kept[traj_ids[active]] = True
    traj_group, traj_win = group_ids[first], np.asarray(success, dtype=bool)[first]
    same_group = traj_group[:, None] == traj_group[None, :]
    pairs = same_group & (traj_win & kept)[:, None] & (~traj_win & kept)[None, :]
    return np.argwhere(pairs).astype(np.int64)


def pairwise_trajectory_loss(
    step_rewards: torch.Tensor,
    group_ids: np.ndarray,
    traj_ids: np.ndarray,
    success: np.ndarray,
    active: np.ndarray | None = None,
) -> tuple[torch.Tensor, int]:
    """L = mean over pairs of -log sigmoid(Q_win - Q_lose), Q = mean step reward of a trajectory.

    step_rewards: (n,) raw r (differentiable); group_ids, traj_ids (contiguous), success, active: (n,).
    Returns (scalar loss, number of pairs); without a pair the loss is 0 (still attached to the graph).
    """
    active_t = torch.ones(len(traj_ids), dtype=torch.bool) if active is None else torch.as_tensor(active)
    pairs = trajectory_pairs(group_ids, traj_ids, success, active)
    if len(pairs) == 0:
        return step_rewards.sum() * 0.0, 0
    num_traj = int(traj_ids.max()) + 1
    index = torch.as_tensor(traj_ids, device=step_rewards.device)
    weight = active_t.to(step_rewards.device, step_rewards.dtype)
    total = torch.zeros(num_traj, dtype=step_rewards.dtype, device=step_rewards.device).index_add(
        0, index, step_rewards * weight
    )
    count = torch.zeros_like(total).index_add(0, index, weight).clamp(min=1)
    q = total / count
    pairs_t = torch.as_tensor(pairs, device=step_rewards.device)
    margin = q[pairs_t[:, 0]] - q[pairs_t[:, 1]]
    return torch.nn.functional.softplus(-margin).mean(), len(pairs)


def pairwise_loss_row_weights(
    step_rewards: np.ndarray | torch.Tensor,
    group_ids: np.ndarray,
    traj_ids: np.ndarray,
    success: np.ndarray,
    active: np.ndarray | None = None,
) -> tuple[float, np.ndarray, int]:
    """The pair loss at fixed step rewards and c_i = dL/dr_i per row. Returns (loss, c (n,) float64, pairs).

    Training with the per-row surrogate sum_i c_i * r_i(phi) (r_i recomputed with gradient) has exactly the
    gradient of L at the current phi, so the pairwise loss can be trained in independent micro-batches.
    """
    leaf = torch.as_tensor(np.asarray(step_rewards, dtype=np.float64)).requires_grad_(True)
    loss, num_pairs = pairwise_trajectory_loss(leaf, group_ids, traj_ids, success, active)
    if num_pairs == 0:
        return 0.0, np.zeros(len(leaf)), 0
    loss.backward()
    return loss.item(), leaf.grad.numpy().copy(), num_pairs


@dataclass(frozen=True)
class PRMBatch:
    """One batch scored by the PRM: what its update and the estimator need.

    loss: pair loss at the current phi; weights: (n,) c_i = dL/dr_i (0 on rows outside any pair); pairs: count;
    rewards: (n,) normalised step rewards for the estimator (0 on inactive rows); metrics: istar/* floats.
    """

    loss: float
    weights: np.ndarray
    pairs: int
    rewards: np.ndarray
    metrics: dict[str, float]


def score_prm_batch(
    raw: np.ndarray,
    uid: np.ndarray,
    traj_uid: np.ndarray,
    success: np.ndarray,
    config: IStarConfig,
    active: np.ndarray | None = None,
) -> PRMBatch:
    """Pair loss, its per-row gradient and the normalised step rewards from raw r (n,) and the rows' labels.

    uid, traj_uid, success, active: (n,); inactive rows (verl's padding copies) join no pair and get reward 0.
    """
    raw = np.asarray(raw, dtype=np.float64)
    active = np.ones(len(raw), dtype=bool) if active is None else np.asarray(active, dtype=bool)
    group, traj = contiguous_ids(np.asarray(uid, dtype=object)), contiguous_ids(np.asarray(traj_uid, dtype=object))
    success = np.asarray(success, dtype=bool)
    loss, weights, pairs = pairwise_loss_row_weights(raw, group, traj, success, active)
    rewards = np.zeros(len(raw))
    rewards[active] = normalise_step_rewards(raw[active], config.normalize, config.epsilon)
    win, lose = active & success, active & ~success
    metrics = {
        "istar/loss": loss,
        "istar/pairs": float(pairs),
        "istar/groups_with_pairs": float(len(np.unique(group[weights != 0]))),
        "istar/raw_reward_mean": float(raw[active].mean()) if active.any() else 0.0,
        "istar/raw_reward_abs_max": float(np.abs(raw[active]).max()) if active.any() else 0.0,
        "istar/raw_reward_success_mean": float(raw[win].mean()) if win.any() else 0.0,
        "istar/raw_reward_failure_mean": float(raw[lose].mean()) if lose.any() else 0.0,
    }
    return PRMBatch(loss, weights, pairs, rewards, metrics)


# ---------------------------------------------------------------------------------------------------------------
# Policy advantage
# ---------------------------------------------------------------------------------------------------------------


def rloo_scale(group_ids: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """n/(n-1) per row, n = entries of the row's group (1 for a single entry). group_ids: (n,); entries: (G,)."""
    n = entries[group_ids].astype(np.float64)
    return np.where(n > 1, n / np.maximum(n - 1, 1), 1.0)


def step_rloo_advantage(rewards: np.ndarray, group_ids: np.ndarray, position: np.ndarray, baseline: str) -> np.ndarray:
    """A^S per row (n,) from step rewards (n,).

    "all_steps": leave-one-out over every step row of the group, M/(M-1) (r - mean_uid r).
    "first_steps" (released code): the mean over the group's trajectories of their first step's r, scaled by
    n/(n-1) with n trajectories.
    """
    num_groups = int(group_ids.max()) + 1 if len(group_ids) else 0
    if baseline == "all_steps":
        entries = group_count(group_ids, num_groups)
        mean = group_sum(rewards, group_ids, num_groups) / np.maximum(entries, 1)
    elif baseline == "first_steps":
        starts = position == 0
        entries = group_count(group_ids[starts], num_groups)
        mean = group_sum(rewards[starts], group_ids[starts], num_groups) / np.maximum(entries, 1)
    else:
        raise ValueError(f"step_baseline={baseline!r} is not valid; valid: ['all_steps', 'first_steps']")
    single = entries[group_ids] <= 1
    return np.where(single, rewards, rloo_scale(group_ids, entries) * (rewards - mean[group_ids]))


def compute_istar(
    batch: StepBatch, config: IStarConfig | None = None, prm_step_reward: np.ndarray | None = None
) -> CreditResult:
    """iStar advantages of every step row.

    batch: n step samples in any row order. config: IStarConfig or verl's `algorithm` section (None: defaults).
    prm_step_reward: (n,) implicit step reward r_t of each row (normalised as the PRM's `normalize` says).
    """
    config = istar_config_from(config)
    if prm_step_reward is None:
        raise ValueError(
            f"adv_estimator=istar needs non_tensor_batch key {PRM_STEP_REWARD_KEY!r} (missing): the implicit PRM's "
            "step reward of each row. Sources: train-local's PRM adapter, verl's plugin PRM worker group "
            "(docs/istar.md)."
        )
    rewards = np.asarray(prm_step_reward, dtype=np.float64)
    if rewards.shape != (len(batch),):
        raise ValueError(f"{PRM_STEP_REWARD_KEY} must have one value per row ({len(batch)}), got {rewards.shape}")
    if not np.all(np.isfinite(rewards)):
        raise ValueError(f"{PRM_STEP_REWARD_KEY} has non-finite values")
    ids = trajectory_ids(batch)
    group, position = ids.group, ids.position
    scores = penalised_scores(batch, config.invalid_action_penalty)
    centred = relative_advantage(scores, group, position, over="trajectories", use_std=False)
    trajectories = group_count(group[position == 0], int(group.max()) + 1 if len(group) else 0)
    episode_adv = rloo_scale(group, trajectories) * centred
    step_adv = step_rloo_advantage(rewards, group, position, config.step_baseline)
    diagnostics = {
        "istar/step_reward_mean": float(rewards.mean()) if len(rewards) else 0.0,
        "istar/step_reward_std": float(rewards.std()) if len(rewards) else 0.0,
        "istar/step_advantage_abs_mean": float(np.abs(step_adv).mean()) if len(rewards) else 0.0,
    }
    return CreditResult(
        advantage=episode_adv + config.step_advantage_w * step_adv,
        episode_advantage=episode_adv,
        step_advantage=step_adv,
        episode_score=scores,
        step_return=rewards,
        step_group=np.full(len(batch), -1, dtype=np.int64),
        credit=np.zeros(len(batch)),
        diagnostics=diagnostics,
    )
