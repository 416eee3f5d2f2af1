"""How many threads a run computes with, and keeping torch, BLAS and OpenMP to that number.

On a machine that other work also uses (a shared JupyterHub, a laptop with a notebook running), a team of as many
threads as cores waits at every parallel region for whichever thread the operating system has paused: measured on 2
cores with one busy process beside it, a small CNN's training steps took 2.8x their time alone on 2 threads and 1.7x
on 1 thread, scikit-learn's histogram boosting 4.9x on 2 threads (`benchmarks/shared_machine.py` measures whole
demos). OpenMP's passive waiting does not help: it made boosting 19x slower even alone. So the default thread count
leaves out the cores other processes are using when the run starts; ``--threads N`` chooses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

SAMPLE_S = 0.5


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(sample_s: float = SAMPLE_S) -> float:
    """Cores that other processes keep busy now: the machine's CPU use over ``sample_s`` seconds (/proc/stat), less
    this process's own; the 1-minute load average where /proc/stat is missing."""
    cores = os.cpu_count() or 1
    first, own_start = _cpu_ticks(), sum(os.times()[:2])
    if first is None:
        return min(float(cores), os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0.0
    time.sleep(sample_s)
    second, own = _cpu_ticks(), sum(os.times()[:2]) - own_start
    busy, total = second[0] - first[0], second[1] - first[1]  # type: ignore[index]
    if total <= 0:
        return 0.0
    return max(0.0, busy / total * cores - own / sample_s)


def free_threads(cores: int, busy: float) -> int:
    """The threads that fit beside ``busy`` cores of other work on ``cores`` cores: at least one."""
    return max(1, min(cores, round(cores - busy)))


def default_threads() -> int:
    """torch's thread count (one per physical core) less the cores other processes are using now."""
    import torch

    return free_threads(torch.get_num_threads(), busy_cores())


@contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """Compute on ``threads`` threads: torch's intra-op pool, and the BLAS and OpenMP pools of numpy, SciPy and
    scikit-learn (threadpoolctl); restored afterwards. ``None`` leaves them as they are."""
    if threads is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)
