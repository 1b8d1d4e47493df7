"""The multi-turn environment agent loop for verl: one `AgentLoopOutput` per environment step.

Modules: `config` (the `env:` section of the trainer config), `prompt` (history window on token ids),
`env_sessions` (async access to environments, never blocking the event loop), `env_agent_loop` (the
`AgentLoopBase` subclass and `build_agent_loop`), `prepare_data_cli` (`verl-agent-ext prepare-data`).
"""

AGENT_LOOP_NAME = "verl_agent_ext_env"
"""The name rows use in their `agent_name` column (or `rollout.agent.default_agent_loop`)."""

AGENT_LOOP_TARGET = "verl_agent_ext.agent.env_agent_loop.EnvAgentLoop"
