"""verl plugin entry point (group `verl.plugins`): `import verl` imports this module in every verl process.

Importing it registers our advantage estimators (`gigpo`, `scpo`) in verl's registry, registers the environment
agent loop (`verl_agent_ext_env`) and installs the step-metadata hook of the V1 trainer (`step_metadata`).
"""

from verl_agent_ext.verl_plugin import (
    agent_loop_registry,  # noqa: F401  (registers verl_agent_ext_env)
    estimators,  # noqa: F401  (registers gigpo / scpo)
    step_metadata,  # noqa: F401  (patches the V1 trainer when verl imports it)
)
