"""Quiet runs: filter the third-party messages a user cannot act on; `-v` shows everything.

Each entry below names one message, why it appears and why it is harmless; nothing is silenced wholesale.
Messages whose cause we control are fixed where they arise instead (e.g. the agent loop decodes with
``clean_up_tokenization_spaces=False``, so transformers' BPE clean-up warning never fires).
"""

from __future__ import annotations

import os
import warnings

# (category, message regex, reason). Matched with `warnings.filterwarnings("ignore", ...)`.
HARMLESS_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (
        UserWarning,
        r"(veomni|torchtitan|mindspeed|megatron|automodel) engine is not available: ModuleNotFoundError",
        "verl probes its optional training engines at import; the FSDP engine we use is there",
    ),
)


def configure(verbose: bool) -> None:
    """Install the filters (and turn off per-load progress bars of Hugging Face libraries) unless `verbose`."""
    if verbose:
        return
    # "Loading weights: 100%" bars on every (sub-second) model load; the one slow load, the first GGUF
    # conversion, prints its own line (local/model.py).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for category, message, _reason in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
