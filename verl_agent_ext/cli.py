"""`verl-agent-ext <subcommand>`: the single home of every command-line tool.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds one parser and sets
``func`` to the function that runs it. Modules keep heavy imports (torch, verl, textworld) inside that function
so ``verl-agent-ext --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order --help lists them.
SUBCOMMAND_MODULES = (
    "verl_agent_ext.envs.alfworld.generate_cli",
    "verl_agent_ext.envs.webshop.generate_cli",
    "verl_agent_ext.envs.play_cli",
    "verl_agent_ext.credit_eval.cli",
    "verl_agent_ext.agent.prepare_data_cli",
    "verl_agent_ext.local.train_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verl-agent-ext", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for module_path in SUBCOMMAND_MODULES:
        importlib.import_module(module_path).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
