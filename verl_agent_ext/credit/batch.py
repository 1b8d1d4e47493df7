"""A batch of step samples (one row per env step of one trajectory) and vectorised grouping helpers.

Every estimator in `credit/` reads a `StepBatch` and returns one scalar per row. Rows may come in any order:
groups are found by label, the time order inside a trajectory comes from `step_index`.
"""

from __future__ import annotations

import numbers
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
        rewards = float_column("step_reward", step_reward)
        traj_arr = np.asarray(traj_uid, dtype=object)
        if episode_return is None:
            traj_ids = contiguous_ids(traj_arr)
            episode_return = group_sum(rewards, traj_ids)[traj_ids]
        returns = float_column("episode_return", episode_return)
        batch = cls(
            uid=np.asarray(uid, dtype=object),
            traj_uid=traj_arr,
            step_index=step_index_column(step_index),
            step_reward=rewards,
            is_action_valid=np.ones(n, dtype=bool)
            if is_action_valid is None
            else bool_column("is_action_valid", is_action_valid),
            episode_return=returns,
            episode_success=returns > 0 if episode_success is None else bool_column("episode_success", episode_success),
            anchor_obs=_text_column(anchor_obs, n),
            action_text=_text_column(action_text, n),
            response_text=_text_column(response_text, n),
        )
        check_structure(batch)
        refuse_nonfinite(batch, {"step_reward": batch.step_reward, "episode_return": batch.episode_return})
        return batch

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


NONFINITE_POLICIES = ("raise", "mask")
"""What the estimators do with a trajectory whose reward, return or per-step input is NaN, inf or None: refuse the
batch (`raise`, the default) or give that trajectory's rows advantage 0 and count them (`mask`)."""

TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


def step_batch_from_metadata(metadata: Mapping[str, np.ndarray], episode_return: np.ndarray) -> StepBatch:
    """Build a StepBatch from the estimator contract's `non_tensor_batch` keys, checked (`checked_step_batch`).

    `episode_return` (shape (n,)) is the per-row episode return (verl: `token_level_rewards.sum(-1)`).
    Raises ValueError naming every missing key, and on any non-finite reward or return.
    """
    return checked_step_batch(metadata, episode_return).batch


@dataclass(frozen=True)
class CheckedBatch:
    """The rows an estimator may use, after the contract check of `checked_step_batch`.

    batch: the kept rows (all rows unless trajectories were masked); metadata: every (n,) column of the input
    restricted to the kept rows; rows: their indices (k,) in the input; size: the input's row count n;
    masked_trajectories: traj_uids left out (their rows get advantage 0).
    """

    batch: StepBatch
    metadata: dict[str, np.ndarray]
    rows: np.ndarray
    size: int
    masked_trajectories: tuple = ()

    def scatter(self, values: np.ndarray) -> np.ndarray:
        """Per kept row values (k,) -> (n,) float64 in the input's row order, 0 on masked rows."""
        out = np.zeros(self.size)
        out[self.rows] = values
        return out

    def diagnostics(self, prefix: str) -> dict[str, float]:
        """How many trajectories and rows were masked (0 when none)."""
        return {
            f"{prefix}/masked_trajectories": float(len(self.masked_trajectories)),
            f"{prefix}/masked_rows": float(self.size - len(self.rows)),
        }


def checked_step_batch(
    metadata: Mapping[str, np.ndarray],
    episode_return: np.ndarray,
    *,
    float_keys: tuple[str, ...] = (),
    active: np.ndarray | None = None,
    on_nonfinite: str = "raise",
    estimator: str = "step-level credit",
) -> CheckedBatch:
    """The contract check at the entry of every step-level estimator: one StepBatch, or a one-line ValueError.

    metadata: `non_tensor_batch` with REQUIRED_METADATA_KEYS, each (n,); episode_return: (n,) per-row return.
    float_keys: further per-row numeric keys the estimator reads (step_entropy, prm_step_reward), checked for
    non-finite values on `active` rows ((n,) bool, default all). Flags are parsed strictly ("False" is false),
    step_index must be a non-negative integer, a traj_uid belongs to one uid, texts become valid UTF-8.
    Non-finite (NaN, inf, None) rewards, returns or float_keys values: `on_nonfinite="raise"` refuses the batch
    naming the key, the row count and the first trajectories; "mask" drops those trajectories (with their
    branches `<traj_uid>/...`) from the batch, for the caller to give them advantage 0 (`CheckedBatch.scatter`).
    """
    _check_choice_of(f"{estimator}.on_nonfinite", on_nonfinite, NONFINITE_POLICIES)
    missing = [key for key in REQUIRED_METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(
            f"step-level credit assignment needs non_tensor_batch keys {missing} (missing), "
            f"required: {list(REQUIRED_METADATA_KEYS)}. They are filled by the verl_agent_ext agent loop "
            "(one training row per env step) and handed to the estimator by the plugin's trainer hook; "
            "see docs/credit.md."
        )
    n = len(episode_return)
    wrong = {key: len(metadata[key]) for key in (*REQUIRED_METADATA_KEYS, *float_keys) if key in metadata}
    wrong = {key: length for key, length in wrong.items() if length != n}
    if wrong:
        raise ValueError(f"non_tensor_batch columns must have one entry per row ({n}), got lengths {wrong}")
    batch = StepBatch(
        uid=np.asarray(metadata["uid"], dtype=object),
        traj_uid=np.asarray(metadata["traj_uid"], dtype=object),
        step_index=step_index_column(metadata["step_index"]),
        step_reward=float_column("step_reward", metadata["step_reward"]),
        is_action_valid=bool_column("is_action_valid", metadata["is_action_valid"]),
        episode_return=float_column("episode_return (token_level_rewards summed)", episode_return),
        episode_success=bool_column("episode_success", metadata["episode_success"]),
        anchor_obs=_text_column(metadata["anchor_obs"], n),
        action_text=_text_column(metadata["action_text"], n),
        response_text=_text_column(metadata.get(RESPONSE_TEXT_KEY), n),
    )
    check_structure(batch)
    active = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    columns = {"step_reward": batch.step_reward, "episode_return (token_level_rewards summed)": batch.episode_return}
    for key in float_keys:
        if key in metadata:
            columns[key] = np.where(active, float_column(key, metadata[key]), 0.0)
    if on_nonfinite == "raise":
        refuse_nonfinite(batch, columns, estimator)
        bad = np.zeros(n, dtype=bool)
    else:
        bad = _nonfinite_rows(columns)
    masked = _trajectory_family(batch.traj_uid, bad)
    rows = np.flatnonzero(~masked)
    if not masked.any():
        return CheckedBatch(batch, dict(metadata), rows, n)
    kept = {key: _rows_of(value, rows, n) for key, value in metadata.items()}
    masked_ids = tuple(dict.fromkeys(batch.traj_uid[masked].tolist()))
    return CheckedBatch(batch.take(rows), kept, rows, n, masked_ids)


def _rows_of(column: object, rows: np.ndarray, n: int) -> object:
    """A per-row column (n,) restricted to `rows`; anything else as it is."""
    if isinstance(column, np.ndarray | list | tuple) and len(column) == n:
        return np.asarray(column, dtype=object if isinstance(column, list | tuple) else None)[rows]
    return column


def check_structure(batch: StepBatch) -> None:
    """A traj_uid belongs to one uid; raises ValueError naming the first offending trajectories."""
    if len(batch) == 0:
        return
    traj = contiguous_ids(batch.traj_uid)
    group = contiguous_ids(batch.uid)
    low = np.full(traj.max() + 1, np.iinfo(np.int64).max)
    high = np.full(traj.max() + 1, -1)
    np.minimum.at(low, traj, group)
    np.maximum.at(high, traj, group)
    shared = np.flatnonzero(low != high)
    if len(shared):
        names = [str(batch.traj_uid[group_first_row(traj)[t]]) for t in shared[:5]]
        raise ValueError(
            f"traj_uid must belong to one uid (group): {len(shared)} trajectories appear under several uids, "
            f"first {names}; give every rollout a batch-unique traj_uid"
        )


def refuse_nonfinite(batch: StepBatch, columns: Mapping[str, np.ndarray], estimator: str = "") -> None:
    """ValueError on the first column (n,) with NaN/inf/None: the key, the row count, the first trajectories."""
    for key, values in columns.items():
        refuse_nonfinite_labels(estimator, key, values, batch.traj_uid)


def refuse_nonfinite_labels(
    estimator: str, key: str, values: np.ndarray, labels: np.ndarray | None = None, maskable: bool = True
) -> None:
    """ValueError when `values` (n,) has NaN/inf, naming `key`, the row count and the first `labels` (n,)."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    rows = np.flatnonzero(bad)
    names = list(
        dict.fromkeys(str(name) for name in (np.asarray(labels, dtype=object)[rows] if labels is not None else rows))
    )
    who = f"adv_estimator={estimator}: " if estimator else ""
    remedy = (
        f", or set algorithm.{estimator or '<estimator>'}.on_nonfinite=mask to give those trajectories advantage 0"
        if maskable
        else ""
    )
    raise ValueError(
        f"{who}{key} is NaN, inf or None on {len(rows)} of {len(values)} rows (trajectories "
        f"{names[:5]}{' ...' if len(names) > 5 else ''}); fix their source{remedy}"
    )


def _nonfinite_rows(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    bad = np.zeros(len(next(iter(columns.values()))), dtype=bool)
    for values in columns.values():
        bad |= ~np.isfinite(values)
    return bad


def _trajectory_family(traj_uid: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Rows (n,) bool of every trajectory with a bad row, and of the branches `<traj_uid>/...` forked from it."""
    if not bad.any():
        return bad
    names = {str(name) for name in traj_uid[bad]}
    prefixes = tuple(f"{name}/" for name in names)
    return np.fromiter(
        (str(name) in names or str(name).startswith(prefixes) for name in traj_uid), dtype=bool, count=len(bad)
    )


def float_column(key: str, values: Sequence) -> np.ndarray:
    """(n,) float64: numbers as they are, None as NaN (refused or masked later); text or other objects raise."""
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        return array.astype(np.float64).reshape(-1)
    if array.dtype.kind == "O":
        array = array.reshape(-1)
        kinds = {type(value) for value in array}  # a handful of types: check them, not every value
        wrong = [kind for kind in kinds if kind is not type(None) and not issubclass(kind, numbers.Real)]
        if wrong:
            row = next(i for i, value in enumerate(array) if type(value) in wrong)
            raise ValueError(f"{key} must hold numbers, got {array[row]!r} ({wrong[0].__name__}) at row {row}")
        if type(None) in kinds:
            array = np.asarray([np.nan if value is None else value for value in array], dtype=object)
        return array.astype(np.float64)
    raise ValueError(f"{key} must hold numbers, got an array of {array.dtype} (e.g. {array.reshape(-1)[:1].tolist()})")


def bool_column(key: str, values: Sequence) -> np.ndarray:
    """(n,) bool, parsed strictly: bools, 0/1, and the strings true/false/1/0/yes/no (any case); others raise."""
    array = np.asarray(values).reshape(-1)
    if array.dtype == bool:
        return array
    if array.dtype.kind == "O" and {type(value) for value in array} <= {bool, np.bool_}:
        return array.astype(bool)
    return np.fromiter((strict_bool(key, value, row) for row, value in enumerate(array)), bool, array.size)


def strict_bool(key: str, value: object, row: int | None = None) -> bool:
    """One flag parsed strictly (see `bool_column`); a ValueError names the key (and row)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    where = f" at row {row}" if row is not None else ""
    raise ValueError(f"{key} must be a boolean (true/false), got {value!r}{where}")


def step_index_column(values: Sequence) -> np.ndarray:
    """(n,) int64 step indices: integers (or integral floats) >= 0; others raise naming the first bad row."""
    array = float_column("step_index", values) if np.asarray(values).dtype.kind not in "iu" else np.asarray(values)
    array = array.reshape(-1)
    bad = ~np.isfinite(array) | (array < 0) | (array != np.round(array)) if array.dtype.kind == "f" else array < 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"step_index must be an integer >= 0 on every row, got {array[row].item()!r} at row {row}")
    return array.astype(np.int64)


def _check_choice_of(name: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not a valid option; valid: {list(valid)}")


def _text_column(texts: Sequence[str] | None, n: int) -> np.ndarray:
    """An object array of n Python strings (None -> ""); lone surrogates become U+FFFD (valid UTF-8)."""
    if texts is None:
        return np.full(n, "", dtype=object)
    return np.asarray(["" if text is None else _valid_utf8(str(text)) for text in texts], dtype=object)


def _valid_utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


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


@dataclass(frozen=True)
class TrajectoryIds:
    """Row ids every step-level estimator needs: group (n,) contiguous uid ids; traj (n,) contiguous traj_uid ids;
    position (n,) time position inside the trajectory; traj_length (T,) steps per trajectory."""

    group: np.ndarray
    traj: np.ndarray
    position: np.ndarray
    traj_length: np.ndarray


def trajectory_ids(batch: StepBatch) -> TrajectoryIds:
    """Group, trajectory and time ids of the batch's rows (computed once; `gigpo.step_layout` adds step groups)."""
    traj = contiguous_ids(batch.traj_uid)
    position, traj_length = trajectory_layout(traj, batch.step_index)
    return TrajectoryIds(contiguous_ids(batch.uid), traj, position, traj_length)


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (a centred value over a zero spread: all equal)."""
    zero = denominator == 0
    return np.where(zero, 0.0, numerator) / np.where(zero, 1.0, denominator)


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
