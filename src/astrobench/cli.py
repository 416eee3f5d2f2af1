"""The ``astrobench`` command line: a thin Typer app that parses options and calls the runner."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from astrobench.core.io import AstrobenchError, ConfigError

app = typer.Typer(
    help="astrobench: the A3Net 2024 school hacks as measured pipelines (simulated data by default, real "
         "data with --data). Add --debug anywhere to see tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SCHEDULER_HELP = ("Dask scheduler for the simulations, e.g. tcp://HOST:8786 (default: $DASK_SCHEDULER_ADDRESS, else "
                  "a local cluster of the task's n_jobs processes).")
SET_HELP = "Task option as key=value (repeatable; values are Python literals, never evaluated as code)."


def _devices(value: str) -> int | str:
    """Lightning's devices: a count, -1 (all), 'auto', or a comma-separated list of device indices."""
    import re

    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value == "auto" or re.fullmatch(r"\d+(,\d+)*,?", value):
        return value
    raise AstrobenchError(f"--devices expects a number, -1, 'auto' or indices like 0,1; got {value!r}")


def _use_scheduler(address: str | None) -> None:
    """--scheduler (or $DASK_SCHEDULER_ADDRESS): checked before anything is created; nobody listening there is one
    line after a few seconds."""
    import os

    from astrobench.core import parallel

    address = address or os.environ.get(parallel.SCHEDULER_ENV)
    if address:
        parallel.set_scheduler(address)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Global options."""


@app.command("list")
def list_tasks():
    """List the registered tasks, what --n counts for each, and their simulator's --set options."""
    from astrobench.registry import get_task, task_names

    for name in task_names():
        task = get_task(name)
        typer.echo(f"{name:14s} {task.summary} (--n counts {task.n_unit})")
        extra = _simulator_options(task)
        if extra:
            typer.echo(" " * 15 + "simulate --set: " + ", ".join(f"{k}={v!r}" for k, v in extra.items()))


def _simulator_options(task) -> dict:
    """The keyword options of a task's ``simulate`` beyond out / n / seed / format, with their defaults."""
    import inspect

    return {name: p.default for name, p in inspect.signature(task.simulate).parameters.items()
            if name not in ("out", "n", "seed", "format") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


@app.command()
def simulate(
    task: str = typer.Argument(..., help="Task name (see `astrobench list`)."),
    out: Path = typer.Option(..., "--out", help="Folder (or file) to write, in the task's real format."),
    n: int = typer.Option(1000, "--n", help="How many objects (the task's natural unit; see `astrobench list`)."),
    seed: int = typer.Option(0, "--seed"),
    format: str | None = typer.Option(None, "--format", help="On-disk format, where the task has several."),
    set_: list[str] | None = typer.Option(None, "--set", help="Simulator option as key=value (repeatable; "
                                             "`astrobench list` shows each task's)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help=SCHEDULER_HELP),
):
    """Simulate a data set and write it in the task's real on-disk format."""
    from astrobench.registry import get_task
    from astrobench.runner import parse_set

    if n < 1:
        raise AstrobenchError(f"--n must be >= 1, got {n}")
    from astrobench.runner import apply_overrides, check_seed

    check_seed(seed)

    task_obj = get_task(task)
    if task_obj.bytes_per_object:
        from astrobench.core.io import check_memory

        check_memory(f"--n {n} ({task_obj.n_unit})", n * task_obj.bytes_per_object)
    _use_scheduler(scheduler)
    defaults = _simulator_options(task_obj)
    try:
        options = apply_overrides(defaults, parse_set(set_), task)
    except AstrobenchError as err:
        raise AstrobenchError(f"simulate: {err}") from None
    path = task_obj.simulate(out, n=n, seed=seed, format=format, **options)
    typer.echo(str(path))


THREADS_HELP = ("Threads for torch, BLAS and OpenMP (default: one per core). Fewer leave cores to other work; "
                "the count is part of what reproduces a run's numbers.")


@app.command()
def run(
    task: str | None = typer.Argument(None, help="Task name (omit with --resume)."),
    data: Path | None = typer.Option(None, "--data", help="Real data in the task's format (default: simulate)."),
    quick: bool = typer.Option(False, "--quick", help="About a minute per task; numbers already mean something."),
    out: Path = typer.Option(Path("runs"), "--out", help="Runs go to OUT/TASK/NAME."),
    name: str | None = typer.Option(None, "--name", help="Run folder name (default: a timestamp)."),
    seed: int | None = typer.Option(None, "--seed", help="Fixes data, split and training (default 0)."),
    devices: str = typer.Option("auto", "--devices", help="Devices per node for the Lightning Trainer."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Nodes for multi-node DDP."),
    strategy: str = typer.Option("auto", "--strategy", help="Lightning strategy, e.g. ddp."),
    accelerator: str = typer.Option("auto", "--accelerator", help="cpu, gpu or auto."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue this run folder from its checkpoints."),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars or log lines."),
    scheduler: str | None = typer.Option(None, "--scheduler", help=SCHEDULER_HELP),
    logger: str = typer.Option("csv", "--logger", help="csv (always written), tensorboard or mlflow: where training "
                               "curves and results are tracked besides the run folder."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking server or store (default: "
                                            "MLFLOW_TRACKING_URI, else sqlite:///OUT/mlflow.db)."),
):
    """Run every experiment of a task and write metrics.json, figures and report.html."""
    from astrobench.runner import Execution, parse_set
    from astrobench.runner import resume as resume_run
    from astrobench.runner import run as run_task

    _use_scheduler(scheduler)
    execution = Execution(accelerator=accelerator, devices=_devices(devices), num_nodes=num_nodes, strategy=strategy,
                          progress=not no_progress, logger=logger, tracking_uri=tracking_uri,
                          threads=threads)
    if resume is not None:
        if data is not None or quick or name is not None or seed is not None or set_:
            raise ConfigError("--resume continues a run with its own config.json; drop --data, --quick, --name, "
                              "--seed and --set")
        run_dir = resume_run(resume, task, execution)
    elif task is None:
        raise ConfigError("name a task to run (or continue a run with --resume FOLDER)")
    else:
        run_dir = run_task(task, data=data, quick=quick, out=out, name=name, seed=seed, overrides=parse_set(set_),
                           execution=execution)
    from astrobench.core.distributed import is_global_zero

    if is_global_zero():  # in a multi-process run, the owner says where the run is
        typer.echo(str(run_dir))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A finished run folder."),
    data: Path = typer.Option(..., "--data", help="New data in the task's real format."),
    out: Path | None = typer.Option(None, "--out", help="Predictions table (CSV; default RUN_DIR/predictions.csv)."),
):
    """Apply a finished run's trained models to new data; write a table of predictions."""
    from astrobench.core.io import ConfigError, read_run_config
    from astrobench.registry import get_task

    config = read_run_config(run_dir)
    out = out or run_dir / "predictions.csv"
    if out.exists():
        raise ConfigError(f"{out}: exists; choose another --out")
    typer.echo(str(get_task(config["task"]).predict(run_dir, data, out)))


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run folders."),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write."),
):
    """One self-contained HTML page over one or many runs."""
    from astrobench.core.io import ConfigError
    from astrobench.core.report import render_report

    if output.is_dir():
        raise ConfigError(f"-o {output}: is a folder; name the HTML file to write, e.g. {output / 'report.html'}")
    from astrobench.registry import task_or_none

    typer.echo(str(render_report(run_dirs, output, task_of=task_or_none)))


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Runs go to OUT/TASK/demo-STAMP, the index to OUT."),
    seed: int = typer.Option(0, "--seed"),
    tasks: str | None = typer.Option(None, "--tasks", help="Comma-separated tasks (default: all): rings,sn_lasso."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars or log lines."),
):
    """Every registered task (or --tasks) in --quick mode on simulated data, then one HTML index of all runs."""
    from astrobench.runner import demo as run_demo

    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks is not None else None
    typer.echo(str(run_demo(out, seed=seed, tasks=names, threads=threads, progress=not no_progress)))


def _one_line(err: BaseException) -> tuple[str, int]:
    """An exception that escaped the task as one line and an exit code: 2 for what bad input or a full machine
    causes (a file that cannot be read or decoded, memory), 1 for anything else (a bug: ask for the traceback)."""
    text = " ".join(str(err).split())[:300]
    if isinstance(err, MemoryError):
        return "out of memory; choose a smaller size (--n, --set size=..., or the option that sets the amount)", 2
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or text}", 2
    if isinstance(err, EOFError):
        return f"a file ended before its data did ({text or 'unexpected end of file'})", 2
    if isinstance(err, (OSError, UnicodeError)):
        return f"{type(err).__name__}: {text}", 2
    return f"{type(err).__name__}: {text} (an astrobench bug or an unchecked input: run with --debug for the " \
           "traceback)", 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: a user error is one line on stderr and exit code 2; anything unexpected is one line and exit 1
    (tracebacks with --debug)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        try:
            code = app(args=argv, prog_name="astrobench", standalone_mode=False)
        except typer.Abort as abort:  # Typer turns an EOFError from any reader into Abort
            if isinstance(abort.__cause__, EOFError):
                raise abort.__cause__ from None
            raise
    except typer.TyperException as err:  # usage errors: Typer's own message (with the usage line), exit 2
        err.show() if hasattr(err, "show") else typer.echo(f"error: {err.format_message()}", err=True)
        return err.exit_code
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except AstrobenchError as err:
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        return 2
    except Exception as err:
        if debug:
            raise
        message, status = _one_line(err)
        typer.echo(f"error: {message}", err=True)
        return status
    return code if isinstance(code, int) else 0


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
