"""docs/architecture.md's walk-through, kept honest: a tenth task written in one place (here, a toy: the slope of
a noisy line), registered by one entry in the registry, runs through the same runner, run folder, metrics.json and
report as the nine, and its options are checked like theirs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astrobench import registry
from astrobench.core import plots
from astrobench.core.io import ConfigError, DataFormatError, bad_option
from astrobench.core.summary import Headline
from astrobench.core.task import Evaluation, RunContext, Simulation, Task
from astrobench.runner import run


def simulate_line(out: Path, n: int, seed: int = 0, slope: float = 2.0) -> Path:
    """The toy's real format: a CSV with columns x, y (y = slope x + unit Gaussian noise)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, n)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y"])
        w.writerows(zip(x, slope * x + rng.normal(0, 1, n)))
    return out


def read_line(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate the format: a wrong header is one DataFormatError naming the file."""
    with open(path) as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["x", "y"]:
        raise DataFormatError(path, "expected the header x,y")
    table = np.array(rows[1:], dtype=float)
    return table[:, 0], table[:, 1]


class LineTask(Task):
    """The toy: the least-squares slope of y on x, against a published value of 2."""

    name = "line"
    summary = "the slope of a noisy line (a toy, registered only in the tests)"
    n_unit = "points"
    simulator_version = "1"
    anchors = {"fit.ols.slope": {"value": 2.0, "source": "the simulator's true slope"}}
    question = "What is the slope of a noisy line?"
    headlines = (Headline("fit", "slope", "slope", better=""), Headline("fit", "rmse", "residual RMSE"))
    figure_captions = {"residuals": ("Residuals", "Data minus the fitted line.")}

    def options(self, size: str) -> dict[str, Any]:
        return {"n_points": {"smoke": 50, "quick": 200, "full": 2000}[size], "slope": 2.0}

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["n_points"] < 3:
            raise bad_option(options, "n_points", "at least 3")
        return options

    def simulate(self, out, n, seed=0, format=None, slope=2.0) -> Path:
        return simulate_line(Path(out), n, seed, slope)

    # the steps: core simulates (cached) or takes --data, then calls read; the runner times each step

    def simulations(self, ctx: RunContext) -> dict[str, Simulation]:
        key = {"n": ctx.options["n_points"], "seed": ctx.seed, "slope": ctx.options["slope"]}
        return {"data": Simulation(key, "line.csv", lambda folder: simulate_line(folder / "line.csv", key["n"],
                                                                                 key["seed"], key["slope"]))}

    def read(self, ctx: RunContext, paths) -> tuple[np.ndarray, np.ndarray]:
        x, y = read_line(paths["data"])
        ctx.data_info["n"] = len(x)
        return x, y

    def fit(self, ctx: RunContext, data) -> tuple[float, float]:
        x, y = data
        slope, intercept = np.polyfit(x, y, 1)
        return float(slope), float(intercept)

    def evaluate(self, ctx: RunContext, data, models) -> Evaluation:
        (x, y), (slope, intercept) = data, models
        rmse = float(np.sqrt(np.mean((y - slope * x - intercept) ** 2)))
        return Evaluation({"fit": {"ols": {"slope": slope, "rmse": rmse}}}, {"residuals": y - slope * x - intercept})

    def figures(self, ctx: RunContext, data, models, evaluation: Evaluation) -> None:
        fig, ax = plots.plt.subplots()
        ax.hist(evaluation.outputs["residuals"], bins=20)
        plots.save_figure(fig, ctx.figures / "residuals.png")

    def predict(self, run_dir, data, out):
        raise ConfigError("the toy keeps no model")


@pytest.fixture
def line_registered(monkeypatch):
    """The one line a new task adds to registry.TASKS."""
    monkeypatch.setitem(registry.TASKS, "line", f"{__name__}:LineTask")


def test_a_tenth_task_runs_through_the_same_path(line_registered, tmp_path):
    run_dir = run("line", out=tmp_path, name="toy", seed=0, overrides={"size": "smoke"})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"] == "line" and metrics["data"]["source"] == "simulated" and metrics["data"]["n"] == 50
    assert Path(metrics["data"]["path"]).name == "line.csv"  # in the cache, under the task's name
    assert metrics["results"]["fit"]["ols"]["slope"] == pytest.approx(2.0, abs=0.1)
    assert 0.5 < metrics["results"]["fit"]["ols"]["rmse"] < 1.5  # the unit noise
    assert set(metrics["seconds"]) == {"simulate", "load", "fit", "evaluate", "figures", "total"}
    assert (run_dir / "figures" / "residuals.png").stat().st_size > 0
    page = (run_dir / "report.html").read_text()
    assert "What is the slope of a noisy line?" in page and "published 2.0 [1]" in page  # question, anchor
    assert "<li>the simulator&#39;s true slope</li>" in page  # its citation


def test_a_tenth_task_gets_the_checks_of_the_nine(line_registered, tmp_path):
    with pytest.raises(ConfigError, match="option n_points must be at least 3, got 2"):
        run("line", out=tmp_path, name="bad", overrides={"size": "smoke", "n_points": 2})
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match="expected the header x,y"):
        run("line", data=bad, out=tmp_path, name="badfile", overrides={"size": "smoke"})
    assert not (tmp_path / "line" / "badfile").exists()  # a failed new run leaves nothing behind
