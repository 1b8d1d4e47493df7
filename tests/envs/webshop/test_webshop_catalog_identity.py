"""Which catalog a WebShop task belongs to: fingerprints in the task rows, checked by the environment; a loud notice
for the generated catalog; a large catalog built once per node and memory-mapped by every other process."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from verl_agent_ext.cli import main
from verl_agent_ext.envs.base import Task
from verl_agent_ext.envs.registry import make_env
from verl_agent_ext.envs.webshop import catalog_cache
from verl_agent_ext.envs.webshop.catalog import load_catalog
from verl_agent_ext.envs.webshop.generate import write_catalog
from verl_agent_ext.envs.webshop.tasks import GENERATED_CATALOG_NOTICE, get_catalog, list_tasks


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shop")
    write_catalog(folder, 40, seed=1)
    return folder


def test_rows_carry_the_catalog_fingerprint_and_the_env_checks_it(small_catalog, tmp_path, capsys):
    assert main(["prepare-data", "--env", "webshop", "--out", str(tmp_path), "--data-dir", str(small_catalog)]) == 0
    rows = pd.read_parquet(tmp_path / "train.parquet")
    fingerprint = load_catalog(small_catalog).fingerprint
    assert set(rows.data_fingerprint) == {fingerprint} and len(fingerprint) == 12
    assert fingerprint in capsys.readouterr().out
    from verl_agent_ext.agent.env_agent_loop import task_from_row

    task = task_from_row(rows.iloc[0].to_dict(), "webshop")
    assert task.data_fingerprint == fingerprint
    assert make_env("webshop", data_dir=small_catalog).reset(task).text.startswith("WebShop")
    with pytest.raises(ValueError, match=f"prepared from catalog {fingerprint}.*generated catalog"):
        make_env("webshop").reset(task)  # the env was not given prepare-data's --data-dir
    assert get_catalog().fingerprint != fingerprint


def test_generated_catalog_is_announced_loudly(tmp_path, capsys, caplog):
    argv = ["prepare-data", "--env", "webshop", "--out", str(tmp_path), "--train-size", "2", "--val-size", "2"]
    assert main(argv) == 0
    assert f"NOTICE: {GENERATED_CATALOG_NOTICE}" in capsys.readouterr().err
    from verl_agent_ext.envs.webshop import tasks

    tasks._cached_catalog.cache_clear()
    with caplog.at_level(logging.WARNING, logger=tasks.__name__):
        list_tasks("test", limit=1)
    assert GENERATED_CATALOG_NOTICE in caplog.text


def test_prompt_only_env_never_loads_the_catalog():
    env = make_env("webshop", data_dir=None)
    assert "catalog" not in env.__dict__  # the env pool's local env formats prompts and parses actions only
    env.reset(Task(env="webshop", task_id="0"))
    assert "catalog" in env.__dict__


def test_large_catalog_is_built_once_per_node_and_memory_mapped(small_catalog, tmp_path, monkeypatch):
    monkeypatch.setenv(catalog_cache.CACHE_ENV, str(tmp_path / "cache"))
    first = catalog_cache.load_shared_catalog(small_catalog, min_bytes=0)  # builds the node's cache
    monkeypatch.setattr(catalog_cache, "load_catalog", lambda *a, **k: pytest.fail("parsed the JSON files again"))
    second = catalog_cache.load_shared_catalog(small_catalog, min_bytes=0)  # another process of the node
    assert isinstance(second.index._weights, np.memmap) and not second.index._weights.flags.writeable
    assert second.fingerprint == first.fingerprint
    for query in ("shampoo", "red cotton shirt", first.goals[0].name):
        assert [p.asin for p in second.search(query, 10)] == [p.asin for p in first.search(query, 10)]
    assert len(list((tmp_path / "cache").glob("catalog-*"))) == 1 + 1  # the folder and its lock file
