"""A batch of step samples (one row per env step of one trajectory) and vectorised grouping helpers.

Every estimator in `credit/` reads a `StepBatch` and returns one scalar per row. Rows may come in any order:
groups are found by label, the time order inside a trajectory comes from `step_index`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepBatch:
    """Columns of n step samples, all of shape (n,).

    uid: group id (the N rollouts of one task share it). traj_uid: trajectory id, unique across the batch.
    step_index: position of the step in its trajectory (0-based, ordering only). step_reward: env reward of that
    step, without any invalid-action penalty. is_action_valid: False when the action was unparseable or not
    admissible. episode_return: undiscounted env return of the step's trajectory (same value on all its rows).
    episode_success: outcome of the step's trajectory. anchor_obs: raw env observation at that step (no prompt,
    no history). action_text: the action the model took at that step. response_text (optional, "" when not
    recorded): the model's full response at that step (thought and action), for SCPO's `step_text=obs_response`.
    """

    uid: np.ndarray
    traj_uid: np.ndarray
    step_index: np.ndarray
    step_reward: np.ndarray
    is_action_valid: np.ndarray
    episode_return: np.ndarray
    episode_success: np.ndarray
    anchor_obs: np.ndarray
    action_text: np.ndarray
    response_text: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.response_text is None:
            object.__setattr__(self, "response_text", np.full(len(self.uid), "", dtype=object))
        lengths = {name: len(getattr(self, name)) for name in STEP_BATCH_FIELDS}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"StepBatch columns must all have the same length, got {lengths}")

    def __len__(self) -> int:
        return len(self.uid)

    @classmethod
    def from_columns(
        cls,
        *,
        uid: Sequence,
        traj_uid: Sequence,
        step_index: Sequence[int],
        step_reward: Sequence[float],
        is_action_valid: Sequence[bool] | None = None,
        episode_return: Sequence[float] | None = None,
        episode_success: Sequence[bool] | None = None,
        anchor_obs: Sequence[str] | None = None,
        action_text: Sequence[str] | None = None,
        response_text: Sequence[str] | None = None,
    ) -> StepBatch:
        """Build a batch from plain sequences, filling optional columns with their natural defaults.

        Defaults: every action valid; episode_return = sum of the trajectory's step rewards; episode_success =
        episode_return > 0; empty observation / action texts.
        """
        n = len(uid)
        uid_arr = np.asarray(uid, dtype=object)
        traj_arr = np.asarray(traj_uid, dtype=object)
        rewards = np.asarray(step_reward, dtype=np.float64)
        if episode_return is None:
            traj_ids = contiguous_ids(traj_arr)
            episode_return = group_sum(rewards, traj_ids)[traj_ids]
        returns = np.asarray(episode_return, dtype=np.float64)
        return cls(
            uid=uid_arr,
            traj_uid=traj_arr,
            step_index=np.asarray(step_index, dtype=np.int64),
            step_reward=rewards,
            is_action_valid=np.ones(n, dtype=bool) if is_action_valid is None else np.asarray(is_action_valid, bool),
            episode_return=returns,
            episode_success=returns > 0 if episode_success is None else np.asarray(episode_success, dtype=bool),
            anchor_obs=_text_column(anchor_obs, n),
            action_text=_text_column(action_text, n),
            response_text=_text_column(response_text, n),
        )

    def take(self, rows: np.ndarray) -> StepBatch:
        """The batch restricted to / reordered by `rows` (int indices, shape (k,))."""
        return StepBatch(**{name: getattr(self, name)[rows] for name in STEP_BATCH_FIELDS})


STEP_BATCH_FIELDS = tuple(StepBatch.__dataclass_fields__)

# The metadata keys a trainer must put in `non_tensor_batch` for the step-level estimators.
REQUIRED_METADATA_KEYS = (
    "uid",
    "traj_uid",
    "step_index",
    "anchor_obs",
    "action_text",
    "step_reward",
    "is_action_valid",
    "episode_success",
)
RESPONSE_TEXT_KEY = "response_text"
"""Optional `non_tensor_batch` key: the model's full response per step (the agent loop fills it)."""
MAX_RESPONSE_TEXT_CHARS = 2048
"""The agent loop keeps the last this many characters of a response (the action comes last), bounding row size."""


def step_batch_from_metadata(metadata: Mapping[str, np.ndarray], episode_return: np.ndarray) -> StepBatch:
    """Build a StepBatch from the estimator contract's `non_tensor_batch` keys.

    `episode_return` (shape (n,)) is the per-row episode return (verl: `token_level_rewards.sum(-1)`).
    Raises ValueError naming every missing key.
    """
    missing = [key for key in REQUIRED_METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(
            f"step-level credit assignment needs non_tensor_batch keys {missing} (missing), "
            f"required: {list(REQUIRED_METADATA_KEYS)}. They are filled by the verl_agent_ext agent loop "
            "(one training row per env step) and handed to the estimator by the plugin's trainer hook; "
            "see docs/credit.md."
        )
    n = len(episode_return)
    wrong = {key: len(metadata[key]) for key in REQUIRED_METADATA_KEYS if len(metadata[key]) != n}
    if wrong:
        raise ValueError(f"non_tensor_batch columns must have one entry per row ({n}), got lengths {wrong}")
    return StepBatch(
        uid=np.asarray(metadata["uid"], dtype=object),
        traj_uid=np.asarray(metadata["traj_uid"], dtype=object),
        step_index=np.asarray(metadata["step_index"], dtype=np.int64),
        step_reward=np.asarray(metadata["step_reward"], dtype=np.float64),
        is_action_valid=np.asarray(metadata["is_action_valid"], dtype=bool),
        episode_return=np.asarray(episode_return, dtype=np.float64),
        episode_success=np.asarray(metadata["episode_success"], dtype=bool),
        anchor_obs=_text_column(metadata["anchor_obs"], n),
        action_text=_text_column(metadata["action_text"], n),
        response_text=_text_column(metadata.get(RESPONSE_TEXT_KEY), n),
    )


def _text_column(texts: Sequence[str] | None, n: int) -> np.ndarray:
    """An object array of n Python strings (None -> "")."""
    if texts is None:
        return np.full(n, "", dtype=object)
    return np.asarray(["" if text is None else str(text) for text in texts], dtype=object)


# ---------------------------------------------------------------------------------------------------------------
# Grouping helpers: labels -> contiguous ids -> per-group reductions with np.bincount.
# ---------------------------------------------------------------------------------------------------------------


def contiguous_ids(labels: np.ndarray) -> np.ndarray:
    """Map labels (n,) to ids 0..G-1 in order of first appearance. Returns int64 (n,)."""
    labels = np.asarray(labels)
    if labels.dtype == object:
        # Hashing is O(n) and ~4x faster than np.unique, whose sort compares Python objects one by one.
        index: dict = {}
        return np.fromiter((index.setdefault(label, len(index)) for label in labels), np.int64, len(labels))
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first_row, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first_row), dtype=np.int64)
    rank[np.argsort(first_row, kind="stable")] = np.arange(len(first_row))
    return rank[inverse.reshape(-1)]


def combine_ids(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Contiguous ids of the pairs (outer[i], inner[i]), both int (n,), in order of first appearance."""
    if len(outer) == 0:
        return np.zeros(0, dtype=np.int64)
    return contiguous_ids(outer * (int(inner.max()) + 1) + inner)


def group_sum(values: np.ndarray, ids: np.ndarray, num_groups: int | None = None) -> np.ndarray:
    """Per-group sums of `values` (n,) by `ids` (n,). Returns (G,) float64."""
    return np.bincount(ids, weights=values, minlength=num_groups or 0).astype(np.float64)


def group_count(ids: np.ndarray, num_groups: int | None = None) -> np.ndarray:
    """Rows per group. Returns (G,) int64."""
    return np.bincount(ids, minlength=num_groups or 0)


def group_mean_std(values: np.ndarray, ids: np.ndarray, num_groups: int | None = None):
    """Per-group mean and unbiased (n-1) std of `values` (n,). Returns (mean, std, count), each (G,).

    std is NaN-free: groups of one row get std 0 (callers apply their singleton convention).
    """
    count = group_count(ids, num_groups)
    mean = group_sum(values, ids, len(count)) / np.maximum(count, 1)
    centred = values - mean[ids]
    sq = group_sum(centred * centred, ids, len(count))
    std = np.sqrt(sq / np.maximum(count - 1, 1))
    return mean, std, count


def group_first_row(ids: np.ndarray, num_groups: int | None = None) -> np.ndarray:
    """Index of each group's first row in row order. Returns (G,) int64."""
    num_groups = int(ids.max()) + 1 if num_groups is None else num_groups
    first = np.full(num_groups, len(ids), dtype=np.int64)
    np.minimum.at(first, ids, np.arange(len(ids)))
    return first


def trajectory_layout(traj_ids: np.ndarray, step_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time position of each row inside its trajectory.

    traj_ids: contiguous trajectory ids (n,); step_index: (n,). Returns (position (n,), length per trajectory (T,)):
    position 0 is the earliest step; ties in step_index keep row order.
    """
    order = np.lexsort((np.arange(len(traj_ids)), step_index, traj_ids))
    lengths = group_count(traj_ids)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    position = np.empty(len(traj_ids), dtype=np.int64)
    position[order] = np.arange(len(traj_ids)) - starts[traj_ids[order]]
    return position, lengths


def discounted_returns(rewards: np.ndarray, traj_ids: np.ndarray, position: np.ndarray, gamma: float) -> np.ndarray:
    """R_t = sum_{k>=t} gamma^(k-t) r_k inside each trajectory.

    rewards, traj_ids, position: (n,). Returns (n,) float64. One vectorised pass per time step (<= longest
    trajectory), over all trajectories at once.
    """
    if len(rewards) == 0:
        return np.zeros(0)
    num_traj = int(traj_ids.max()) + 1
    grid = np.zeros((num_traj, int(position.max()) + 2))
    grid[traj_ids, position] = rewards
    for t in range(grid.shape[1] - 2, -1, -1):
        grid[:, t] += gamma * grid[:, t + 1]
    return grid[traj_ids, position]
