"""Registers the step-level estimators (`verl_agent_ext.estimators.REGISTERED_NAMES`) in verl's registry on import.

The table, the verl functions and `compute_step_advantage` live in `verl_agent_ext.estimators` (shared with
`train-local`); this module is the plugin's one line that puts them into verl's `ADV_ESTIMATOR_REGISTRY`.
"""

from verl_agent_ext.estimators import register_estimators

register_estimators()
