"""Run a task: configuration -> run folder -> metrics.json, figures, report."""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning

from astrobench import __version__
from astrobench.core import distributed as dist
from astrobench.core.io import ConfigError, DataFormatError, read_run_config, write_json_atomic
from astrobench.core.metrics import N_BOOT
from astrobench.core.report import render_index, render_report
from astrobench.core.task import RunContext, run_steps
from astrobench.core.threads import default_threads, limited_threads
from astrobench.core.tracking import Tracking, check_tracking, finish_run, start_run
from astrobench.registry import get_task, task_names, task_or_none

ERROR_BARS = f"bootstrap standard error over test objects ({N_BOOT} resamples)"


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict; values are Python literals (never evaluated as code), else strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out[key] = value
    return out


def apply_overrides(defaults: dict[str, Any], overrides: dict[str, Any], task: str) -> dict[str, Any]:
    """``defaults`` updated by ``overrides``; unknown keys and values of the wrong type are a ConfigError."""
    options = dict(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            raise ConfigError(f"unknown option {key!r} for task {task}; known: {', '.join(sorted(defaults))}")
        default = defaults[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"option {key} expects True or False, got {value!r}")
        elif isinstance(default, int) and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ConfigError(f"option {key} expects an integer, got {value!r}")
        elif isinstance(default, float):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"option {key} expects a number, got {value!r}")
            value = float(value)
        elif isinstance(default, (list, tuple)) and not isinstance(value, (list, tuple)):
            raise ConfigError(f"option {key} expects a list, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            value = str(value)
        options[key] = list(value) if isinstance(value, tuple) else value
    return options


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


@dataclass(frozen=True)
class Execution:
    """How a run executes, as opposed to what it computes (the task, data, size, seed and options).

    ``accelerator``, ``devices`` (per node), ``num_nodes`` and ``strategy`` go to the Lightning Trainer
    (``--accelerator``, ``--devices``, ``--num-nodes``, ``--strategy``). ``progress``: progress bars and log lines
    (``--no-progress``); ``None`` shows them when standard error is a terminal. ``logger`` and ``tracking_uri``:
    where training curves and results are tracked besides the run folder (``--logger``, ``--tracking-uri``;
    :mod:`astrobench.core.tracking`). ``threads``: torch's, BLAS's and OpenMP's threads (``--threads``; default
    one per core not busy with other work when the run starts). The thread count changes the order of
    floating-point sums, so it is part of what reproduces a run's numbers: config.json records it."""

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    progress: bool | None = None
    logger: str = "csv"
    tracking_uri: str | None = None
    threads: int | None = None

    def thread_count(self) -> int:
        """The threads a run computes with: ``--threads``, or one per core less the cores other processes are
        using when the run starts (:mod:`astrobench.core.threads`)."""
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ConfigError(f"--threads must be a whole number of at least 1, got {self.threads!r}")
        if self.threads:
            return self.threads
        import torch

        threads, cores = default_threads(), torch.get_num_threads()
        if threads < cores and self.shows_progress():
            from astrobench.core.task import console

            console.print(f"other processes are using {cores - threads} of {cores} cores: computing on {threads} "
                          "thread(s) (choose with --threads)")
        return threads

    def shows_progress(self) -> bool:
        """Whether this run draws progress bars and log lines."""
        return sys.stderr.isatty() if self.progress is None else bool(self.progress)

    def trainer(self) -> dict[str, Any]:
        """The Lightning Trainer's settings, as config.json records them."""
        return {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
                "strategy": self.strategy}


def check_trainer(hardware: Execution) -> None:
    """Refuse hardware flags before anything is created (Lightning would refuse some only inside the first fit, and
    accept others that cannot run here): an unknown strategy or accelerator, fewer than one node, more CPU
    processes than cores, a GPU that is not there."""
    import torch
    from lightning.pytorch.strategies import StrategyRegistry

    accelerator, devices, num_nodes, strategy = (hardware.accelerator, hardware.devices, hardware.num_nodes,
                                                 hardware.strategy)
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"--num-nodes must be at least 1, got {num_nodes!r}")
    known = sorted(set(StrategyRegistry.available_strategies()) | {"auto"})
    if strategy not in known:
        raise ConfigError(f"--strategy {strategy!r} is not a Lightning strategy; use one of auto, ddp, ddp_spawn, "
                          f"fsdp, deepspeed ({len(known)} known, e.g. {', '.join(known[:4])}, ...)")
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"--accelerator must be one of {', '.join(ACCELERATORS)}, got {accelerator!r}")
    gpu = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not gpu:
        raise ConfigError(f"--accelerator {accelerator}: this machine has no GPU that torch can use; use "
                          "--accelerator cpu")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not gpu)
    cores = os.cpu_count() or 1
    if on_cpu and isinstance(devices, int) and devices > cores:
        raise ConfigError(f"--devices {devices}: on the CPU each device is one training process, and this machine "
                          f"has {cores} cores{' and no GPU' if not gpu else ''}; use at most --devices {cores}")


def resolve_config(task_name: str, data: str | Path | None = None, quick: bool = False, seed: int = 0,
                   overrides: dict[str, Any] | None = None, execution: Execution | None = None) -> dict[str, Any]:
    """The full configuration of a run, every default written out."""
    task = get_task(task_name)
    overrides = dict(overrides or {})
    size = overrides.pop("size", "quick" if quick else "full")
    if size not in task.sizes:
        raise ConfigError(f"size must be one of {', '.join(task.sizes)}, got {size!r}")
    check_seed(seed)
    if data is not None and not Path(data).exists():
        raise DataFormatError(data, "not found")
    execution = execution or Execution()
    check_trainer(execution)
    check_tracking(execution.logger, execution.tracking_uri)
    return {
        "task": task_name,
        "size": size,
        "seed": int(seed),
        "data": None if data is None else str(Path(data).resolve()),
        "progress": execution.shows_progress(),
        "trainer": execution.trainer(),
        "tracking": {"logger": execution.logger, "tracking_uri": execution.tracking_uri},
        "threads": execution.thread_count(),
        "options": _checked_options(task, task_name, size, overrides),
    }


def _checked_options(task, task_name: str, size: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The task's options at ``size`` with ``overrides``: types, ranges, and whether the data they ask for fit in
    memory (a run that would die of MemoryError half-way is refused before it starts, with the estimate)."""
    from astrobench.core.io import check_memory

    options = task.check_options(apply_overrides(task.options(size), overrides, task_name))
    if task.bytes_per_object and task.count_options:
        named = ", ".join(f"{k}={options[k]}" for k in task.count_options if k in options)
        check_memory(named, task.objects_in_run(options) * task.bytes_per_object)
    return options


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: no path separators, not '.' or '..', no leading dot or dash."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+=,@-]{0,199}", name) or name in (".", ".."):
        raise ConfigError(f"--name {name!r}: a run name is one plain folder name (letters, digits and _ . + = , @ -; "
                          "no '/' or '..', no leading dot or dash)")
    return name


def planned_run_dir(out: str | Path, task: str, name: str | None) -> Path:
    """The folder a new run will use, checked before anything is created: a plain name, a free place, and an
    ``--out`` that is (or can become) a writable folder."""
    name = check_run_name(name) if name is not None else datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out) / task / name
    if run_dir.exists() or run_dir.is_symlink():
        raise ConfigError(f"{run_dir}: run folder exists; choose another --name or use --resume")
    existing = run_dir
    while not existing.exists():  # the deepest part of the path that is there already must be a writable folder
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: no permission to write in {existing}")
    return run_dir


MAX_SEED = 2**32 - 1  # what numpy, torch and Lightning all accept


def check_seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed must be between 0 and {MAX_SEED} (2**32 - 1), got {seed}")
    return seed


def new_run_dir(out: str | Path, task: str, name: str | None) -> tuple[Path, list[Path]]:
    """Make a new run's folder; returns it and the folders this made, deepest first (the run folder and any parents
    that were not there), so that a failed run can remove exactly those."""
    run_dir = planned_run_dir(out, task, name)
    made, folder = [], run_dir
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError:
        raise ConfigError(f"{run_dir}: run folder exists; choose another --name or use --resume") from None
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot make the run folder {run_dir} ({err.strerror})") from None
    return run_dir, made


def discard_failed_run(run_dir: Path, made: list[Path]) -> bool:
    """After a new run failed: remove its folder, and the empty parents it created, unless it holds checkpoints
    (then it is kept for ``--resume``). Returns True when removed."""
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and any(p.is_file() for p in checkpoints.rglob("*")):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    for folder in made[1:]:  # parents, deepest first; only if nothing else has appeared in them
        try:
            folder.rmdir()
        except OSError:
            break
    return True


def run(task_name: str, data: str | Path | None = None, quick: bool = False, out: str | Path = "runs",
        name: str | None = None, seed: int | None = None, overrides: dict[str, Any] | None = None,
        execution: Execution | None = None) -> Path:
    """Run every experiment of a task into a new run folder ``out/task_name/name``; return the folder.

    In a multi-process run (``--strategy ddp``, torchrun, SLURM) only global rank 0 owns the run folder; the
    other ranks follow it (:func:`follow_owner`)."""
    if not dist.is_global_zero():
        return follow_owner(task_name, out, name, None)
    if task_name is None:
        raise ConfigError("name a task to run")
    config = resolve_config(task_name, data, quick, 0 if seed is None else seed, overrides, execution)
    run_dir, made = new_run_dir(out, task_name, name)
    write_json_atomic(run_dir / "config.json", config)
    return _execute(run_dir, config, resumed=False, made=made)


def resume(run_dir: str | Path, task_name: str | None = None, execution: Execution | None = None) -> Path:
    """Continue an unfinished run folder from its checkpoints, with its own config.json; return the folder.
    ``task_name``, when given, must be the run's task. Only the progress display comes from ``execution``."""
    run_dir = Path(run_dir)
    if not dist.is_global_zero():
        return follow_owner(task_name, run_dir.parent.parent, None, run_dir)
    config = read_run_config(run_dir)
    if task_name is not None and task_name != config["task"]:
        raise ConfigError(f"{run_dir} is a run of {config['task']!r}, not {task_name!r}")
    if (run_dir / "metrics.json").exists():
        raise ConfigError(f"{run_dir} is finished (it has metrics.json); start a new run instead")
    config["progress"] = (execution or Execution()).shows_progress()
    return _execute(run_dir, config, resumed=True, made=[])


def _execute(run_dir: Path, config: dict[str, Any], resumed: bool, made: list[Path]) -> Path:
    """Run the task's steps into ``run_dir`` (rank 0), then write metrics.json and the report."""
    dist.announce_owner(run_dir)  # the ranks Lightning starts at the first fit re-run this command: they follow it
    task = get_task(config["task"])
    lightning.seed_everything(config["seed"], verbose=False)  # network initialisation is part of the seed
    with limited_threads(config.get("threads")):
        return _execute_steps(task, run_dir, config, resumed, made)


def _execute_steps(task, run_dir: Path, config: dict[str, Any], resumed: bool, made: list[Path]) -> Path:
    """The steps, metrics.json, the report and the tracking of :func:`_execute`, on the run's threads."""
    ctx = RunContext(run_dir=run_dir, config=config, resume=resumed)
    tracking = Tracking(**config.get("tracking", {}), run_dir=str(run_dir))
    ctx.tracking = start_run(tracking, config, run_dir.name)
    start = time.perf_counter()
    try:
        results = run_steps(task, ctx)
    except KeyboardInterrupt:
        finish_run(ctx.tracking, None, run_dir)
        raise
    except Exception:
        finish_run(ctx.tracking, None, run_dir)
        # a new run that failed leaves nothing behind (the same command, corrected, can use the same name), unless
        # it trained something worth continuing; an interrupted run (Ctrl-C, kill) is always kept for --resume
        if not resumed and not discard_failed_run(run_dir, made):
            print(f"{run_dir}: kept, it holds checkpoints; after fixing the cause, continue it with --resume "
                  f"{run_dir}", file=sys.stderr)
        raise
    ctx.seconds["total"] = time.perf_counter() - start
    metrics = {
        "task": task.name,
        "astrobench_version": __version__,
        "data": ctx.data_info,
        "results": results,
        "seconds": ctx.seconds,
        "error_bars": ctx.error_bars or ERROR_BARS,
        "command": reproduce_command(config, run_dir),
        "environment": environment(),
    }
    write_json_atomic(run_dir / "metrics.json", metrics)
    render_report([run_dir], run_dir / "report.html", title=f"astrobench {task.name}: {run_dir.name}",
                  task_of=task_or_none)
    finish_run(ctx.tracking, results, run_dir)
    dist.wait_for_other_ranks()
    ctx.log(f"done in {ctx.seconds['total']:.0f} s -> {run_dir / 'report.html'}")
    return run_dir


def reproduce_command(config: dict[str, Any], run_dir: Path) -> str:
    """The command line that repeats this run: its task, data, seed and size, and every option that differs from
    the size's default as ``--set``. Same numbers need the same thread count too (torch sums in a different order
    on more threads), which :func:`environment` records."""
    import shlex

    defaults = json.loads(json.dumps(get_task(config["task"]).options(config["size"])))  # tuples as lists
    parts = ["astrobench", "run", config["task"]]
    if config.get("data"):
        parts += ["--data", config["data"]]
    parts += ["--seed", str(config["seed"]), "--set", f"size={config['size']}"]
    if config.get("threads"):
        parts += ["--threads", str(config["threads"])]
    parts += [x for key, value in config["options"].items() if defaults.get(key) != value
              for x in ("--set", f"{key}={_set_value(value)}")]
    parts += ["--out", str(run_dir.parent.parent), "--name", f"{run_dir.name}-again"]
    return shlex.join(parts)


def _set_value(value: Any) -> str:
    """A value as ``--set`` reads it back (:func:`parse_set`), quoted as little as a shell allows: a plain word
    stays bare, lists use double quotes and no spaces."""
    if isinstance(value, str):
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value  # read back as this string
        return json.dumps(value)
    if isinstance(value, (list, tuple, dict)):
        return repr(value).replace("'", '"').replace(", ", ",").replace(": ", ":")
    return repr(value)


def environment() -> dict[str, Any]:
    """The software and the thread count that produced a run (numbers can depend on both)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    env: dict[str, Any] = {"python": platform.python_version()}
    for package in ("torch", "lightning", "numpy", "scikit-learn", "scipy", "astropy"):
        try:
            env[package] = version(package)
        except PackageNotFoundError:
            continue
    env["astrobench"] = __version__
    env["torch threads"] = torch.get_num_threads()
    return env


def follow_owner(task_name: str | None, out: str | Path, name: str | None, resume: str | Path | None) -> Path:
    """A rank other than 0: find the owner's run folder, read its config.json, and replay the task beside the owner
    so that this rank reaches every training step in the same order. Its checkpoints are the owner's; everything
    else it produces goes to a scratch folder, deleted at the end, and nothing is written into the owner's folder
    (the owner alone writes config, checkpoints, metrics, figures and the report)."""
    import tempfile

    run_dir = dist.find_owner_run_dir(out, task_name, name, resume)
    config = read_run_config(run_dir)
    config["progress"] = False  # one progress display: the owner's
    dist.set_owner_run_dir(run_dir)
    scratch = Path(tempfile.mkdtemp(prefix=f"astrobench-rank{dist.global_rank()}-"))
    try:
        lightning.seed_everything(config["seed"], verbose=False)
        ctx = RunContext(run_dir=scratch, config=config, resume=resume is not None, owner_run_dir=run_dir)
        with limited_threads(config.get("threads")):
            run_steps(get_task(config["task"]), ctx)
        dist.wait_for_other_ranks()
    finally:
        dist.set_owner_run_dir(None)
        shutil.rmtree(scratch, ignore_errors=True)
    return run_dir


def demo(out: str | Path = "runs/demo", seed: int = 0, progress: bool | None = None, size: str = "quick",
         tasks: list[str] | None = None, threads: int | None = None) -> Path:
    """Every registered task (or ``tasks``) at ``size`` (quick) on simulated data, each into
    ``out/TASK/demo-STAMP``, then an index page over all runs; returns the index. Shows where it is across the
    tasks (a bar, elapsed time) before each one."""
    names = list(tasks or task_names())
    unknown = [n for n in names if n not in task_names()]
    if unknown or not names:
        raise ConfigError(f"--tasks: unknown task {', '.join(unknown) or '(none given)'}; known tasks: "
                          f"{', '.join(task_names())}")
    out = Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    execution = Execution(progress=progress, threads=threads)
    start, run_dirs = time.perf_counter(), []
    for i, name in enumerate(names):
        _demo_progress(execution, i, names, time.perf_counter() - start)
        run_dirs.append(run(name, out=out, name=f"demo-{stamp}", seed=seed, overrides={"size": size},
                            execution=execution))
    index = out / f"index-{stamp}.html"
    render_index(run_dirs, index, title=f"astrobench demo: {len(run_dirs)} tasks, {size} size, simulated data",
                 task_of=task_or_none)
    _demo_progress(execution, len(names), names, time.perf_counter() - start)
    return index


def _demo_progress(execution: Execution, done: int, names: list[str], elapsed_s: float) -> None:
    """One line: a bar of the tasks done, the next task and the time so far."""
    if not execution.shows_progress():
        return
    from astrobench.core.task import console

    bar = "█" * done + "░" * (len(names) - done)
    what = f"next: {names[done]}" if done < len(names) else "finished"
    console.print(f"[bold]demo[/bold] {bar} {done}/{len(names)} tasks · {what} · {elapsed_s / 60:.1f} min elapsed")
