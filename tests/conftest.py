"""Shared fixtures: an isolated simulation cache, the real data folder, a smoke run of rings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_worker():
    """Under pytest-xdist every core already runs a worker: torch's intra-op threads would only fight them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
    yield


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
    return run("rings", out=out, name="smoke", seed=3, overrides={"size": "smoke"})


@pytest.fixture(scope="session")
def spectra_sim_file(tmp_path_factory) -> Path:
    """120 simulated SDSS-like spectra (bagpipes, one process), shared by the spectra and gan_latent tests."""
    from astrobench.tasks.spectra.simulate import FILENAME, simulate

    return simulate(tmp_path_factory.mktemp("spectra") / FILENAME, n=120, seed=5, n_jobs=1, progress=False)


@pytest.fixture(scope="session")
def spectra_smoke_file(spectra_sim_file, tmp_path_factory) -> Path:
    """The 120 simulated galaxies four times over with fresh noise: enough for the C2ST's minimum pools at smoke
    size without 480 bagpipes models (it checks the wiring, not the science). Written without units attributes, as
    a plain SDSS file would be."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("smoke") / "sdss_galaxy_spec.hdf5"
    with h5py.File(spectra_sim_file, "r") as f, h5py.File(path, "w") as g:
        cols = {k: f["raw"][k][()] for k in f["raw"]}
        out = {k: np.concatenate([v] * 4) if k != "wavelength" else v for k, v in cols.items()}
        out["spec"] = (out["spec"] + out["specerr"] * rng.standard_normal(out["spec"].shape)).astype(np.float32)
        for k, v in out.items():
            g.create_dataset(f"raw/{k}", data=v)
    return path


@pytest.fixture(scope="session")
def task_example(tmp_path_factory):
    """``task_example(name)``: the path of the task's example data set (``Task.example``), written once per
    session (several contract checks read it; none may change it)."""
    from astrobench import registry

    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = registry.get_task(name).example(tmp_path_factory.mktemp(f"example-{name}") / "data")
        return made[name]

    return get
