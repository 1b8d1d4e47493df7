"""The installed entry point really loads: `import verl` alone registers gigpo, scpo, empg and istar (fresh)."""

import subprocess
import sys
from importlib.metadata import entry_points

SCRIPT = """
import sys
import verl
from verl.trainer.ppo.core_algos import get_adv_estimator_fn as g
assert 'verl_agent_ext.verl_plugin' in sys.modules, 'plugin not imported by verl'
print(g('scpo').__name__, g('gigpo').__name__, g('empg').__name__, g('istar').__name__)
"""


def test_entry_point_declared():
    names = {ep.value for ep in entry_points(group="verl.plugins")}
    assert "verl_agent_ext.verl_plugin" in names


def test_import_verl_alone_registers_estimators(tmp_path):
    env_cwd = tmp_path  # outside the checkout, so only the installed distribution can provide the plugin
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=env_cwd, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == [
        "compute_scpo_advantage",
        "compute_gigpo_advantage",
        "compute_empg_advantage",
        "compute_istar_advantage",
    ]


def test_registration_is_idempotent_for_a_second_copy_of_the_module(monkeypatch):
    import importlib.util

    from verl.trainer.ppo import core_algos

    import verl_agent_ext.estimators.registry as registry

    spec = importlib.util.spec_from_file_location("registry_second_copy", registry.__file__)
    copy = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, copy)  # dataclasses look their module up there
    spec.loader.exec_module(copy)
    copy.register_estimators()  # registers again: must neither raise nor replace the first registration
    for name in registry.REGISTERED_NAMES:
        assert core_algos.get_adv_estimator_fn(name) is registry.VERL_FUNCTIONS[name]
