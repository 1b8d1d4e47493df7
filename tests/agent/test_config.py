"""The env config section: defaults, OmegaConf input, clear errors listing the valid names."""

import pytest
from omegaconf import OmegaConf

from verl_agent_ext.agent.config import EnvLoopConfig, EnvPoolConfig


def test_defaults_and_dictconfig_input():
    assert EnvLoopConfig.from_mapping(None) == EnvLoopConfig()
    section = OmegaConf.create({"name": "webshop", "max_steps": 15, "pool": {"backend": "inprocess", "num_envs": 4}})
    config = EnvLoopConfig.from_mapping(section)
    assert (config.name, config.max_steps) == ("webshop", 15)
    assert config.pool == EnvPoolConfig(backend="inprocess", num_envs=4)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"name": "minecraft"}, r"valid names: \['alfworld', 'webshop'\]"),
        ({"max_step": 5}, r"unknown keys in the env config section: \['max_step'\]"),
        ({"env_kwargs": {"nethack": {}}}, "names unknown environments"),
        ({"pool": {"backend": "threads"}}, r"valid names: \['inprocess', 'ray'\]"),
        ({"pool": {"size": 3}}, r"unknown keys in the env.pool config section"),
        ({"max_steps": 0}, "must be >= 1"),
    ],
)
def test_bad_sections_fail_clearly(section, message):
    with pytest.raises(ValueError, match=message):
        EnvLoopConfig.from_mapping(section)
