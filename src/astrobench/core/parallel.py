"""Worker processes for the simulators and loaders."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def process_pool(n_jobs: int) -> ProcessPoolExecutor:
    """``n_jobs`` worker processes started by a fork server: forking a process whose torch (OpenMP) thread pool is
    running can deadlock the children, as a run that trains one model and then simulates data for the next would."""
    return ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("forkserver"))
