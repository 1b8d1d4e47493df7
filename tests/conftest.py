"""Shared test configuration: offline model hubs and the path of the reference fixtures."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the project root (reference fixtures computed with published implementations)."""
    if not SHARED_DIR.is_dir():
        pytest.fail(f"reference fixtures not found at {SHARED_DIR}: check out shared/ beside the project root")
    return SHARED_DIR
