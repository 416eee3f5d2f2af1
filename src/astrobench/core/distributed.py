"""Which process owns a run when Lightning trains on several processes (DDP).

With ``--strategy ddp`` Lightning's launcher starts the command line again in every other rank (``torchrun`` and
SLURM start every rank themselves). One process, global rank 0, owns the run: it makes the run folder, writes
``config.json``, the checkpoints, ``metrics.json``, the figures and the report. Every other rank finds that folder
(``ASTROBENCH_RUN_DIR``, set by the owner before Lightning starts the other ranks; else ``--out/TASK/--name`` or
``--resume``), reads its ``config.json``, and replays the task beside the owner so that it reaches every training
step in the same order; what it produces outside training goes to a private scratch folder that is deleted at the
end, and writes it would make into the owner's folder are dropped (:func:`owned_elsewhere`). Nothing is written
twice.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RUN_DIR_ENV = "ASTROBENCH_RUN_DIR"
WAIT_FOR_OWNER_S = 120.0  # how long another rank waits for the owner's config.json (torchrun / SLURM start together)

_owner_run_dir: Path | None = None  # set in a non-owning rank: the owner's run folder, where this rank never writes


def global_rank() -> int:
    """This process's global rank from the launchers' environment variables (0 when nothing launched it): ``RANK``
    (torchrun, Lightning's DDP children), else ``SLURM_PROCID`` in a SLURM job of several tasks, else ``NODE_RANK`` /
    ``LOCAL_RANK`` (non-zero in any process but the first)."""
    env = os.environ
    if env.get("RANK", "").strip():
        return int(env["RANK"])
    if env.get("SLURM_PROCID", "").strip() and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return int(env["SLURM_PROCID"])
    node, local = int(env.get("NODE_RANK", 0) or 0), int(env.get("LOCAL_RANK", 0) or 0)
    return node * 1000 + local  # not the true global rank, but non-zero exactly when this is not the first process


def is_global_zero() -> bool:
    """True in the process that owns the run (global rank 0, see :func:`global_rank`)."""
    return global_rank() == 0


def announce_owner(run_dir: Path) -> None:
    """In the owning process: tell the ranks Lightning will start which run folder they belong to."""
    os.environ[RUN_DIR_ENV] = str(Path(run_dir).resolve())


def find_owner_run_dir(out: str | Path, task: str | None, name: str | None, resume: str | Path | None,
                       wait_s: float = WAIT_FOR_OWNER_S) -> Path:
    """In a non-owning rank: the owner's run folder, once its ``config.json`` is there (raises ConfigError after
    ``wait_s`` seconds, or at once when nothing names the folder)."""
    from astrobench.core.io import ConfigError

    if os.environ.get(RUN_DIR_ENV):
        run_dir = Path(os.environ[RUN_DIR_ENV])
    elif resume is not None:
        run_dir = Path(resume)
    elif task and name:
        run_dir = Path(out) / task / name
    else:
        raise ConfigError(f"rank {global_rank()}: a run started by torchrun or SLURM needs --name (or --resume) so "
                          "every rank finds the same run folder")
    deadline = time.monotonic() + wait_s
    while not (run_dir / "config.json").exists():
        if time.monotonic() > deadline:
            raise ConfigError(f"rank {global_rank()}: {run_dir / 'config.json'} did not appear within {wait_s:.0f} s "
                              "(is rank 0 running, and is the folder on a file system every node sees?)")
        time.sleep(0.2)
    return run_dir


def set_owner_run_dir(run_dir: Path | None) -> None:
    """In a non-owning rank: writes into ``run_dir`` are the owner's to make (see :func:`owned_elsewhere`)."""
    global _owner_run_dir
    _owner_run_dir = None if run_dir is None else Path(run_dir).resolve()


def owned_elsewhere(path: str | Path) -> bool:
    """True when ``path`` lies in a run folder another process owns: this rank must not write it."""
    if _owner_run_dir is None:
        return False
    try:
        Path(path).resolve().relative_to(_owner_run_dir)
    except ValueError:
        return False
    return True


def wait_for_other_ranks() -> None:
    """At the end of a run, in every rank: wait until all ranks have finished, so that the command the user typed
    returns only when no rank is left working (a no-op without a process group)."""
    import torch.distributed as torch_dist

    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
