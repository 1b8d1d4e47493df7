"""Checkpoints of the local trainer: trainable weights, optimizer state, RNG states, iteration and config.

Only trainable parameters are saved (the LoRA adapter, or every weight when training the full model); the frozen
base comes from the model name in the config. A checkpoint is written to a temporary folder and renamed into
place, so an interrupt while saving never leaves a half-written checkpoint: until the new folder is in place the
previous one stays readable (as `<path>.old` for the instant between the two renames; `find_checkpoint` reads it).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"


def save_checkpoint(path: str | Path, model, optimizer, iteration: int, config, extra=None) -> None:
    """Save the run state after `iteration` completed iterations to folder `path` (atomically replaced).

    extra: None or a callable writing more files into the folder it is given (before the atomic rename).
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    state = {
        "iteration": iteration,
        "trainable": {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
    }
    torch.save(state, partial / STATE_FILE)
    (partial / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
    if extra is not None:
        extra(partial)
    previous = path.with_name(path.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if path.exists():
        path.rename(previous)
    partial.rename(path)
    shutil.rmtree(previous, ignore_errors=True)


def find_checkpoint(path: str | Path) -> Path | None:
    """The complete checkpoint saved at `path`: the folder itself, or the previous one when an interrupt fell
    between `save_checkpoint`'s two renames; None when there is none."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / STATE_FILE).is_file() and (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


RUN_IDENTITY = ("estimator", "model", "lora_rank", "init_adapter", "env", "games_dir", "games_seed", "task_types")
"""Settings a resumed run must share with the run that wrote the checkpoint (the rest may change on resume)."""


def check_resumable(path: str | Path, config) -> None:
    """Raise ValueError when the checkpoint at `path` belongs to a different run than `config` describes.

    Compares RUN_IDENTITY (estimator, model, adapter, environment); `config.force_resume` skips the comparison
    (an adapter of another shape still fails when its weights are loaded).
    """
    recorded = read_config(path)
    if getattr(config, "force_resume", False):
        return
    current = config.to_dict()
    differ = [
        f"{key}={recorded.get(key)!r} (now {current[key]!r})"
        for key in RUN_IDENTITY
        if recorded.get(key) != current[key]
    ]
    if differ:
        raise ValueError(
            f"{path} holds a different run: {', '.join(differ)}. Start a new run with another --out, start over "
            "in this folder with --no-resume, or continue it with the new settings with --force-resume"
        )


def load_checkpoint(path: str | Path, model, optimizer) -> int:
    """Restore weights, optimizer and RNG states from `path`; returns the number of completed iterations."""
    path = Path(path)
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        state["iteration"], state["trainable"], state["optimizer"], state["rng"]  # noqa: B018  (all present)
    except Exception as error:  # truncated or foreign file: torch/pickle raise many types
        raise ValueError(
            f"{path / STATE_FILE} is not a readable checkpoint ({type(error).__name__}: {error}); delete {path} "
            "to start over, or use --no-resume"
        ) from None
    parameters = dict(model.named_parameters())
    missing = sorted(set(state["trainable"]) - set(parameters))
    if missing:
        raise ValueError(
            f"checkpoint {path} does not fit this model ({len(missing)} unknown parameters, e.g. {missing[0]}): "
            "same model and lora_rank as the run that wrote it?"
        )
    wrong = [name for name, tensor in state["trainable"].items() if tensor.shape != parameters[name].shape]
    if wrong:
        raise ValueError(
            f"checkpoint {path} does not fit this model: {wrong[0]} is {tuple(state['trainable'][wrong[0]].shape)}, "
            f"the model's {tuple(parameters[wrong[0]].shape)} (another lora_rank?); use another --out or --no-resume"
        )
    with torch.no_grad():
        for name, tensor in state["trainable"].items():
            parameters[name].copy_(tensor.to(parameters[name].device))
    optimizer.load_state_dict(state["optimizer"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["iteration"])


def read_config(path: str | Path) -> dict:
    """The trainer settings a checkpoint was written with; an unreadable file raises ValueError naming it."""
    file = Path(path) / CONFIG_FILE
    try:
        recorded = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{file} is not readable ({error}); delete {path} to start over, or use --no-resume") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"{file} does not hold trainer settings; delete {path} to start over, or use --no-resume")
    return recorded
