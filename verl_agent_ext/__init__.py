"""verl-agent-ext: step-level credit assignment for LLM agents, as a verl plugin."""

__version__ = "0.1.0"
