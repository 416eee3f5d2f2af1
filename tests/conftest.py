"""Shared fixtures: an isolated simulation cache, the real data folder, a smoke run of rings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never read or fill the user's cache."""
    old = os.environ.get("ASTROBENCH_CACHE")
    os.environ["ASTROBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("ASTROBENCH_CACHE", None)
    else:
        os.environ["ASTROBENCH_CACHE"] = old


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data via ASTROBENCH_SHARED_DATA: skip when unset, fail when set but missing."""
    root = os.environ.get("ASTROBENCH_SHARED_DATA")
    if not root:
        pytest.skip("ASTROBENCH_SHARED_DATA is not set (the school's real data folder is not beside this clone)")
    path = Path(root)
    assert path.is_dir(), f"ASTROBENCH_SHARED_DATA={root} does not exist"
    return path


@pytest.fixture(scope="session")
def rings_reference(shared_data) -> Path:
    path = shared_data / "rings_reference_sample"
    assert (path / "n_ring" / "labels.txt").is_file(), f"{path} lacks n_ring/labels.txt"
    assert (path / "single_ring" / "labels.json").is_file(), f"{path} lacks single_ring/labels.json"
    return path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """One finished smoke-size rings run shared by the tests that inspect a run folder."""
    from astrobench.runner import run

    out = tmp_path_factory.mktemp("runs")
    return run("rings", out=out, name="smoke", seed=3, overrides={"size": "smoke"}, progress=False)
