"""Quiet runs: filter the third-party messages a user cannot act on; `-v` shows everything.

Each entry below names one message, why it appears and why it is harmless; nothing is silenced wholesale.
Messages whose cause we control are fixed where they arise instead (e.g. the agent loop decodes with
``clean_up_tokenization_spaces=False``, so transformers' BPE clean-up warning never fires).
"""

from __future__ import annotations

import logging
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

# (logger name, message start, reason). Shown once per process, then dropped (`dedupe_repeated_logs`).
REPEATED_LOG_MESSAGES: tuple[tuple[str, str, str], ...] = (
    (
        "verl.utils.tokenizer.continuous_token_wiring",
        "No model-specific Continuous Token builder",
        "verl's agent loop picks a token builder for every request and warns each time for a model type it has no "
        "builder for (e.g. llama: SmolLM2); the generic builder it falls back to is right for text-only models",
    ),
    (
        "transfer_queue.utils.common",
        "target_num_threads",
        "TransferQueue asks for 8 copy threads on every put and caps them at the machine's cores, with a warning each "
        "time on a machine with fewer than 8 cores (a laptop, the CPU profile)",
    ),
)


class _OnceFilter(logging.Filter):
    """Lets the first record starting with `start` through and drops the repeats."""

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start, self.seen = start, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.start):
            return True
        shown, self.seen = not self.seen, True
        return shown


def dedupe_repeated_logs() -> None:
    """Show each `REPEATED_LOG_MESSAGES` entry once per process (idempotent); verl's workers call it via the plugin."""
    for name, start, _reason in REPEATED_LOG_MESSAGES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OnceFilter) and f.start == start for f in logger.filters):
            logger.addFilter(_OnceFilter(start))


def configure(verbose: bool) -> None:
    """Install the filters (and turn off per-load progress bars of Hugging Face libraries) unless `verbose`."""
    if verbose:
        return
    # "Loading weights: 100%" bars on every (sub-second) model load; the one slow load, the first GGUF
    # conversion, prints its own line (policy/model.py).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for category, message, _reason in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
