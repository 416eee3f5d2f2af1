"""The contract's run checks over every registered task: a smoke run with one seed, run twice, gives the same
``results``, and its report renders. A new task in registry.py gets these for free.

Two kinds of leaves are exempt, each for a stated reason: wall-clock timings (``*_seconds``), and last-digit noise
from scikit-learn's random forest, which sums its trees' predictions in two threads in no fixed order (1e-12
relative, or absolute for differences of two nearly equal errors such as permutation importances)."""

from __future__ import annotations

import json
import math

import pytest

from astrobench import registry
from astrobench.core.io import ConfigError
from astrobench.runner import run

REL_TOL = ABS_TOL = 1e-12


def differences(a, b, path: str = "") -> list[str]:
    """Leaves where two results trees differ (timings skipped, numbers to REL_TOL / ABS_TOL)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a if not str(k).endswith("seconds") for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        return [] if same else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_differences_finds_what_differs():
    assert differences({"a": 1.0, "fit_seconds": 1.0}, {"a": 1.0, "fit_seconds": 2.0}) == []
    assert differences({"a": [1.0, 2.0]}, {"a": [1.0, 2.5]}) == [".a[1]: 2.0 vs 2.5"]
    assert differences({"a": 1}, {"b": 1}) == [": keys ['a', 'b']"]


@pytest.mark.parametrize("name", registry.task_names())
def test_a_smoke_run_twice_gives_the_same_results_and_a_report(name, tmp_path, task_example):
    runs = [run(name, out=tmp_path, name=f"smoke{i}", seed=0, overrides={"size": "smoke"})
            for i in range(2)]
    first, second = (json.loads((d / "metrics.json").read_text()) for d in runs)
    assert differences(first["results"], second["results"]) == []
    check_report(registry.get_task(name), runs[0])
    check_predict(registry.get_task(name), runs[0], task_example, tmp_path)


def check_report(task, run_dir) -> None:
    """The report leads with the task's question and an answer built from the run's numbers; every figure the run
    drew has a title and caption of its own; the command it records names the run's seed and size."""
    from markupsafe import escape  # the report's templates escape with it

    page = (run_dir / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<table" in page
    assert task.question and str(escape(task.question)) in page
    assert task.headlines, f"{task.name} names no headline metrics"
    results = json.loads((run_dir / "metrics.json").read_text())["results"]
    assert task.answers(results, "smoke"), f"{task.name}: no answer from a smoke run's numbers"
    assert page.index('class="answer"') < page.index('class="headline"')
    for figure in (run_dir / "figures").glob("*.png"):
        assert task.caption(figure.stem), f"{figure.name}: no caption"
    command = json.loads((run_dir / "metrics.json").read_text())["command"]
    assert command.startswith(f"astrobench run {task.name} ")
    assert "--seed 0" in command and "--set size=smoke" in command


def check_predict(task, run_dir, task_example, tmp_path) -> None:
    """``predict`` applies the finished run to the task's example data and writes a table with one row per object
    or more; a task without a model to apply says so in a ConfigError."""
    import csv

    if not task.min_objects:
        with pytest.raises(ConfigError):
            task.predict(run_dir, tmp_path / "none", tmp_path / "pred.csv")
        return
    try:
        table = task.predict(run_dir, task_example(task.name), tmp_path / "pred.csv")
    except ConfigError as err:
        assert "no trained model" in str(err) or "no predict" in str(err), err
        return
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert rows and all(len(row) == len(rows[0]) for row in rows)
