"""when_imported: callbacks run right after a module executes, at once if already imported, never break it."""

from __future__ import annotations

import importlib
import sys

import pytest

from verl_agent_ext.verl_plugin.post_import import when_imported


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [name for name in sys.modules if name.startswith("vae_watched")]:
        del sys.modules[name]


def test_callback_runs_after_the_module_executes(module_dir):
    (module_dir / "vae_watched_a.py").write_text("VALUE = 41\n")
    seen = []
    when_imported("vae_watched_a", lambda module: seen.append(module.VALUE + 1))
    assert seen == []
    module = importlib.import_module("vae_watched_a")
    assert seen == [42]
    assert module.__loader__.get_filename("vae_watched_a").endswith("vae_watched_a.py")  # real loader reachable


def test_callback_runs_at_once_for_an_imported_module(module_dir):
    (module_dir / "vae_watched_b.py").write_text("VALUE = 1\n")
    importlib.import_module("vae_watched_b")
    seen = []
    when_imported("vae_watched_b", lambda module: seen.append(module.VALUE))
    assert seen == [1]


def test_failing_callback_does_not_break_the_import(module_dir, caplog):
    (module_dir / "vae_watched_c.py").write_text("VALUE = 2\n")

    def broken(module):
        raise RuntimeError("patch target moved")

    when_imported("vae_watched_c", broken)
    assert importlib.import_module("vae_watched_c").VALUE == 2
    assert "patch target moved" in caplog.text
