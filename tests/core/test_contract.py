"""The contract every registered task honours, checked over the registry (in the spirit of scikit-learn's
``parametrize_with_checks``): a new line in registry.py gets these tests for free."""

from __future__ import annotations

import inspect
import json

import pytest

from astrobench import registry
from astrobench.core.task import Task

TASKS = registry.task_names()


@pytest.fixture(scope="module", params=TASKS)
def task(request) -> Task:
    return registry.get_task(request.param)


def test_the_registry_names_the_task(task):
    assert isinstance(task, Task) and task.name in registry.TASKS
    assert task.summary and task.n_unit


def test_options_are_the_same_keys_at_every_size_and_pass_their_own_check(task):
    keys = None
    for size in task.sizes:
        options = task.options(size)
        json.dumps(options)  # written into config.json as they are
        assert keys is None or set(options) == keys, f"{task.name}: {size} differs in {set(options) ^ keys}"
        keys = set(options)
        assert task.check_options(dict(options)) is not None


def test_simulate_takes_the_common_arguments(task):
    params = inspect.signature(task.simulate).parameters
    assert list(params)[:4] == ["out", "n", "seed", "format"], f"{task.name}.simulate{inspect.signature(task.simulate)}"
    assert params["seed"].default == 0 and params["format"].default is None


def test_anchors_cite_sources_a_reader_can_find(task):
    """Every anchor has a value and a source; a source names a paper, tutorial or data release, never how we build
    (issue numbers, design files)."""
    for key, anchor in task.anchors.items():
        assert "." in key, f"{task.name}: anchor key {key!r} is not a path such as experiment.method.metric"
        assert "value" in anchor and anchor.get("source"), f"{task.name}: {key} lacks a value or a source"
        source = str(anchor["source"]).lower()
        assert "issue" not in source and "design.md" not in source, f"{task.name}: {key}: {anchor['source']!r}"


def test_the_contract_documents_itself():
    for name in ("options", "check_options", "simulate", "simulations", "read", "load", "fit", "evaluate", "figures",
                 "predict"):
        assert inspect.getdoc(getattr(Task, name)), f"Task.{name} has no docstring"


def test_the_contract_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Task()  # type: ignore[abstract]

    class Half(Task):  # the steps are not optional
        def options(self, size):
            return {}

        def simulate(self, out, n, seed=0, format=None, **options):
            return out

        def fit(self, ctx, data):
            return None

        def predict(self, run_dir, data, out):
            return out

    with pytest.raises(TypeError, match="evaluate"):
        Half()


def test_every_task_gets_its_data_through_the_core_or_says_why(task):
    """A task either supplies simulations() and read() (the core simulates, caches and reads) or overrides load()
    with a docstring saying why (data built from several sources)."""
    cls = type(task)
    own = {name for name in ("simulations", "read", "load") if getattr(cls, name) is not getattr(Task, name)}
    says_why = "load" in own and inspect.getdoc(cls.load) != inspect.getdoc(Task.load)
    assert own == {"simulations", "read"} or says_why, f"{task.name}: overrides {sorted(own)}"
    if "load" not in own:
        assert cls.simulator_version, f"{task.name}: no simulator_version"
