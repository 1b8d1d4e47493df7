"""Step-level credit assignment over a `StepBatch`: episode-level, GiGPO, SCPO, EMPG, iStar. Pure numpy/torch."""

from verl_agent_ext.credit.batch import REQUIRED_METADATA_KEYS, StepBatch, step_batch_from_metadata
from verl_agent_ext.credit.config import (
    EMPGConfig,
    GiGPOConfig,
    SCPOConfig,
    empg_config_from,
    gigpo_config_from,
    scpo_config_from,
)
from verl_agent_ext.credit.empg import EMPG_METADATA_KEYS, compute_empg, step_entropy_from_metadata
from verl_agent_ext.credit.episode import compute_episode_level
from verl_agent_ext.credit.gigpo import compute_gigpo
from verl_agent_ext.credit.istar import PRM_STEP_REWARD_KEY, IStarConfig, compute_istar, istar_config_from
from verl_agent_ext.credit.result import CreditResult
from verl_agent_ext.credit.scpo import compute_scpo

__all__ = [
    "EMPG_METADATA_KEYS",
    "EMPGConfig",
    "REQUIRED_METADATA_KEYS",
    "CreditResult",
    "GiGPOConfig",
    "IStarConfig",
    "PRM_STEP_REWARD_KEY",
    "SCPOConfig",
    "StepBatch",
    "compute_empg",
    "compute_episode_level",
    "compute_gigpo",
    "compute_istar",
    "compute_scpo",
    "empg_config_from",
    "gigpo_config_from",
    "istar_config_from",
    "scpo_config_from",
    "step_batch_from_metadata",
    "step_entropy_from_metadata",
]
