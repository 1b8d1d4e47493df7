"""3SPO (arXiv 2606.09961): step rewards from the state-score table, relative inside anchor-state groups.

Per step row, with the table's counts from before this batch (`credit.state_scores`):

    R_t = w * R_novel + (0.5 - w) * (S(s_t) - S(s_{t+1})) + 0.5 * R_success   (minus the invalid-action penalty)
    w = 0.5 * exp(-omega_k * N_tot(s_t)),   R_novel = 1[s_t != s_{t+1}]
    A^S = R_t - mean_G(R)  over the GiGPO anchor-state group G (same uid, same anchor); a singleton group gives 0
    A = episode_w * A^E + step_advantage_w * A^S
    A^E: GiGPO's episode channel on each row's mean return over the trajectories through it (`path_mean_returns`)

`next_anchor_obs` (s_{t+1}; the terminal observation on a trajectory's last step) is the optional step-metadata
key 3SPO needs. Branches of one episode (adaptive rollout) carry traj_uids "<parent>/<depth>.<k>": the branch
shares its parent's steps before `depth` and owns its rows from `depth` on (`branch_lineage`), so a shared
prefix step is one row, and each trajectory's states are recovered for the table update (`trajectory_states`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from verl_agent_ext.credit.batch import StepBatch, contiguous_ids, group_count, trajectory_ids
from verl_agent_ext.credit.config import SSPOConfig, sspo_config_from
from verl_agent_ext.credit.episode import penalised_scores, relative_advantage
from verl_agent_ext.credit.gigpo import step_relative_advantage
from verl_agent_ext.credit.result import CreditResult
from verl_agent_ext.credit.state_scores import StateScoreTable, state_keys
from verl_agent_ext.credit.step_groups import anchor_step_groups, group_size_stats

SSPO_METADATA_KEYS = ("next_anchor_obs",)
"""Optional step-metadata keys `sspo` needs beyond the contract (filled by the verl_agent_ext agent loop)."""

BRANCH_SEPARATOR = "/"


def branch_uid(parent: str, depth: int, index: int) -> str:
    """traj_uid of the `index`-th branch forked from trajectory `parent` at step `depth`."""
    return f"{parent}{BRANCH_SEPARATOR}{depth}.{index}"


def branch_lineage(traj_uid: str) -> list[tuple[str, int]]:
    """[(ancestor traj_uid, first step it owns on this path)], root first, `traj_uid` last."""
    parts = str(traj_uid).split(BRANCH_SEPARATOR)
    lineage = [(parts[0], 0)]
    for i in range(1, len(parts)):
        depth, _, index = parts[i].partition(".")
        if not (depth.isdigit() and index.isdigit()):
            raise ValueError(
                f"traj_uid {traj_uid!r}: sspo reserves '{BRANCH_SEPARATOR}' for branch ids '<parent>"
                f"{BRANCH_SEPARATOR}<depth>.<index>', and {parts[i]!r} is not one; use another separator in traj_uid"
            )
        lineage.append((BRANCH_SEPARATOR.join(parts[: i + 1]), int(depth)))
    return lineage


def trajectory_paths(batch: StepBatch) -> dict[str, np.ndarray]:
    """Rows (in time order) of every trajectory's full path, its ancestors' shared steps included.

    Returns {traj_uid: int64 row indices}. Raises ValueError when an ancestor of a branch is not in the batch.
    """
    by_traj: dict[str, list[int]] = {}
    for row, uid in enumerate(batch.traj_uid):
        by_traj.setdefault(str(uid), []).append(row)
    steps = batch.step_index
    paths = {}
    for uid in by_traj:
        lineage = branch_lineage(uid)
        rows: list[int] = []
        for (ancestor, start), (_, stop) in zip(lineage, [*lineage[1:], ("", np.iinfo(np.int64).max)], strict=True):
            if ancestor not in by_traj:
                raise ValueError(f"branch {uid!r} needs the rows of its ancestor {ancestor!r}, absent from the batch")
            rows += [r for r in by_traj[ancestor] if start <= steps[r] < stop]
        rows.sort(key=lambda r: steps[r])
        paths[uid] = np.asarray(rows, dtype=np.int64)
    return paths


def path_mean_returns(batch: StepBatch) -> np.ndarray:
    """Mean undiscounted return of the trajectories through each row (one trajectory: its return). (n,) float64.

    3SPO's episode channel reads this instead of `episode_return`: verl's agent-loop worker copies the last
    output's reward score onto every output of a session, which would give all branches of a session one outcome.
    """
    total = np.zeros(len(batch))
    count = np.zeros(len(batch))
    for rows in trajectory_paths(batch).values():
        total[rows] += batch.step_reward[rows].sum()
        count[rows] += 1
    return total / np.maximum(count, 1)


def trajectory_states(batch: StepBatch, next_anchor_obs: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """(state keys of every s_t on the path plus its final s_T, success) per trajectory: the table's update."""
    anchors = state_keys(batch.anchor_obs)
    following = state_keys(_texts(next_anchor_obs, batch.anchor_obs))
    out = []
    for uid, rows in trajectory_paths(batch).items():
        own = rows[batch.traj_uid[rows].astype(str) == uid]
        out.append((np.append(anchors[rows], following[rows[-1]]), bool(batch.episode_success[own[-1]])))
    return out


def last_steps(batch: StepBatch) -> np.ndarray:
    """True on the last step (largest step_index) of every traj_uid. Returns bool (n,)."""
    ids = trajectory_ids(batch)
    return ids.position == ids.traj_length[ids.traj] - 1


def step_rewards(
    batch: StepBatch, next_anchor_obs: np.ndarray, table: StateScoreTable, config: SSPOConfig
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """R_t of every row (n,) before the invalid-action penalty, and its ingredients (each (n,))."""
    now = state_keys(batch.anchor_obs)
    after = state_keys(_texts(next_anchor_obs, batch.anchor_obs))
    score_now, score_after = table.scores(now), table.scores(after)
    _, visits = table.counts(now)
    w = 0.5 * np.exp(-config.omega_k * visits)
    novel = (now != after).astype(np.float64)
    if config.success_reward == "env":
        success = batch.step_reward
    else:
        success = (last_steps(batch) & batch.episode_success).astype(np.float64)
    reward = w * novel + (0.5 - w) * (score_now - score_after) + 0.5 * success
    return reward, {"score": score_now, "next_score": score_after, "w": w, "novel": novel}


def compute_sspo(
    batch: StepBatch,
    next_anchor_obs: Sequence[str | None],
    table: StateScoreTable,
    config: SSPOConfig | None = None,
) -> CreditResult:
    """3SPO advantages of every step row.

    batch: n step samples in any row order (branches as described in the module docstring). next_anchor_obs: (n,)
    s_{t+1} texts; None (verl's padding rows) reads as s_t. table: the state scores from before this batch (read
    only). config: SSPOConfig or verl's `algorithm` section (None: defaults).
    """
    config = sspo_config_from(config)
    gigpo = config.gigpo
    next_anchor_obs = np.asarray(next_anchor_obs, dtype=object)
    if len(next_anchor_obs) != len(batch):
        raise ValueError(f"next_anchor_obs has {len(next_anchor_obs)} entries for {len(batch)} rows")
    ids = trajectory_ids(batch)
    group, position = ids.group, ids.position
    step_group = anchor_step_groups(group, batch.anchor_obs)
    reward, parts = step_rewards(batch, next_anchor_obs, table, config)
    step_returns = reward - gigpo.invalid_action_penalty * (~batch.is_action_valid)
    scores = penalised_scores(replace(batch, episode_return=path_mean_returns(batch)), gigpo.invalid_action_penalty)
    episode_adv = relative_advantage(
        scores, group, position, over=gigpo.episode_norm_over, use_std=gigpo.use_std, epsilon=gigpo.epsilon
    )
    step_adv = step_relative_advantage(step_returns, step_group, gigpo.use_std, gigpo.epsilon)
    return CreditResult(
        advantage=config.episode_w * episode_adv + gigpo.step_advantage_w * step_adv,
        episode_advantage=episode_adv,
        step_advantage=step_adv,
        episode_score=scores,
        step_return=step_returns,
        step_group=step_group,
        credit=parts["score"],
        diagnostics={**group_size_stats(step_group, "sspo"), **_diagnostics(batch, next_anchor_obs, parts)},
    )


def _diagnostics(batch: StepBatch, next_anchor_obs: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, float]:
    """Exploration and score metrics of the batch (scores from before it); padding rows (no s_{t+1}) left out."""
    real = np.flatnonzero([text is not None for text in next_anchor_obs])
    if len(real) == 0:
        return {}
    batch, next_anchor_obs = batch.take(real), next_anchor_obs[real]
    parts = {name: values[real] for name, values in parts.items()}
    group = contiguous_ids(batch.uid)
    texts = _texts(next_anchor_obs, batch.anchor_obs)
    traj_uid = batch.traj_uid.astype(str)
    final = last_steps(batch) & ~batch.episode_success
    score = parts["score"]
    return {
        "sspo/unique_states": float(len(set(batch.anchor_obs.tolist()) | set(texts.tolist()))),
        "sspo/trajectories": float(len(np.unique(traj_uid))),
        "sspo/branches": float(len({uid for uid in traj_uid if BRANCH_SEPARATOR in uid})),
        "sspo/stops": float(np.sum(final & (parts["next_score"] == 0.0))),
        "sspo/rows_per_group_mean": float(group_count(group).mean()),
        "sspo/score_mean": float(score.mean()),
        "sspo/score_p10": float(np.percentile(score, 10)),
        "sspo/score_p50": float(np.percentile(score, 50)),
        "sspo/score_p90": float(np.percentile(score, 90)),
        "sspo/zero_score_share": float(np.mean(score == 0.0)),
        "sspo/novel_share": float(parts["novel"].mean()),
    }


def _texts(texts: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """`texts` as str, None replaced by the same row of `fallback` (n,)."""
    return np.asarray([str(f) if t is None else str(t) for t, f in zip(texts, fallback, strict=True)], dtype=object)
