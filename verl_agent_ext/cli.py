"""`verl-agent-ext <subcommand>`: the single home of every command-line tool.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds one parser and sets
``func`` to the function that runs it. Modules keep heavy imports (torch, verl, textworld) inside that function
so ``verl-agent-ext --help`` stays instant.

User errors (`verl_agent_ext.errors.UserError`) print as one ``error: ...`` line with exit code 2; ``--debug`` (or
VERL_AGENT_EXT_DEBUG=1) shows their traceback. Third-party warnings the user cannot act on are filtered
(`verl_agent_ext.quiet`); ``-v`` shows them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Subcommand modules, in the order --help lists them.
SUBCOMMAND_MODULES = (
    "verl_agent_ext.envs.alfworld.generate_cli",
    "verl_agent_ext.envs.webshop.generate_cli",
    "verl_agent_ext.envs.play_cli",
    "verl_agent_ext.credit_eval.cli",
    "verl_agent_ext.arena.cli",
    "verl_agent_ext.agent.prepare_data_cli",
    "verl_agent_ext.agent.expert_data_cli",
    "verl_agent_ext.local.train_cli",
    "verl_agent_ext.local.eval_cli",
    "verl_agent_ext.local.warm_start_cli",
)
DEBUG_ENV = "VERL_AGENT_EXT_DEBUG"


def _add_common_options(parser: argparse.ArgumentParser, default=None) -> None:
    parser.add_argument(
        "--debug", action="store_true", default=default, help=f"show tracebacks of user errors too (or {DEBUG_ENV}=1)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="show third-party warnings (filtered by default)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verl-agent-ext", description=__doc__.splitlines()[0])
    _add_common_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for module_path in SUBCOMMAND_MODULES:
        importlib.import_module(module_path).register(subparsers)
    for subparser in subparsers.choices.values():
        # SUPPRESS: a flag given before the subcommand is not reset by the subcommand's default.
        _add_common_options(subparser, default=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from verl_agent_ext import quiet
    from verl_agent_ext.errors import UserError

    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    quiet.configure(verbose=args.verbose)
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before a command's own handler is installed (start-up, imports)
        if debug:
            raise
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
