"""`verl-agent-ext`: every subcommand is registered and --help stays free of heavy imports."""

import subprocess
import sys

from verl_agent_ext.cli import SUBCOMMAND_MODULES, build_parser, main

SUBCOMMANDS = (
    "alfworld-generate",
    "webshop-generate",
    "play",
    "credit-eval",
    "arena",
    "prepare-data",
    "expert-data",
    "train-local",
    "eval",
    "warm-start",
)


def test_every_subcommand_is_registered():
    parser = build_parser()
    choices = next(action.choices for action in parser._actions if action.dest == "command")
    assert tuple(choices) == SUBCOMMANDS
    assert len(SUBCOMMAND_MODULES) == len(SUBCOMMANDS)


def test_no_subcommand_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "train-local" in capsys.readouterr().out


def test_help_imports_neither_torch_nor_verl():
    code = (
        "import sys; from verl_agent_ext.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'verl', 'textworld', 'ray') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
