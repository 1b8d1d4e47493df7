"""A large WebShop catalog parsed and indexed once per node, then loaded by every process from a node-local cache.

The original catalog (items_shuffle.json, 1.18M products, several GB of JSON) takes minutes to parse and index;
a training run has many processes that play WebShop (16 env actors and 8 agent-loop workers by default), each of
which would otherwise do it separately, past the env pool's call timeout. Here the first process of a node to ask
builds the catalog under a file lock and writes it to a cache folder; every other process (waiting on the lock)
loads the parsed products and goals (pickle) and memory-maps the search index arrays (read-only `np.load`,
shared through the page cache). The cache key is the resolved data folder, the files' sizes and modification
times, and the catalog arguments; a changed file gets a new folder.

Catalogs whose products file is smaller than `min_bytes` (generated ones, test data) are loaded directly.
The cache lives in `$VAE_WEBSHOP_CACHE`, else `<tmp>/verl-agent-ext-webshop` (node-local on clusters).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from verl_agent_ext.envs.webshop.catalog import Catalog, load_catalog
from verl_agent_ext.envs.webshop.search import BM25Index

CACHE_ENV = "VAE_WEBSHOP_CACHE"
CACHE_MIN_BYTES = 64 * 2**20
CACHE_VERSION = "1"
_INDEX_ARRAYS = ("_doc_ids", "_weights", "_start", "_idf")


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "verl-agent-ext-webshop")


def cache_key(data_dir: Path, goal_source: str, num_products: int | None, seed: int) -> str:
    parts = [CACHE_VERSION, str(data_dir.resolve()), goal_source, str(num_products), str(seed)]
    for path in sorted(data_dir.glob("*.json")):
        stat = path.stat()
        parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # the other processes of the node wait here while one builds
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(catalog: Catalog, folder: Path) -> None:
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    index = catalog.index
    for name in _INDEX_ARRAYS:
        np.save(partial / f"{name}.npy", getattr(index, name))
    state = {"num_docs": index.num_docs, "vocabulary": index.vocabulary}
    parts = {"products": catalog.products, "goals": catalog.goals, "prices": catalog.prices}
    with open(partial / "catalog.pkl", "wb") as handle:
        pickle.dump({**parts, "generated": catalog.generated, "index": state}, handle, protocol=pickle.HIGHEST_PROTOCOL)
    partial.rename(folder)


def _read(folder: Path) -> Catalog:
    with open(folder / "catalog.pkl", "rb") as handle:
        saved = pickle.load(handle)  # noqa: S301 - written by this module on this node
    catalog = Catalog(saved["products"], saved["goals"], saved["prices"], saved["generated"])
    index = BM25Index.__new__(BM25Index)
    index.num_docs, index.vocabulary = saved["index"]["num_docs"], saved["index"]["vocabulary"]
    for name in _INDEX_ARRAYS:
        setattr(index, name, np.load(folder / f"{name}.npy", mmap_mode="r"))
    catalog.__dict__["index"] = index  # the cached_property's slot
    return catalog


def load_shared_catalog(
    data_dir: str | Path,
    goal_source: str = "human",
    num_products: int | None = None,
    seed: int = 0,
    min_bytes: int = CACHE_MIN_BYTES,
) -> Catalog:
    """`catalog.load_catalog`, built at most once per node for a large catalog (see the module docstring)."""
    data_dir = Path(data_dir)
    products = sorted(data_dir.glob("items_shuffle*.json"))
    if not products or products[0].stat().st_size < min_bytes:
        return load_catalog(data_dir, goal_source=goal_source, num_products=num_products, seed=seed)
    folder = cache_root() / f"catalog-{cache_key(data_dir, goal_source, num_products, seed)}"
    with _locked(folder.with_name(folder.name + ".lock")):
        if not folder.is_dir():
            _write(load_catalog(data_dir, goal_source=goal_source, num_products=num_products, seed=seed), folder)
    return _read(folder)
