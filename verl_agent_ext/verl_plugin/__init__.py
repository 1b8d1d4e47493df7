"""verl plugin entry point (group `verl.plugins`): `import verl` imports this module in every verl process.

Importing it registers our advantage estimators (`gigpo`, `scpo`, `sspo`/`3spo`, `empg`, `istar`) in verl's
registry, registers the environment agent loop (`verl_agent_ext_env`) and patches the V1 trainer: iStar's PRM
worker group (`istar_prm`) and the step-metadata hook (`step_metadata`), in that order (the PRM's wrapper runs
inside the hook's); it also registers the `cpu` platform (`VERL_PLATFORM=cpu`, `cpu_platform`) and the
`transformers` rollout backend (`rollout_registry`, `hf_rollout`), and shows verl's per-request log warnings
once per process (`quiet.REPEATED_LOG_MESSAGES`).
"""

from verl_agent_ext.quiet import dedupe_repeated_logs
from verl_agent_ext.verl_plugin import (
    agent_loop_registry,  # noqa: F401  (registers verl_agent_ext_env)
    cpu_platform,  # noqa: F401  (registers the cpu platform, FSDP engines on cpu, the process-group patch)
    estimators,  # noqa: F401  (registers gigpo / scpo / sspo / 3spo / empg / istar)
    istar_prm,  # noqa: F401  (iStar's PRM worker group; patches the V1 trainer before step_metadata does)
    rollout_registry,  # noqa: F401  (registers the transformers rollout backend)
    step_metadata,  # noqa: F401  (patches the V1 trainer when verl imports it)
)

dedupe_repeated_logs()
