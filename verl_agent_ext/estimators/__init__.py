"""The step-level estimators as verl functions (`registry`), shared by verl's trainer and `train-local`.

Both trainers import this package; it imports `credit/` (the math) and `agent/` (3SPO's state-score store) and
patches nothing in verl: registering the names in verl's ADV_ESTIMATOR_REGISTRY is an explicit call,
`register_estimators()`, which the verl plugin makes on import.
"""

from verl_agent_ext.estimators.registry import (
    ALIASES,
    REGISTERED_NAMES,
    STEP_ESTIMATORS,
    VERL_FUNCTIONS,
    compute_step_advantage,
    estimator_name,
    estimator_taking_metadata,
    extra_metadata_keys,
    last_diagnostics,
    register_estimators,
)

__all__ = [
    "ALIASES",
    "REGISTERED_NAMES",
    "STEP_ESTIMATORS",
    "VERL_FUNCTIONS",
    "compute_step_advantage",
    "estimator_name",
    "estimator_taking_metadata",
    "extra_metadata_keys",
    "last_diagnostics",
    "register_estimators",
]
