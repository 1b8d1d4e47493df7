"""verl plugin entry point (group `verl.plugins`): `import verl` imports this module in every verl process.

Importing it registers our advantage estimators (`gigpo`, `scpo`) in verl's registry, registers the environment
agent loop (`verl_agent_ext_env`) and installs the step-metadata hook of the V1 trainer (`step_metadata`); it also
registers the `cpu` platform (`VERL_PLATFORM=cpu`, `cpu_platform`) and the `transformers` rollout backend
(`rollout_registry`, `hf_rollout`).
"""

from verl_agent_ext.verl_plugin import (
    agent_loop_registry,  # noqa: F401  (registers verl_agent_ext_env)
    cpu_platform,  # noqa: F401  (registers the cpu platform, FSDP engines on cpu, the process-group patch)
    estimators,  # noqa: F401  (registers gigpo / scpo)
    rollout_registry,  # noqa: F401  (registers the transformers rollout backend)
    step_metadata,  # noqa: F401  (patches the V1 trainer when verl imports it)
)
