"""The contract's data checks over every registered task (a new task in registry.py gets them for free): the
simulator's files are read back by the task's own reader, as a user's ``--data`` would be; a file cut off half-way
is one DataFormatError, on one line, naming the file; and ``predict`` applies a finished smoke run to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from astrobench import registry
from astrobench.core.io import ConfigError, DataFormatError
from astrobench.core.task import RunContext, Task
from astrobench.runner import resolve_config

WITH_SIMULATOR = [name for name in registry.task_names() if registry.get_task(name).min_objects]


def load_as_user_data(task: Task, path: Path, run_dir: Path):
    """``task.load`` as a run with ``--data path`` at smoke size calls it; returns (data, ctx)."""
    config = resolve_config(task.name, data=path, overrides={"size": "smoke"})
    ctx = RunContext(run_dir=run_dir, config=config)
    return task.load(ctx), ctx


def test_every_task_has_an_example_or_says_why():
    for name in registry.task_names():
        task = registry.get_task(name)
        if not task.min_objects:
            with pytest.raises(ConfigError, match="no simulator of its own"):
                task.example(Path("unused"))


@pytest.mark.parametrize("name", WITH_SIMULATOR)
def test_simulate_then_load_round_trips(name, tmp_path, task_example):
    task, path = registry.get_task(name), task_example(name)
    data, ctx = load_as_user_data(task, path, tmp_path / "run")
    assert data is not None
    assert ctx.data_info["source"] == "file" and ctx.data_info["path"] == str(path)
    assert set(ctx.seconds) == {"load"}  # nothing simulated for a user's file


@pytest.mark.parametrize("name", WITH_SIMULATOR)
def test_a_file_cut_off_half_way_is_one_line_naming_it(name, tmp_path, task_example):
    import shutil

    task, clean = registry.get_task(name), task_example(name)
    root = tmp_path / "data"  # a copy of the example's folder: the example itself stays whole
    shutil.copytree(clean.parent if clean.is_file() else clean, root)
    path = root / clean.name if clean.is_file() else root
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: (-p.stat().st_size, p))
    victim = files[0]  # the largest file of the data set
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(DataFormatError) as err:
        load_as_user_data(task, path, tmp_path / "run")
    message = str(err.value)
    assert "\n" not in message and victim.name in message, message
