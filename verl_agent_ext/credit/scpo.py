"""SCPO (arXiv 2606.25852): GiGPO whose step channel credits failed steps that match a successful sibling.

For every group (uid) with a success, each failed trajectory is aligned to a reference success:

    M_ij = similarity(step_text of failed step i, step_text of reference step j)
    matches = optimal monotone one-to-one alignment maximising sum c_ij over pairs with M_ij > theta
    c_i = (M_ij - theta) / (1 - theta) for the reference step j matched to i, else 0        (in [0, 1])
    R~_t = R_t + alpha * u * c_t    (failed trajectories only; after discounting, see docs/credit.md;
                                     u = 1, or with alpha_scale=success_return the group's best success return
                                     above its floor min(0, lowest return): `alpha_unit`)
    A = A^E (original outcome) + w * A^S(R~) over the GiGPO anchor-state groups.

Groups without a success are untouched, so there SCPO equals GiGPO exactly.
"""

from __future__ import annotations

import time

import numpy as np

from verl_agent_ext.credit.alignment import align_batch
from verl_agent_ext.credit.batch import StepBatch, group_first_row
from verl_agent_ext.credit.config import SCPOConfig, scpo_config_from
from verl_agent_ext.credit.gigpo import StepLayout, combine_channels, penalised_step_returns, step_layout
from verl_agent_ext.credit.result import CreditResult
from verl_agent_ext.credit.step_groups import group_size_stats
from verl_agent_ext.semantic import Matcher, shared_matcher


def step_texts(batch: StepBatch, step_text: str) -> np.ndarray:
    """The text compared per step (n,): the newline-joined `step_parts`."""
    return np.asarray(["\n".join(parts) for parts in step_parts(batch, step_text)], dtype=object)


def step_parts(batch: StepBatch, step_text: str) -> list[tuple[str, ...]]:
    """The compared step as its parts (n tuples): "obs_action" (observation, action), "obs_response" (observation,
    the model's full response), "action" (action,) or "obs" (observation,).

    Joined with a newline they are `step_texts`; an encoder may instead embed each part once (matcher option).
    """
    if step_text == "action":
        return [(action,) for action in batch.action_text]
    if step_text == "obs":
        return [(obs,) for obs in batch.anchor_obs]
    if step_text == "obs_response":
        if len(batch) and not any(batch.response_text):
            raise ValueError(
                "scpo.step_text=obs_response needs each step's response text (non_tensor_batch key "
                "'response_text', recorded by the verl_agent_ext agent loop); these rows have none"
            )
        return list(zip(batch.anchor_obs, batch.response_text, strict=True))
    return list(zip(batch.anchor_obs, batch.action_text, strict=True))


def reference_pairs(batch: StepBatch, layout: StepLayout, reference: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(failed trajectory, reference trajectory) pairs to align, and each trajectory's success flag.

    Returns (failed (P,), ref (P,), success (T,)), trajectory ids from `layout.traj`. The longest / shortest
    success is chosen per group, ties broken by the smallest traj_uid (independent of row order).
    """
    first = group_first_row(layout.traj)
    success = batch.episode_success[first]
    if np.any(batch.episode_success != success[layout.traj]):
        mixed = sorted({str(name) for name in batch.traj_uid[batch.episode_success != success[layout.traj]]})
        raise ValueError(f"episode_success must be the same on every step of a trajectory; differs in {mixed[:5]}")
    traj_group = layout.group[first]
    names = np.asarray([str(name) for name in batch.traj_uid[first]])
    length = layout.traj_length
    failed_list, ref_list = [], []
    for group in np.unique(traj_group[success]):
        members = np.flatnonzero(traj_group == group)
        winners = members[success[members]]
        losers = members[~success[members]]
        if len(losers) == 0:
            continue
        if reference == "all":
            refs = winners
        else:
            key = -length[winners] if reference == "longest" else length[winners]
            refs = winners[np.lexsort((names[winners], key))[:1]]
        failed_list.append(np.repeat(losers, len(refs)))
        ref_list.append(np.tile(refs, len(losers)))
    if not failed_list:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, success
    return np.concatenate(failed_list), np.concatenate(ref_list), success


def semantic_credit(
    batch: StepBatch, layout: StepLayout, config: SCPOConfig, matcher: Matcher, effective: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, float]]:
    """Soft credit c (n,) of failed steps matched to their reference, and SCPO diagnostics.

    effective: (n,) bool, rows whose credit can change their return (alpha's unit u > 0); credit elsewhere is
    set to 0, so the returned credit and its diagnostics are what the step returns receive.
    """
    failed, refs, success = reference_pairs(batch, layout, config.reference)
    parts = step_parts(batch, config.step_text)
    time_order = np.lexsort((layout.position, layout.traj))  # rows by (trajectory, time)
    starts = np.concatenate(([0], np.cumsum(layout.traj_length)))

    def rows_of(traj: int) -> np.ndarray:
        return time_order[starts[traj] : starts[traj + 1]]

    blocks = [
        ([parts[i] for i in rows_of(f)], [parts[i] for i in rows_of(r)]) for f, r in zip(failed, refs, strict=True)
    ]
    start = time.perf_counter()
    similarities = matcher.step_similarity_blocks(blocks) if blocks else []
    encode_seconds = time.perf_counter() - start
    cost = matcher.last_stats if blocks else {}
    weights = [np.where(m > config.theta, (m - config.theta) / (1.0 - config.theta), 0.0) for m in similarities]
    credit = np.zeros(len(batch))
    matched_pairs = 0
    start = time.perf_counter()
    alignments = align_batch(weights)
    align_seconds = time.perf_counter() - start
    for f, w, pairs in zip(failed, weights, alignments, strict=True):
        if len(pairs):
            rows = rows_of(f)[pairs[:, 0]]
            credit[rows] = np.maximum(credit[rows], w[pairs[:, 0], pairs[:, 1]])
            matched_pairs += len(pairs) if effective is None else int(effective[rows].sum())
    if effective is not None:
        credit = np.where(effective, credit, 0.0)
    failed_rows = ~success[layout.traj]
    has_reference = np.isin(layout.traj, failed)
    credited = credit > 0
    diagnostics = {
        "scpo/groups_with_reference": float(len(np.unique(layout.group[has_reference]))),
        "scpo/failed_steps": float(failed_rows.sum()),
        "scpo/failed_steps_with_reference": float(has_reference.sum()),
        "scpo/credited_failed_step_share": float(credited.sum() / max(failed_rows.sum(), 1)),
        "scpo/credited_share_with_reference": float(credited.sum() / max(has_reference.sum(), 1)),
        "scpo/mean_credit": float(credit[credited].mean()) if credited.any() else 0.0,
        "scpo/matched_pairs": float(matched_pairs),
        "scpo/encode_seconds": encode_seconds,
        "scpo/align_seconds": align_seconds,
        "scpo/distinct_texts": float(len({step for block in blocks for side in block for step in side})),
        "scpo/cache_hit_rate": float(cost.get("cache_hit_rate", 0.0)),
    }
    return credit, diagnostics


def alpha_unit(batch: StepBatch, layout: StepLayout, alpha_scale: str) -> np.ndarray:
    """Unit u of alpha per row (n,): 1 ("reward"), or the group's success height ("success_return").

    Success height: the largest episode return among the group's successes, measured from the group's floor,
    min(0, lowest episode return in the group). With non-negative returns (ALFWorld: 10 or 0) it is the success
    return itself; with step costs (a success at -2, failures down to -5) it is the gap to the worst return (3),
    so a credit c still raises the step return by alpha * c * that gap. It is 0 only when no success returns more
    than the floor; credit there has no effect, and `semantic_credit`'s caller zeroes it so the metrics agree.
    """
    if alpha_scale == "reward" or len(batch) == 0:
        return np.ones(len(batch))
    groups = int(layout.group.max()) + 1
    best = np.full(groups, -np.inf)
    wins = batch.episode_success
    np.maximum.at(best, layout.group[wins], batch.episode_return[wins])
    floor = np.zeros(groups)
    np.minimum.at(floor, layout.group, batch.episode_return)
    height = np.where(np.isfinite(best), best - floor, 0.0)
    return np.maximum(height, 0.0)[layout.group]


def compute_scpo(batch: StepBatch, config: SCPOConfig | None = None, matcher: Matcher | None = None) -> CreditResult:
    """SCPO advantages of every step row.

    batch: n step samples in any row order. config: SCPOConfig or verl's `algorithm` section (None: defaults).
    matcher: overrides the matcher named by `config.matcher` (default: the process-wide shared one, whose
    cache persists across calls). Anchor-state grouping follows `config.gigpo.similarity`.
    """
    config = scpo_config_from(config)
    gigpo = config.gigpo
    layout = step_layout(batch, gigpo)
    step_returns = penalised_step_returns(batch, layout, gigpo)
    diagnostics = group_size_stats(layout.step_group, "gigpo")
    matcher = matcher or shared_matcher(
        config.matcher,
        config.model,
        device=gigpo.device,
        threads=gigpo.threads,
        segments=config.segments,
        backend=config.backend,
        variant=config.static_variant,
    )
    unit = alpha_unit(batch, layout, config.alpha_scale)
    credit, scpo_diagnostics = semantic_credit(batch, layout, config, matcher, effective=unit > 0)
    diagnostics.update(scpo_diagnostics)
    shaped = step_returns + config.alpha * unit * credit
    return combine_channels(batch, layout, gigpo, shaped, credit, diagnostics)
