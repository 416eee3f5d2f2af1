"""Parallel work for the simulators and loaders, on Dask (``dask.distributed``).

Every simulator and loader whose cost grows with the number of objects splits its work into chunks and maps a
module-level function over them with :func:`executor`. Where the chunks run:

- one process (``n_jobs=1``): in this process, no Dask;
- ``n_jobs > 1``: an embedded ``LocalCluster`` of ``n_jobs`` worker processes (one thread each), started on first
  use and kept until the process exits: nothing to install or start;
- an existing Dask cluster, when ``--scheduler tcp://HOST:PORT`` (or the environment variable
  ``DASK_SCHEDULER_ADDRESS``) names one: its workers need astrobench installed and must see the output folder.

A chunk's random stream depends on the seed and the chunk's index only, never on the worker that runs it, so the
files are byte-identical whatever the number of workers. Dask runs a chunk again on another worker when its worker
dies (``distributed.scheduler.allowed-failures``), and the simulation cache renames a finished build into place, so a
killed worker never leaves a half-written cache entry.

Why Dask rather than ``concurrent.futures``: the same code then runs on a laptop and on a cluster, and a dead worker
costs a retried chunk instead of the whole simulation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 5  # seconds to reach a named scheduler before giving up with one line

_scheduler: str | None = None


def set_scheduler(address: str | None) -> None:
    """Use the Dask scheduler at ``address`` for every later :func:`executor` (None: the environment variable, else
    a local cluster). The scheduler is contacted at once: nobody listening is a ConfigError after
    CONNECT_TIMEOUT_S seconds."""
    global _scheduler
    if address:
        check_scheduler(address)
    _scheduler = address or None


def scheduler_address() -> str | None:
    """The Dask scheduler to use: the one :func:`set_scheduler` named, else ``$DASK_SCHEDULER_ADDRESS``,
    else None (a local cluster or this process)."""
    return _scheduler or os.environ.get(SCHEDULER_ENV) or None


def check_scheduler(address: str) -> None:
    """Raise ConfigError unless a Dask scheduler answers at ``address`` within CONNECT_TIMEOUT_S seconds."""
    from astrobench.core.io import ConfigError

    try:
        client = _client(address)
    except (OSError, TimeoutError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--scheduler {address}: no Dask scheduler answers there within {CONNECT_TIMEOUT_S} s "
                          f"({reason[:120]})") from None
    client.close()


def _client(address: str):
    from distributed import Client

    return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)


class SerialExecutor:
    """:func:`executor`'s interface, in this process."""

    def map(self, fn: Callable, items: Iterable, chunksize: int = 1) -> Iterator:
        """``fn`` over ``items``, lazily and in order, in this process (``chunksize`` is ignored)."""
        return map(fn, items)


class DaskExecutor:
    """``map`` over a ``distributed.Client``: results in the order of ``items``, ``chunksize`` items per task."""

    def __init__(self, client):
        """``client``: a connected ``distributed.Client``."""
        self.client = client

    def map(self, fn: Callable, items: Iterable, chunksize: int = 1) -> Iterator:
        """Yield ``fn(item)`` for each of ``items`` in order, computed on the cluster ``chunksize`` items per task;
        tasks not yet read are cancelled when the caller stops."""
        items = list(items)
        batches = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
        # pure=False: a retried chunk is the same chunk (its seed is in its arguments), but two equal chunks of
        # different calls must not be merged into one task by their hash
        futures = self.client.map(_apply_batch, [fn] * len(batches), batches, pure=False)
        try:
            for future in futures:
                yield from future.result()
        finally:
            self.client.cancel(futures)


def _apply_batch(fn: Callable, batch: list) -> list:
    return [fn(item) for item in batch]


MIN_CHUNKS_PER_WORKER = 4  # less work than this runs in this process: starting local workers would cost more


@contextmanager
def executor(n_jobs: int, n_chunks: int | None = None) -> Iterator[Any]:
    """A ``map(fn, items, chunksize)`` over ``n_jobs`` worker processes (see the module's docstring): the named
    Dask scheduler when there is one, else a local cluster for ``n_jobs > 1`` (at most one per core) and at least
    MIN_CHUNKS_PER_WORKER chunks per worker (``n_chunks``: how many tasks the caller will map), else this process."""
    address = scheduler_address()
    if address:
        client = _client(address)
        try:
            yield DaskExecutor(client)
        finally:
            client.close()
        return
    n_jobs = max(1, min(n_jobs, os.cpu_count() or 1))  # local workers: never more than the cores
    if n_jobs <= 1 or (n_chunks is not None and n_chunks < MIN_CHUNKS_PER_WORKER * n_jobs):
        yield SerialExecutor()
        return
    yield DaskExecutor(_local_client(n_jobs))


_local: dict[int, tuple[Any, Any]] = {}  # n_jobs -> (LocalCluster, Client), kept for this process's later calls


def _local_client(n_jobs: int):
    """This process's local cluster of ``n_jobs`` workers, started on first use and kept until the process exits:
    a run that simulates, then loads, then simulates again starts its workers (and their imports, such as
    bagpipes' grids) once."""
    if n_jobs not in _local:
        import atexit

        import dask
        from distributed import Client, LocalCluster

        # worker processes are spawned (Dask's default): forking a process whose torch thread pool runs can deadlock.
        # The workers' statistical profiler (a stack sample every 10 ms, for the dashboard, which a local cluster
        # here does not serve) slowed bagpipes' many small numpy calls by ~10 %: off.
        with dask.config.set({"distributed.worker.profile.enabled": False}), _environment_kept():
            cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
        if not _local:
            atexit.register(close_local_clusters)
        _local[n_jobs] = (cluster, Client(cluster, set_as_default=False))
    return _local[n_jobs][1]


@contextmanager
def _environment_kept() -> Iterator[None]:
    """Undo what starting workers does to this process's environment. Dask's nanny sets its
    ``distributed.nanny.pre-spawn-environ`` (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...) in ``os.environ``
    before it spawns a worker and leaves it there: every process this one starts later (a DDP rank, a data
    loader's worker) would inherit one thread."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def close_local_clusters() -> None:
    """Stop this process's local clusters (at exit; a later :func:`executor` starts a new one)."""
    while _local:
        _, (cluster, client) = _local.popitem()
        client.close()
        cluster.close()
