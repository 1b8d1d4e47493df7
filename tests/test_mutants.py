"""The mutation check (scripts/mutants.py) stays current, and its fast mutants are caught on every CI run."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import mutants  # noqa: E402

FAST = ("checkpoint-restores-nothing", "checkpoint-skips-rng", "checkpoint-skips-optimizer")


def test_every_mutant_still_finds_its_source_text():
    for mutant in mutants.MUTANTS:
        source = (ROOT / mutant.path).read_text()
        assert source.count(mutant.original) == 1, f"{mutant.name}: its text moved in {mutant.path}"
        for test in mutant.tests:
            assert (ROOT / test.split("::")[0]).is_file(), test


def test_fast_mutants_are_caught():
    # no --control: the suite itself runs these tests unmutated
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mutants.py"), "--only", *FAST],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(FAST)}/{len(FAST)} mutants caught" in result.stdout
