"""GiGPO (arXiv 2505.10978): episode-relative advantage plus a step-relative advantage inside anchor-state groups.

A_t = A^E(tau) + w * A^S_t,  A^S_t = (R_t - mean_G) / F over the anchor-state group G of step t,
R_t = sum_{k>=t} gamma^(k-t) r_k  (minus the invalid-action penalty on invalid steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verl_agent_ext.credit.batch import (
    StepBatch,
    discounted_returns,
    group_mean_std,
    safe_divide,
    trajectory_ids,
)
from verl_agent_ext.credit.config import GiGPOConfig, gigpo_config_from
from verl_agent_ext.credit.episode import penalised_scores, relative_advantage
from verl_agent_ext.credit.result import CreditResult
from verl_agent_ext.credit.step_groups import anchor_step_groups, group_size_stats
from verl_agent_ext.semantic import Matcher, shared_matcher


@dataclass(frozen=True)
class StepLayout:
    """Ids shared by the step-level estimators, each (n,) unless noted.

    group: contiguous uid ids; traj: contiguous traj_uid ids; position: time position inside the trajectory;
    traj_length: steps per trajectory (T,); step_group: anchor-state group ids.
    """

    group: np.ndarray
    traj: np.ndarray
    position: np.ndarray
    traj_length: np.ndarray
    step_group: np.ndarray


def step_layout(batch: StepBatch, config: GiGPOConfig, matcher: Matcher | None = None) -> StepLayout:
    """Group, trajectory, time and anchor-state ids of the batch's rows."""
    ids = trajectory_ids(batch)
    if matcher is None and config.similarity != "exact":
        matcher = shared_matcher(config.similarity, config.model, device=config.device, threads=config.threads)
    step_group = anchor_step_groups(ids.group, batch.anchor_obs, matcher, config.similarity_thresh)
    return StepLayout(ids.group, ids.traj, ids.position, ids.traj_length, step_group)


def penalised_step_returns(batch: StepBatch, layout: StepLayout, config: GiGPOConfig) -> np.ndarray:
    """Discounted step returns minus the invalid-action penalty (after discounting). Returns float64 (n,)."""
    returns = discounted_returns(batch.step_reward, layout.traj, layout.position, config.gamma)
    return returns - config.invalid_action_penalty * (~batch.is_action_valid)


def step_relative_advantage(
    step_returns: np.ndarray, step_group: np.ndarray, use_std: bool, epsilon: float
) -> np.ndarray:
    """A^S = (R - mean_G) / F over anchor-state groups; a singleton group gives 0. Returns float64 (n,)."""
    if len(step_returns) == 0:
        return np.zeros(0)
    mean, std, count = group_mean_std(step_returns, step_group)
    singleton = count <= 1
    std = np.where(singleton, 1.0, std)
    centred = np.where(singleton[step_group], 0.0, step_returns - mean[step_group])
    return safe_divide(centred, std[step_group] + epsilon) if use_std else centred


def combine_channels(
    batch: StepBatch,
    layout: StepLayout,
    config: GiGPOConfig,
    step_returns: np.ndarray,
    credit: np.ndarray,
    diagnostics: dict[str, float],
) -> CreditResult:
    """A = A^E + w * A^S from the (possibly shaped) step returns; shared by GiGPO and SCPO."""
    scores = penalised_scores(batch, config.invalid_action_penalty)
    episode_adv = relative_advantage(
        scores,
        layout.group,
        layout.position,
        over=config.episode_norm_over,
        use_std=config.use_std,
        epsilon=config.epsilon,
    )
    step_adv = step_relative_advantage(step_returns, layout.step_group, config.use_std, config.epsilon)
    return CreditResult(
        advantage=episode_adv + config.step_advantage_w * step_adv,
        episode_advantage=episode_adv,
        step_advantage=step_adv,
        episode_score=scores,
        step_return=step_returns,
        step_group=layout.step_group,
        credit=credit,
        diagnostics=diagnostics,
    )


def compute_gigpo(batch: StepBatch, config: GiGPOConfig | None = None, matcher: Matcher | None = None) -> CreditResult:
    """GiGPO advantages of every step row.

    batch: n step samples in any row order. config: GiGPOConfig or verl's `algorithm` section (None: defaults).
    matcher: overrides the anchor-grouping matcher named by `config.similarity`.
    """
    config = gigpo_config_from(config)
    layout = step_layout(batch, config, matcher)
    step_returns = penalised_step_returns(batch, layout, config)
    diagnostics = group_size_stats(layout.step_group, "gigpo")
    return combine_channels(batch, layout, config, step_returns, np.zeros(len(batch)), diagnostics)
