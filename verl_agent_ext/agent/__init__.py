"""The multi-turn environment agent loop for verl: one `AgentLoopOutput` per environment step.

Modules: `config` (the `env:` section of the trainer config), `prompt` (history window on token ids),
`env_sessions` (async access to environments, never blocking the event loop), `env_agent_loop` (the
`AgentLoopBase` subclass and `build_agent_loop`), `prepare_data_cli` (`verl-agent-ext prepare-data`).
"""

AGENT_LOOP_NAME = "verl_agent_ext_env"
"""The name rows use in their `agent_name` column (or `rollout.agent.default_agent_loop`)."""

AGENT_LOOP_TARGET = "verl_agent_ext.agent.env_agent_loop.EnvAgentLoop"

STEP_METADATA_KEYS = (
    "traj_uid",
    "step_index",
    "anchor_obs",
    "action_text",
    "step_reward",
    "is_action_valid",
    "episode_success",
    "next_anchor_obs",
)
"""Per-step extra_fields the step-level estimators read (with verl's `uid`): the estimator contract."""

EPISODE_KEYS = ("task_type", "episode_length", "episode_truncated")
"""Per-step extra_fields the plugin's episode metrics read."""
