"""The suite reads nothing beside the clone: conftest's audit hook refuses such opens (e.g. a ../shared folder)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_read_beside_the_clone_is_refused():
    with pytest.raises(PermissionError, match="outside the repository"):
        (ROOT.parent / "shared" / "fixtures" / "gigpo_reference_cases.json").open()


def test_reads_inside_the_clone_still_work():
    assert (ROOT / "tests" / "fixtures" / "gigpo_reference_cases.json").open().read(1)
