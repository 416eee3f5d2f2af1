"""Simulation on Dask: the same bytes on 1 or 2 workers or an existing cluster; a killed worker's chunk is retried and
the cache entry is complete; a scheduler nobody listens on is one line."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import cloudpickle
import pytest

from astrobench.core import parallel
from astrobench.core.task import cached
from astrobench.tasks.allsky.simulate import simulate

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_scheduler(monkeypatch):
    """No named scheduler, and local workers even for these small jobs (they would run in one process)."""
    monkeypatch.delenv(parallel.SCHEDULER_ENV, raising=False)
    monkeypatch.setattr(parallel, "MIN_CHUNKS_PER_WORKER", 0)
    parallel.set_scheduler(None)
    yield
    parallel.set_scheduler(None)


def test_simulation_is_byte_identical_on_one_or_two_workers_or_a_cluster(tmp_path, no_scheduler):
    from distributed import LocalCluster

    kwargs = dict(n=12, seed=3, frames_per_camera=4, progress=False)  # three cameras: three chunks of 4 frames
    simulate(tmp_path / "one", n_jobs=1, **kwargs)
    simulate(tmp_path / "two", n_jobs=2, **kwargs)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        parallel.set_scheduler(cluster.scheduler_address)
        simulate(tmp_path / "cluster", n_jobs=1, **kwargs)  # the named cluster's workers, whatever n_jobs says
    one = _digest(tmp_path / "one")
    assert len(one) == 14 and _digest(tmp_path / "two") == one and _digest(tmp_path / "cluster") == one


def _write_or_die(args) -> str:
    """Writes one chunk's file; the first time chunk 3 comes up, its worker process dies instead."""
    folder, k, marker = args
    marker = Path(marker)
    if k == 3 and not marker.exists():
        marker.write_text("x")
        os._exit(1)
    (Path(folder) / f"part{k}.txt").write_text(f"chunk {k}\n")
    return f"part{k}.txt"


def test_a_killed_worker_leaves_a_complete_cache_entry(tmp_path, monkeypatch, no_scheduler):
    monkeypatch.setenv("ASTROBENCH_CACHE", str(tmp_path / "cache"))

    def build(folder: Path) -> Path:
        with parallel.executor(2) as pool:
            names = list(pool.map(_write_or_die, [(str(folder), k, str(tmp_path / "killed-once")) for k in range(8)]))
        (folder / "index.txt").write_text("\n".join(names))
        return folder / "index.txt"

    index = cached("parallel_test", "1", {"n": 8}, build, "index.txt")
    assert (tmp_path / "killed-once").exists()  # a worker did die mid-build
    folder = index.parent
    assert sorted(p.name for p in folder.iterdir()) == ["index.txt"] + [f"part{k}.txt" for k in range(8)]
    assert [(folder / n).read_text() for n in index.read_text().split()] == [f"chunk {k}\n" for k in range(8)]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no stray temporary build folder


def test_a_scheduler_nobody_listens_on_is_one_line_and_no_run_folder(tmp_path, capsys, no_scheduler):
    from astrobench.cli import main

    code = main(["run", "rings", "--set", "size='smoke'", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert f"no Dask scheduler answers there within {parallel.CONNECT_TIMEOUT_S} s" in err
    assert list(tmp_path.iterdir()) == []


def test_camels_boxes_are_the_same_on_one_or_two_workers(tmp_path, no_scheduler):
    from astrobench.tasks.camels.simulate import simulate as simulate_camels

    for n_jobs in (1, 2):  # 6 simulations per suite: two Dask tasks of 4 and 2
        simulate_camels(tmp_path / str(n_jobs), n_sims=6, map_size=16, seed=2, suites=("tng",), n_jobs=n_jobs)
    assert _digest(tmp_path / "1") == _digest(tmp_path / "2") and len(_digest(tmp_path / "1")) == 3


def test_small_jobs_stay_in_this_process(monkeypatch):
    monkeypatch.delenv(parallel.SCHEDULER_ENV, raising=False)
    with parallel.executor(2, n_chunks=2 * parallel.MIN_CHUNKS_PER_WORKER - 1) as pool:
        assert isinstance(pool, parallel.SerialExecutor)
    with parallel.executor(1, n_chunks=1000) as pool:
        assert isinstance(pool, parallel.SerialExecutor)


def test_cluster_images_are_the_same_on_one_or_two_workers(no_scheduler):
    import numpy as np

    from astrobench.tasks.cluster_mass.simulate import CLUSTERS_PER_CHUNK, simulate_cluster_images

    n = CLUSTERS_PER_CHUNK + 3  # two chunks, the second one short
    one, two = (simulate_cluster_images(n, 2, seed=4, image_size=16, n_jobs=k) for k in (1, 2))
    assert one.images.shape == (2 * n, 16, 16) and one.images.sum() > 0
    np.testing.assert_array_equal(one.images, two.images)


def test_starting_local_workers_leaves_this_process_environment_alone(no_scheduler, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    parallel.close_local_clusters()
    before = dict(os.environ)
    with parallel.executor(2, n_chunks=8) as pool:
        assert isinstance(pool, parallel.DaskExecutor)
        # the workers themselves run with Dask's one-thread settings
        assert set(pool.client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values()) == {"1"}
    assert dict(os.environ) == before  # a process started from here later (a DDP rank) gets all its threads
