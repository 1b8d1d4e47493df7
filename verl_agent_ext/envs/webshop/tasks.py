"""Where catalogs come from (a data folder, or the default generated catalog) and the goal splits.

Splits follow the original WebShop's split of its shuffled human goals: test = goals [0, 500), dev = [500, 1500),
train = the rest. A catalog with fewer than 3,000 goals (small generated ones) keeps the same order with 10% test,
10% dev, 80% train, so every split is non-empty. Catalogs are cached per process: every environment of a pool
shares one copy of the products and one search index; a large catalog from files is parsed and indexed once per
node (`catalog_cache`). Every task carries the catalog's fingerprint, which the environment checks.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from pathlib import Path

from verl_agent_ext.envs.base import Task
from verl_agent_ext.envs.webshop.catalog import Catalog
from verl_agent_ext.envs.webshop.catalog_cache import load_shared_catalog
from verl_agent_ext.envs.webshop.generate import generate_catalog

logger = logging.getLogger(__name__)

DEFAULT_GENERATED_PRODUCTS = 1000
GENERATED_CATALOG_NOTICE = (
    "WebShop plays a GENERATED toy catalog (1,000 products made in memory), not the original 1.18M-product one: "
    "results are not comparable with published WebShop numbers"
)
SPLITS = ("train", "dev", "test")
_ORIGINAL_TEST, _ORIGINAL_DEV = 500, 1500
_BUILD_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _cached_catalog(
    data_dir: str | None, goal_source: str, num_products: int | None, generated_products: int, seed: int
) -> Catalog:
    if data_dir is not None:
        return load_shared_catalog(data_dir, goal_source=goal_source, num_products=num_products, seed=seed)
    logger.warning("NOTICE: %s (env.env_kwargs.webshop.data_dir names the original files)", GENERATED_CATALOG_NOTICE)
    files = generate_catalog(generated_products, seed)
    return Catalog.from_records(
        files["items_shuffle"],
        files["items_ins_v2"],
        files["items_human_ins"],
        goal_source=goal_source,
        num_products=num_products,
        seed=seed,
        generated=True,
    )


def get_catalog(
    data_dir: str | Path | None = None,
    goal_source: str = "human",
    num_products: int | None = None,
    generated_products: int = DEFAULT_GENERATED_PRODUCTS,
    seed: int = 0,
    keep: bool = True,
) -> Catalog:
    """The catalog in `data_dir` (original files or `webshop-generate` output), or a generated one when None.

    num_products: keep only the first N products of the file (the original's `num_products`).
    generated_products / seed: size and seed of the in-memory generated catalog used when data_dir is None
    (seed also draws the prices and price limits of any catalog).
    keep: False builds it without the per-process cache (e.g. a driver that only reads its fingerprint; a large
    catalog from files still fills the node's cache for the processes that play it).
    """
    resolved = None if data_dir is None else str(Path(data_dir).expanduser().resolve())
    key = (resolved, goal_source, num_products, generated_products, seed)
    if not keep:
        return _cached_catalog.__wrapped__(*key)
    with _BUILD_LOCK:  # pool threads creating environments at once build one shared catalog, not several
        catalog = _cached_catalog(*key)
        catalog.index  # noqa: B018 - build the search index now, under the lock
    return catalog


CATALOG_ARGUMENTS = ("data_dir", "goal_source", "num_products", "generated_products", "seed")
"""The WebShopEnv keyword arguments that choose its catalog (those of `get_catalog`)."""


def split_range(num_goals: int, split: str) -> range:
    """Goal indices of `split` in a catalog with `num_goals` goals."""
    if split not in SPLITS:
        raise ValueError(f"unknown WebShop split {split!r}; valid names: {list(SPLITS)}")
    if num_goals >= 2 * _ORIGINAL_DEV:
        test_end, dev_end = _ORIGINAL_TEST, _ORIGINAL_DEV
    else:
        test_end = max(1, num_goals // 10)
        dev_end = test_end + max(1, num_goals // 10)
    return {"test": range(0, test_end), "dev": range(test_end, dev_end), "train": range(dev_end, num_goals)}[split]


def list_tasks(
    split: str = "train",
    limit: int | None = None,
    data_dir: str | Path | None = None,
    goal_source: str = "human",
    num_products: int | None = None,
    generated_products: int = DEFAULT_GENERATED_PRODUCTS,
    seed: int = 0,
) -> list[Task]:
    """The first `limit` tasks of `split` (Task.task_id = goal index as text, task_type = product category).

    The catalog arguments are those of `get_catalog` / WebShopEnv: pass the environment's values.
    """
    catalog = get_catalog(data_dir, goal_source, num_products, generated_products, seed)
    indices = split_range(len(catalog.goals), split)
    if limit is not None:
        indices = indices[:limit]
    fingerprint = catalog.fingerprint
    return [
        Task(
            env="webshop",
            task_id=str(i),
            task_type=catalog.goals[i].category,
            split=split,
            data_fingerprint=fingerprint,
        )
        for i in indices
    ]
