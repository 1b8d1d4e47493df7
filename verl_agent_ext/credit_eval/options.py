"""Command-line options the estimator tools share (`credit-eval`, `arena`); no heavy imports (--help stays instant)."""

from __future__ import annotations

import argparse


def add_estimator_arguments(parser: argparse.ArgumentParser, default: str, settings_help: str) -> None:
    """`--estimators` (specs as `parse_estimators` reads them) and the repeatable `--set KEY=VALUE` of a tool."""
    parser.add_argument(
        "--estimators",
        default=default,
        help="comma-separated registered estimators, each optionally with settings under algorithm. for it only: "
        f"'scpo:scpo.theta=0.8:scpo.alpha=5' (default {default})",
    )
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE", help=f"{settings_help}; repeatable"
    )
