"""The README and docs/ match the code: estimator names, config sections, CLI commands and flags, benchmark commands.

Fails when they drift:
- every estimator name the package registers in verl, and every `algorithm.<section>` its estimators read, is
  named in README.md and in docs/;
- every `verl-agent-ext <subcommand> --flag ...` quoted in README.md, docs/ or examples/ names a real subcommand
  and flags its argparse parser accepts;
- every `python benchmarks/<script>.py --flag ...` names an existing script and flags it defines;
- every table of measured numbers names, in the text above it since the last `#`/`##` heading or table, the command that
  reproduces it. Tables of settings (a `default` column) are not measurements.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from verl_agent_ext.cli import build_parser
from verl_agent_ext.estimators import REGISTERED_NAMES, STEP_ESTIMATORS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "upstream" / "README.md"]
SCRIPTS = sorted((ROOT / "examples").glob("*.sh"))
REPRODUCING_COMMAND = re.compile(
    r"(python[^`\n]*benchmarks/\w+\.py|bash benchmarks/\w+\.sh|verl-agent-ext [a-z-]+|examples/\w+\.sh"
    r"|python -m verl_agent_ext\.\w+)"
)
"""What counts as a command that reproduces a table."""
MEASURED = r"[-+]?[\d,]*\.\d+( ?(s|ms|%|x))?|\d[\d,]* ?(s|ms)"
"""A cell holding a measured number."""


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def config_sections() -> set[str]:
    return {section for entry in STEP_ESTIMATORS.values() for section in entry.sections}


@pytest.mark.parametrize("name", REGISTERED_NAMES)
def test_every_registered_estimator_is_named_in_readme_and_docs(name):
    pattern = re.compile(rf"`{re.escape(name)}`|adv_estimator={re.escape(name)}\b")
    assert pattern.search(_text(README)), f"README.md does not name the registered estimator `{name}`"
    assert any(pattern.search(_text(page)) for page in DOCS), f"no page of docs/ names the estimator `{name}`"


def test_every_config_section_is_named_in_readme_and_docs():
    credit_source = "\n".join(_text(path) for path in (ROOT / "verl_agent_ext" / "credit").glob("*.py"))
    for section in sorted(config_sections()):
        assert f'"{section}"' in credit_source, f"the table names section {section!r}, which credit/ never reads"
        quoted = re.compile(rf"algorithm\.{section}\b(?!-)")
        assert quoted.search(_text(README)), f"README.md does not name the config section `algorithm.{section}`"
        assert any(quoted.search(_text(page)) for page in DOCS), f"no docs/ page names `algorithm.{section}`"


def _code(path: Path) -> list[str]:
    """The code of a page, one piece per line of a fenced block or inline code span (a shell script: every line);
    shell line continuations joined."""
    text = re.sub(r"\\\n\s*", " ", _text(path))
    if path.suffix == ".sh":
        return text.splitlines()
    pieces = []
    for index, block in enumerate(re.split(r"^```.*$", text, flags=re.M)):
        if index % 2 == 1:
            pieces += block.splitlines()
        else:
            pieces += re.findall(r"`([^`]+)`", block.replace("\n", " "))
    return pieces


def _commands(path: Path, head: str) -> list[str]:
    """Each command starting with `head` in the page's code, up to a shell comment."""
    return [
        piece[match.start() :].split(" #", 1)[0]
        for piece in _code(path)
        for match in re.finditer(re.escape(head), piece)
    ]


def _flags(command: str) -> list[str]:
    return [flag.split("=", 1)[0] for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*(?:=\S*)?)", command)]


def _sources() -> list[Path]:
    return [*PAGES, *SCRIPTS]


def cli_uses() -> list[tuple[str, str, str]]:
    """(file, subcommand, flag or "") for every `verl-agent-ext <subcommand> [--flag ...]` in the docs and scripts."""
    uses = []
    for path in _sources():
        for command in _commands(path, "verl-agent-ext "):
            words = command.split()
            if len(words) < 2 or not re.fullmatch(r"[a-z][a-z-]+", words[1]):
                continue  # prose ("verl-agent-ext <subcommand>") or a package name
            uses.append((_rel(path), words[1], ""))
            uses.extend((_rel(path), words[1], flag) for flag in _flags(" ".join(words[2:])))
    return uses


def subcommands() -> dict:
    """{name: argparse parser} of every `verl-agent-ext` subcommand."""
    return next(action for action in build_parser()._actions if action.dest == "command").choices


def test_quoted_cli_subcommands_and_flags_exist():
    subparsers = subcommands()
    assert len({use[1] for use in cli_uses()}) >= 5, "the docs check found almost no CLI commands: parser broken?"
    wrong = []
    for path, sub, flag in cli_uses():
        if sub not in subparsers:
            wrong.append(f"{path}: unknown subcommand `verl-agent-ext {sub}` (valid: {sorted(subparsers)})")
        elif flag and flag not in subparsers[sub]._option_string_actions:
            wrong.append(f"{path}: `verl-agent-ext {sub}` has no flag {flag}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def _script_flags(script: Path) -> set[str]:
    """Flags a benchmark script's argparse parser defines (string literals of add_argument), plus train-local's
    when the script registers that parser."""
    tree = ast.parse(_text(script))
    flags = {"--help"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            flags |= {
                arg.value for arg in node.args if isinstance(arg, ast.Constant) and str(arg.value).startswith("-")
            }
    if "train_cli.register" in _text(script):
        flags |= set(subcommands()["train-local"]._option_string_actions)
    return flags


def test_quoted_benchmark_commands_and_flags_exist():
    wrong = []
    for path in _sources():
        for command in _commands(path, "benchmarks/"):
            match = re.match(r"benchmarks/(\w+\.(?:py|sh))", command)
            if not match:
                continue
            script = ROOT / "benchmarks" / match.group(1)
            if not script.is_file():
                wrong.append(f"{_rel(path)}: no script benchmarks/{match.group(1)}")
            elif script.suffix == ".py":
                wrong += [
                    f"{_rel(path)}: benchmarks/{script.name} has no flag {flag}"
                    for flag in _flags(command[match.end() :])
                    if flag not in _script_flags(script)
                ]
    assert not wrong, "\n".join(sorted(set(wrong)))


def all_tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each markdown table."""
    lines = text.splitlines()
    tables, start = [], None
    for number, line in enumerate([*lines, ""]):
        if line.startswith("|") and start is None:
            start = number
        elif not line.startswith("|") and start is not None:
            tables.append((start, lines[start:number]))
            start = None
    return tables


def measured_tables(text: str) -> list[tuple[int, list[str]]]:
    """The tables with a measured number (a decimal, or a number with a unit) in a cell and no `default` column."""
    tables = []
    for start, rows in all_tables(text):
        cells = [cell.strip(" *") for row in rows[2:] for cell in row.strip("|").split("|")]
        settings = "default" in rows[0].lower()
        if not settings and any(re.fullmatch(MEASURED, cell) for cell in cells):
            tables.append((start, rows))
    return tables


def test_every_benchmark_table_names_its_command():
    missing = []
    for path in [README, *DOCS]:
        lines = _text(path).splitlines()
        fenced = [sum(line.startswith("```") for line in lines[:number]) % 2 == 1 for number in range(len(lines))]
        headings = [number for number, line in enumerate(lines) if re.match(r"#{1,2} ", line) and not fenced[number]]
        spans = [(begin, begin + len(rows)) for begin, rows in all_tables(_text(path))]
        for start, table in measured_tables(_text(path)):
            since = max(
                [0, *(number for number in headings if number < start), *(end for _, end in spans if end <= start)]
            )
            above = "\n".join(lines[since:start])
            if not REPRODUCING_COMMAND.search(above):
                missing.append(f"{_rel(path)}:{start + 1}: {table[0][:80]}")
    assert not missing, "tables of measured numbers without the command that reproduces them:\n" + "\n".join(missing)
