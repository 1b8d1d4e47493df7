"""User errors of every `verl-agent-ext` subcommand: one `error:` line on stderr, exit code 2, no traceback;
`--debug` shows the traceback; third-party noise is filtered unless `-v`."""

import subprocess
import sys
import warnings

import pytest

from verl_agent_ext import quiet
from verl_agent_ext.cli import main
from verl_agent_ext.errors import UserError

USER_ERRORS = {
    "play: missing games folder": (["play", "--env", "alfworld", "--games", "/nonexistent"], "--games /nonexistent"),
    "play: unknown env": (["play", "--env", "nope"], "valid names: ['alfworld', 'webshop']"),
    "play: bad episodes": (["play", "--env", "webshop", "--episodes", "0"], "--episodes must be at least 1"),
    "play: unknown split": (["play", "--env", "webshop", "--split", "nosuch"], "unknown WebShop split 'nosuch'"),
    "play: unknown policy": (["play", "--env", "webshop", "--policy", "bogus"], "unknown policy 'bogus'"),
    "prepare-data: unwritable out": (["prepare-data", "--env", "webshop", "--out", "{ro}/x"], "not a writable folder"),
    "prepare-data: unknown split": (
        ["prepare-data", "--env", "alfworld", "--val-split", "foo", "--out", "{tmp}/pd"],
        "--val-split 'foo' is not an ALFWorld split",
    ),
    "alfworld-generate: bad count": (["alfworld-generate", "--out", "{tmp}/g", "--per-type", "0"], "--per-type"),
    "alfworld-generate: unknown rooms": (["alfworld-generate", "--out", "{tmp}/g", "--rooms", "mars"], "room set"),
    "alfworld-generate: unwritable out": (["alfworld-generate", "--out", "{ro}/g"], "not a writable folder"),
    "webshop-generate: bad count": (["webshop-generate", "--out", "{tmp}/w", "--products", "0"], "--products"),
    "webshop-generate: unwritable out": (["webshop-generate", "--out", "{ro}/w"], "not a writable folder"),
    "train-local: unknown estimator": (["train-local", "--estimator", "foo", "--out", "{tmp}/t"], "registered: ["),
    "train-local: bad value": (["train-local", "--iterations", "0", "--out", "{tmp}/t"], "iterations must be >= 1"),
    "train-local: missing model folder": (
        ["train-local", "--model", "/nonexistent/model", "--out", "{tmp}/t"],
        "model folder /nonexistent/model does not exist",
    ),
    "train-local: unwritable out": (["train-local", "--out", "{ro}/t"], "--out-dir"),
    "expert-data: unknown player": (
        ["expert-data", "--env", "webshop", "--out", "{tmp}/e", "--policy", "searcher"],
        "unknown --policy 'searcher' for webshop; valid names: ['expert']",
    ),
    "eval: not a policy": (["eval", "--policy", "{tmp}"], "neither a train-local run"),
    "eval: other env": (["eval", "--policy", "smollm2-135m", "--env", "webshop"], "ALFWorld only"),
}


@pytest.fixture
def read_only(tmp_path):
    """A path no one can create a folder under (a regular file stands in its way; root-proof, unlike chmod)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker


@pytest.mark.parametrize("case", sorted(USER_ERRORS))
def test_user_error_is_one_line_with_exit_code_2(case, tmp_path, read_only, capsys, monkeypatch):
    monkeypatch.delenv("VERL_AGENT_EXT_DEBUG", raising=False)
    argv, expected = USER_ERRORS[case]
    argv = [part.format(tmp=tmp_path, ro=read_only) for part in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and expected in err[-1], err
    assert not any("Traceback" in line for line in err)


def test_debug_flag_and_environment_variable_show_the_traceback(monkeypatch):
    with pytest.raises(UserError, match="unknown environment"):
        main(["--debug", "play", "--env", "nope"])
    with pytest.raises(UserError, match="unknown environment"):
        main(["play", "--env", "nope", "--debug"])
    monkeypatch.setenv("VERL_AGENT_EXT_DEBUG", "1")
    with pytest.raises(UserError):
        main(["play", "--env", "nope"])


def test_unexpected_failures_keep_their_traceback():
    # A bug (here: a TypeError from a wrong call) is not a user error.
    code = (
        "import sys; from verl_agent_ext import cli; import verl_agent_ext.envs.play_cli as p; "
        "p.SETUPS['webshop'] = lambda args: 1 / 0; sys.exit(cli.main(['play', '--env', 'webshop']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr


def test_verls_engine_probe_warnings_are_filtered_unless_verbose():
    code = (
        "import sys; from verl_agent_ext import quiet; quiet.configure(verbose=sys.argv[1] == 'v'); "
        "import verl.workers.engine"
    )
    quiet_run = subprocess.run([sys.executable, "-W", "default", "-c", code, "q"], capture_output=True, text=True)
    verbose_run = subprocess.run([sys.executable, "-W", "default", "-c", code, "v"], capture_output=True, text=True)
    assert quiet_run.returncode == 0 and verbose_run.returncode == 0, quiet_run.stderr
    assert "engine is not available" in verbose_run.stderr  # the warning exists: the filter is not vacuous
    assert "engine is not available" not in quiet_run.stderr


def test_filters_are_narrow():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.configure(verbose=False)
        warnings.warn("some other engine problem", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["some other engine problem"]


def test_verls_per_request_warnings_show_once_per_process():
    import logging

    from verl.utils.tokenizer.continuous_token_wiring import infer_continuous_token_model_family

    import verl_agent_ext.verl_plugin  # noqa: F401  (installs the filters, as in every verl process)

    class Recorder(logging.Handler):  # on the loggers themselves: some libraries stop propagation to the root
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    recorder = Recorder()
    loggers = [logging.getLogger(name) for name, _, _ in quiet.REPEATED_LOG_MESSAGES]
    assert all(any(type(f).__name__ == "_OnceFilter" for f in logger.filters) for logger in loggers)
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:  # a fresh process's state
            logger.filters = [f for f in logger.filters if type(f).__name__ != "_OnceFilter"]
            logger.addHandler(recorder)
            logger.setLevel(logging.WARNING)
        quiet.dedupe_repeated_logs()
        quiet.dedupe_repeated_logs()  # idempotent
        for _ in range(3):  # what verl's agent loop does on every request for a llama model (SmolLM2)
            infer_continuous_token_model_family(hf_model_type="llama")
        for (name, start, _), logger in zip(quiet.REPEATED_LOG_MESSAGES, loggers, strict=True):
            logger.warning("%s again", start)
            logger.warning("another message of %s", name)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(recorder)
            logger.setLevel(level)
    messages = recorder.messages
    assert sum("Continuous Token builder" in m for m in messages) == 1  # verl's real message, once
    for name, start, _ in quiet.REPEATED_LOG_MESSAGES:
        assert sum(m.startswith(start) for m in messages) == 1
        assert f"another message of {name}" in messages  # only the named message is deduplicated
