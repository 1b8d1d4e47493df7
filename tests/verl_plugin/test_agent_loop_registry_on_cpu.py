"""The env agent loop is reachable by name in verl's registry and through the shipped agent-loop YAML."""

from __future__ import annotations

from importlib import resources

from omegaconf import OmegaConf

from verl_agent_ext.agent import AGENT_LOOP_NAME, AGENT_LOOP_TARGET


def test_plugin_registers_the_agent_loop():
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

    assert _agent_loop_registry[AGENT_LOOP_NAME] == {"_target_": AGENT_LOOP_TARGET}


def test_shipped_yaml_names_an_importable_agent_loop():
    import hydra.utils
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase

    path = resources.files("verl_agent_ext.agent") / "agent_loops.yaml"
    entries = OmegaConf.load(str(path))
    assert [entry.name for entry in entries] == [AGENT_LOOP_NAME]
    loop_class = hydra.utils.get_class(entries[0]._target_)
    assert issubclass(loop_class, AgentLoopBase)
    assert f"{loop_class.__module__}.{loop_class.__qualname__}" == AGENT_LOOP_TARGET
