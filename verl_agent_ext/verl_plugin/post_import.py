"""Run a callback when a module is imported (at once if it already is), without importing it ourselves.

The plugin is loaded on every `import verl`, in every process; importing verl's trainer or agent-loop modules
there would cost seconds in processes that never use them. Instead the plugin asks to be called when verl
imports them, through one finder at the front of `sys.meta_path` that wraps the module's loader.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

Callback = Callable[[ModuleType], None]

_pending: dict[str, list[Callback]] = {}
_lock = threading.RLock()


def when_imported(module_name: str, callback: Callback) -> None:
    """Call `callback(module)` right after `module_name` is executed; now if it is already imported."""
    with _lock:
        module = sys.modules.get(module_name)
        if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
            _pending.setdefault(module_name, []).append(callback)
            _install_finder()
            return
    _call(callback, module)


def _call(callback: Callback, module: ModuleType) -> None:
    """Run one callback; a failing callback is logged and must never break verl's own import."""
    try:
        callback(module)
    except Exception:
        logger.exception("verl_agent_ext: post-import callback %r for %s failed", callback, module.__name__)


class _CallbackLoader(importlib.abc.Loader):
    """Delegates to the real loader, then runs the callbacks registered for the module."""

    def __init__(self, loader: importlib.abc.Loader, module_name: str):
        self._loader = loader
        self._module_name = module_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with _lock:
            callbacks = _pending.pop(self._module_name, [])
        for callback in callbacks:
            _call(callback, module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... of the real loader
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched module it asks the other finders and wraps the loader."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        with _lock:
            if fullname not in _pending:
                return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _CallbackLoader(spec.loader, fullname)
                return spec
        return None


_FINDER = _PostImportFinder()


def _install_finder() -> None:
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
