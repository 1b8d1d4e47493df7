"""EMPG (arXiv 2509.09265): a base advantage modulated by the policy's entropy at each step.

H_t: mean token entropy of step t's response (the `step_entropy` metadata key). Over the batch's steps:

    H~_t  = (H_t - min H) / (max H - min H + eps)                  batch min-max         (Eq. 12)
    g_t   = exp(-k H~_t) / (mean_batch exp(-k H~) + eps)           batch mean 1          (Eq. 10)
    f_t   = exp(-k' H~_{t+1}) if step t+1 is in the trajectory, else 0                  (Eq. 11)
    A_mod = g_t * A_base + zeta * f_t                                                   (Eq. 8)
    A_t   = A_mod - mean_batch A_mod                               centred, no std      (Eq. 7)

Confident steps (low entropy) get their base advantage amplified, uncertain ones attenuated; a step that leads to
a confident next step earns an unsigned bonus. Equation numbers follow the authors' project-page pseudocode.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from verl_agent_ext.credit.batch import StepBatch, safe_divide, trajectory_ids
from verl_agent_ext.credit.config import EMPGConfig, empg_config_from
from verl_agent_ext.credit.episode import compute_episode_level
from verl_agent_ext.credit.gigpo import compute_gigpo
from verl_agent_ext.credit.result import CreditResult
from verl_agent_ext.credit.scpo import compute_scpo

STEP_ENTROPY_KEY = "step_entropy"
EMPG_METADATA_KEYS = (STEP_ENTROPY_KEY,)
"""Per-row keys EMPG reads beyond REQUIRED_METADATA_KEYS."""

STEP_ENTROPY_SOURCES = (
    "verl's V1 trainer: the plugin's step-metadata hook reads it from the old-log-prob pass (`entropy`, which "
    "algorithm.rollout_correction.bypass_mode=True skips); train-local: its old-log-prob pass; Python API: pass "
    "the mean token entropy of each step's response tokens at the rollout temperature, shape (n,)"
)


def step_entropy_from_metadata(metadata: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The `step_entropy` column (n,) float64 of `non_tensor_batch`; a missing key raises naming its sources."""
    if STEP_ENTROPY_KEY not in metadata:
        raise ValueError(
            f"adv_estimator=empg needs non_tensor_batch key {STEP_ENTROPY_KEY!r} (missing): the mean token entropy "
            f"of each step's response. Sources: {STEP_ENTROPY_SOURCES}. See docs/empg.md."
        )
    entropy = np.asarray(metadata[STEP_ENTROPY_KEY], dtype=np.float64)
    if entropy.shape != (n,):
        raise ValueError(f"non_tensor_batch[{STEP_ENTROPY_KEY!r}] must have shape ({n},), got {entropy.shape}")
    return entropy


def next_step_rows(traj_ids: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Row of step t+1 of each row's trajectory, -1 for a trajectory's last step. int64 (n,).

    traj_ids: contiguous trajectory ids (n,); position: time position inside the trajectory (n,), 0..L-1.
    """
    order = np.lexsort((position, traj_ids))
    following = np.full(len(traj_ids), -1, dtype=np.int64)
    same = traj_ids[order[1:]] == traj_ids[order[:-1]]
    following[order[:-1][same]] = order[1:][same]
    return following


def entropy_modulation(
    step_entropy: np.ndarray, next_row: np.ndarray, active: np.ndarray, config: EMPGConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(g, f): the confidence scaling g_t and the future-clarity term f_t (0 without a step t+1), both (n,).

    step_entropy: H (n,); next_row: row of step t+1 or -1 (n,); active: rows that enter the batch statistics
    (n,) bool. Inactive rows (verl's padding rows: no response token) get g = f = 0 and are no one's step t+1.
    """
    g = np.zeros(len(step_entropy))
    f = np.zeros(len(step_entropy))
    if not active.any():
        return g, f
    h = step_entropy[active]
    normalised = np.zeros(len(step_entropy))
    normalised[active] = safe_divide(h - h.min(), np.full(len(h), h.max() - h.min() + config.epsilon))
    scale = np.exp(-config.k * normalised[active])
    g[active] = scale / (scale.mean() + config.epsilon)
    has_next = active & (next_row >= 0)
    has_next[has_next] = active[next_row[has_next]]
    f[has_next] = np.exp(-config.k_next * normalised[next_row[has_next]])
    return g, f


def base_advantage(batch: StepBatch, config: EMPGConfig) -> CreditResult:
    """A_base: episode-level GRPO (the paper's), or the full GiGPO / SCPO advantage."""
    if config.base == "gigpo":
        return compute_gigpo(batch, config.gigpo)
    if config.base == "scpo":
        return compute_scpo(batch, config.scpo)
    gigpo = config.gigpo
    return compute_episode_level(
        batch,
        over=gigpo.episode_norm_over,
        use_std=config.norm_by_std,
        invalid_action_penalty=gigpo.invalid_action_penalty,
        epsilon=gigpo.epsilon,
    )


def compute_empg(
    batch: StepBatch,
    step_entropy: np.ndarray,
    config: EMPGConfig | None = None,
    active: np.ndarray | None = None,
) -> CreditResult:
    """EMPG advantages of every step row.

    batch: n step samples in any row order. step_entropy: (n,) mean token entropy of each step's response (nats).
    config: EMPGConfig or verl's `algorithm` section (None: defaults). active: (n,) bool, rows that enter the
    batch statistics (default all); the others get advantage 0. The base estimator's channels, returns, groups
    and diagnostics are kept in the result; `advantage` is the modulated, centred A.
    """
    config = empg_config_from(config)
    n = len(batch)
    entropy = np.asarray(step_entropy, dtype=np.float64)
    active = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    if entropy.shape != (n,) or active.shape != (n,):
        raise ValueError(f"step_entropy and active must have shape ({n},), got {entropy.shape} and {active.shape}")
    if not np.isfinite(entropy[active]).all():
        raise ValueError("step_entropy has non-finite values on steps with response tokens")
    base = base_advantage(batch, config)
    ids = trajectory_ids(batch)
    g, f = entropy_modulation(entropy, next_step_rows(ids.traj, ids.position), active, config)
    modulated = g * base.advantage + config.zeta * f
    shift = float(modulated[active].mean()) if active.any() else 0.0
    advantage = np.where(active, modulated - shift, 0.0)
    diagnostics = dict(base.diagnostics)
    if active.any():
        h = entropy[active]
        diagnostics.update(
            {
                "empg/step_entropy_mean": float(h.mean()),
                "empg/step_entropy_min": float(h.min()),
                "empg/step_entropy_max": float(h.max()),
                "empg/g_min": float(g[active].min()),
                "empg/g_max": float(g[active].max()),
                "empg/bonus_mean": float(config.zeta * f[active].mean()),
                "empg/centring_shift": shift,
            }
        )
    return CreditResult(
        advantage=advantage,
        episode_advantage=base.episode_advantage,
        step_advantage=base.step_advantage,
        episode_score=base.episode_score,
        step_return=base.step_return,
        step_group=base.step_group,
        credit=base.credit,
        diagnostics=diagnostics,
    )
