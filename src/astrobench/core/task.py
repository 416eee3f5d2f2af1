"""The surface every task offers, and the context a run hands to it."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from rich.console import Console

from astrobench.core.io import cache_dir, config_key, current_umask
from astrobench.core.summary import Headline, headline_cells, ranked_sentence
from astrobench.core.tracking import Tracking
from astrobench.core.training import TrainConfig

console = Console(stderr=True)
LOSS_CAPTION = {"loss_*": ("Training curve", "Training and validation loss per epoch; the weights kept are the "
                                             "epoch's with the lowest validation loss.")}


@dataclass
class RunContext:
    """What a task's ``run`` gets: the run folder, the resolved configuration, timers and data facts."""

    run_dir: Path
    config: dict[str, Any]
    resume: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    data_info: dict[str, Any] = field(default_factory=dict)
    error_bars: str | None = None  # what the ``_err`` values are, when not the default bootstrap over test objects
    # in a rank that does not own the run (DDP): the owner's run folder, whose checkpoints this rank reads; its own
    # run_dir is then a scratch folder for what it produces outside training
    owner_run_dir: Path | None = None
    tracking: Tracking | None = None  # the run's logger (TensorBoard, MLflow) for every training, when there is one

    @property
    def options(self) -> dict[str, Any]:
        """The task's resolved options (defaults at the run's size, then ``--set``)."""
        return self.config["options"]

    @property
    def seed(self) -> int:
        """The run's ``--seed`` (fixes data, split and training)."""
        return int(self.config["seed"])

    @property
    def progress(self) -> bool:
        """Whether to show progress bars and log lines (off with ``--no-progress`` and in tests)."""
        return bool(self.config.get("progress", True))

    @property
    def figures(self) -> Path:
        """The run's ``figures/`` folder (made on first use)."""
        path = self.run_dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def seed_model(self, experiment: str, method: str) -> None:
        """Seed torch before building one experiment's model, from the run seed and the model's name, so its
        initialisation does not depend on which experiments ran before it."""
        import lightning

        lightning.seed_everything(int(config_key({"seed": self.seed, "model": f"{experiment}.{method}"}), 16) % 2**31,
                                  verbose=False)

    def checkpoint_dir(self, experiment: str, method: str) -> Path:
        """Where one model's checkpoints live: in the run folder of the process that owns the run (every rank of a
        DDP run must resume from, and load the best weights of, the same files)."""
        return (self.owner_run_dir or self.run_dir) / "checkpoints" / f"{experiment}.{method}"

    def train_config(self, **overrides) -> TrainConfig:
        """Training budget from the task options (``max_epochs``, ``batch_size``, ``patience``) and the hardware
        options of the command line; ``overrides`` must name TrainConfig fields."""
        opts, hw = self.options, self.config["trainer"]
        cfg = TrainConfig(
            max_epochs=opts.get("max_epochs", 20), batch_size=opts.get("batch_size", 128),
            patience=opts.get("patience", 5), seed=self.seed, accelerator=hw["accelerator"], devices=hw["devices"],
            num_nodes=hw["num_nodes"], strategy=hw["strategy"], progress=self.progress, tracking=self.tracking,
        )
        return dataclasses.replace(cfg, **overrides)

    @contextmanager
    def timer(self, phase: str) -> Iterator[None]:
        """Accumulate wall-clock seconds of a phase (simulate, fit, evaluate) into metrics.json."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def log(self, message: str) -> None:
        """Print one line, prefixed with the task's name, to stderr (unless progress is off)."""
        if self.progress:
            console.print(f"[bold cyan]{self.config['task']}[/] {message}")


def cached(task: str, version: str, key: dict[str, Any], build: Callable[[Path], Path], filename: str) -> Path:
    """Return ``cache/<task>/<hash>/<filename>``, building it with ``build(folder)`` the first time.

    The hash covers the configuration and the simulator version, so a changed simulator never reuses
    stale data. The build goes to a temporary folder that is renamed into place only when complete.
    """
    folder = cache_dir() / task / config_key({"version": version, **key})
    target = folder / filename
    if target.exists():
        return target
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))  # private to this process
    try:
        build(tmp)
        tmp.chmod(0o777 & ~current_umask())  # readable by others, like any folder: it was private while building
        shutil.rmtree(folder, ignore_errors=True)  # a stale incomplete folder (no target inside)
        try:
            tmp.rename(folder)
        except OSError:  # another run finished the same build first: use theirs
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass(frozen=True)
class Simulation:
    """One simulated file a run needs, made once and cached.

    ``key`` is everything the file depends on (sizes, seed, simulator options); with the simulator version it names
    the cache folder. ``write(folder)`` writes the file ``filename`` into ``folder`` in the task's real on-disk format
    and returns its path. ``owner`` / ``version`` name another task's simulator whose cache this file shares (a task
    that reuses another task's data); by default the task's own name and ``simulator_version``."""

    key: Mapping[str, Any]
    filename: str
    write: Callable[[Path], Path]
    owner: str | None = None
    version: str | None = None


@dataclass
class Evaluation:
    """What the evaluate step hands on: ``results`` is the results tree of metrics.json (numbers, lists, strings);
    ``outputs`` holds the arrays the figures step draws (predictions, samples) and is never written."""

    results: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A task: one hack project as a pipeline of steps that the runner calls in order and times the same way.

    ``load(ctx) -> data``  (timed as ``simulate`` and ``load``) → ``fit(ctx, data) -> models`` (``fit``) →
    ``evaluate(ctx, data, models) -> Evaluation`` (``evaluate``) → ``figures(ctx, data, models, evaluation)``
    (``figures``). The base class's ``load`` owns simulate-or-read: without ``--data`` it writes the files
    ``simulations(ctx)`` describes (cached) and records them in ``ctx.data_info``; with ``--data`` it takes the
    user's file; then it calls the task's ``read``. A task whose data are built from other sources (several
    simulators, real evaluation frames beside simulated training frames) overrides ``load``.

    Subclasses set the class attributes and implement the abstract methods; :func:`run_steps` runs them.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    n_unit: ClassVar[str] = ""  # what --n counts
    simulator_version: ClassVar[str] = ""  # part of every cache key: a changed simulator never reuses stale files
    bytes_per_object: ClassVar[float] = 0  # memory held per --n unit, simulated or loaded (0: no check)
    count_options: ClassVar[tuple[str, ...]] = ()  # options that count --n units (ints or lists of ints, summed)
    # "experiment.method.metric" -> {"value": ..., "source": ...}: the published numbers a run is compared with
    # (read-only here; a task assigns its own mapping)
    anchors: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType({})
    sizes: ClassVar[tuple[str, ...]] = ("smoke", "quick", "full")
    min_objects: ClassVar[int] = 0  # --n units in the small data set `example` writes (0: no simulator of its own)
    # what the report leads with: the hack's question in one sentence, and the metrics that answer it
    question: ClassVar[str] = ""
    headlines: ClassVar[tuple[Headline, ...]] = ()
    # figure file stem (an fnmatch pattern: "loss_*") -> (title, one-line caption), for the report; the loss curves
    # that core.plots.loss_curves draws have a caption already (LOSS_CAPTION), which a task may override
    figure_captions: ClassVar[Mapping[str, tuple[str, str]]] = MappingProxyType({})

    def caption(self, stem: str) -> tuple[str, str] | None:
        """The (title, caption) of the figure file ``stem``: the task's own, else the loss curves' default."""
        import fnmatch

        for pattern, caption in [*self.figure_captions.items(), *LOSS_CAPTION.items()]:  # the task's first
            if fnmatch.fnmatch(stem, pattern):
                return caption
        return None

    # "experiment.method" (fnmatch patterns) -> note: methods whose numbers the smaller sizes cannot be trusted on
    # (a network the quick budget does not converge), said next to the numbers in smoke and quick runs
    quick_caveats: ClassVar[Mapping[str, str]] = MappingProxyType({})

    def caveats(self, results: Mapping[str, Any], size: str) -> dict[str, str]:
        """Notes that qualify a method's numbers in this run, ``"experiment.method" -> note``; the report and the
        answers print them next to the numbers. By default :attr:`quick_caveats` in runs below the full size."""
        if size == "full":
            return {}
        import fnmatch

        present = [f"{e}.{m}" for e, methods in results.items() if isinstance(methods, Mapping) for m in methods]
        return {key: note for pattern, note in self.quick_caveats.items() for key in fnmatch.filter(present, pattern)}

    def answers(self, results: Mapping[str, Any], size: str) -> list[str]:
        """The run's answer to :attr:`question` in sentences built from its own numbers: by default one per
        headline metric (which method is best, and whether the next is within the error bars), then any sentence
        the task wrote into ``results["summary"]["answers"]``."""
        caveats = self.caveats(results, size)
        sentences = [s for h in self.headlines
                     if (s := ranked_sentence(headline_cells(results, h, self.anchors), h, caveats))]
        summary = results.get("summary") or {}
        return sentences + _sentences(summary.get("answer")) + _sentences(summary.get("answers"))

    def objects_in_run(self, options: dict[str, Any]) -> float:
        """How many --n units a run with ``options`` simulates or loads (for the memory check before it starts)."""
        return float(sum(sum(v) if isinstance(v, (list, tuple)) else v for k in self.count_options
                         if isinstance(v := options.get(k, 0), (int, float, list, tuple))))

    @abstractmethod
    def options(self, size: str) -> dict[str, Any]:
        """Every task option with its default at ``size`` (smoke, quick or full)."""

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Check option values beyond their types (ranges, list lengths); raise ConfigError. Returns ``options``."""
        return options

    @abstractmethod
    def simulate(self, out: str | Path, n: int, seed: int = 0, format: str | None = None, **options) -> Path:
        """Write ``n`` simulated objects (``n_unit``) with ``seed`` to ``out`` in the task's real on-disk format
        (``format`` where it has several; ``options`` are the simulator's own keywords); return the written path."""

    def example(self, out: str | Path) -> Path:
        """Write a small data set that a run can read (``min_objects`` of them, seed 0) in the real format to
        ``out``; return its path (what ``--data`` takes). Raises ConfigError for a task without a simulator."""
        from astrobench.core.io import ConfigError

        if not self.min_objects:
            raise ConfigError(f"{self.name} has no simulator of its own")
        return self.simulate(out, n=self.min_objects, seed=0)

    # --- the steps ------------------------------------------------------------------------------------------------

    def simulations(self, ctx: RunContext) -> Mapping[str, Simulation]:
        """The simulated files a run without ``--data`` reads, by name (``"data"`` where there is one)."""
        raise NotImplementedError(f"{self.name}: no simulations(); a task without one overrides load()")

    def read(self, ctx: RunContext, paths: Mapping[str, Path]) -> Any:
        """Read and check the files: the simulated ones by the names of :meth:`simulations`, or the user's file as
        ``{"data": path}``. Raises DataFormatError naming the file. Returns whatever ``fit`` takes."""
        raise NotImplementedError(f"{self.name}: no read(); a task without one overrides load()")

    def load(self, ctx: RunContext) -> Any:
        """Simulate (cached) or take ``--data``, then :meth:`read`; times ``simulate`` and ``load`` and records the
        source and path(s) in ``ctx.data_info``. Returns the data the other steps take."""
        if ctx.config["data"] is None:
            with ctx.timer("simulate"):
                paths = {key: simulated(sim, self) for key, sim in self.simulations(ctx).items()}
            ctx.data_info.update(source="simulated",
                                 path=str(paths["data"]) if list(paths) == ["data"] else {k: str(v) for k, v in
                                                                                          paths.items()})
        else:
            paths = {"data": Path(ctx.config["data"])}
            ctx.data_info.update(source="file", path=str(paths["data"]))
        with ctx.timer("load"):
            return self.read(ctx, paths)

    @abstractmethod
    def fit(self, ctx: RunContext, data: Any) -> Any:
        """Train every method on ``data`` (checkpoints under ``ctx.checkpoint_dir``); return the fitted models."""

    @abstractmethod
    def evaluate(self, ctx: RunContext, data: Any, models: Any) -> Evaluation:
        """Score the fitted ``models`` on the held-out part of ``data``; return the results tree (with ``_err``
        values) and the arrays the figures step draws."""

    def figures(self, ctx: RunContext, data: Any, models: Any, evaluation: Evaluation) -> None:
        """Draw the run's figures into ``ctx.figures`` (PNG); by default none."""
        return None

    @abstractmethod
    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        """Apply the models saved in the finished run folder ``run_dir`` to the real-format file ``data``; write the
        predictions (CSV) to ``out`` and return it."""


def _sentences(node: Any, label: str = "") -> list[str]:
    """The strings in a nested dict of written answers, each after the key that names what it is about (the
    innermost key that is not a generated name like ``q1_...``)."""
    if isinstance(node, str):
        return [f"{label}: {node}" if label else node]
    if isinstance(node, Mapping):
        return [s for key, value in node.items()
                for s in _sentences(value, str(key) if isinstance(value, str) and "." in str(key) else "")]
    return []


def simulated(sim: Simulation, task: Task | None = None) -> Path:
    """The path of ``sim``'s file in the cache, written the first time (see :func:`cached`); under ``sim.owner``
    and ``sim.version``, by default ``task``'s name and simulator version."""
    owner, version = sim.owner or (task.name if task else ""), sim.version or (task.simulator_version if task else "")
    if not owner or not version:
        raise ValueError(f"{sim.filename}: a simulation outside a task needs its owner and version")
    return cached(owner, version, dict(sim.key), sim.write, sim.filename)


def run_steps(task: Task, ctx: RunContext) -> dict[str, Any]:
    """Run ``task``'s steps in order, each timed into ``ctx.seconds`` (``load`` times ``simulate`` and ``load``
    itself); return the results tree of metrics.json."""
    data = task.load(ctx)
    with ctx.timer("fit"):
        models = task.fit(ctx, data)
    with ctx.timer("evaluate"):
        evaluation = task.evaluate(ctx, data, models)
    with ctx.timer("figures"):
        task.figures(ctx, data, models, evaluation)
    return evaluation.results
