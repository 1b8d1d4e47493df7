"""What every estimator returns: per-row advantages and their ingredients, plus diagnostics to log."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CreditResult:
    """Per-row outputs of a step-level estimator, each of shape (n,) in the batch's row order.

    advantage: A = A^E + w * A^S, the scalar broadcast over the step's response tokens.
    episode_advantage / step_advantage: the two channels (A^S is 0 for episode-level estimators).
    episode_score: episode return minus the invalid-action penalty of this row.
    step_return: discounted return of the step (penalised); for SCPO the shaped return R + alpha * c.
    step_group: contiguous anchor-state group ids (first-appearance order); -1 where not computed.
    credit: SCPO soft credit c in [0, 1] (0 for other estimators).
    diagnostics: scalar floats for the trainer's metrics (keys like "gigpo/step_group_size_mean").
    """

    advantage: np.ndarray
    episode_advantage: np.ndarray
    step_advantage: np.ndarray
    episode_score: np.ndarray
    step_return: np.ndarray
    step_group: np.ndarray
    credit: np.ndarray
    diagnostics: dict[str, float] = field(default_factory=dict)
