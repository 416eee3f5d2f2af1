"""Module boundaries, checked on the source (every import statement, also those inside functions):

- ``astrobench.core`` and ``astrobench.physics`` import no task and not the registry: shared code sits below the
  tasks;
- a task uses another task only through that task's package (``from astrobench.tasks.camels import ...``), never
  one of its modules (``task.py``, ``data.py``, ...) and never a private (underscore) name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import astrobench

PACKAGE = Path(astrobench.__file__).parent
TASKS = sorted(p.name for p in (PACKAGE / "tasks").iterdir() if (p / "__init__.py").is_file())


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every absolute import in a file; names are [] for ``import module``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            out.append((node.lineno, "." * node.level + (node.module or ""), [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
    return out


def violations(root: Path, rule) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for line, module, names in imports(path):
            why = rule(path, module, names)
            if why:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {why}")
    return found


def below_the_tasks(path: Path, module: str, names: list[str]) -> str | None:
    if module.startswith("."):
        return f"relative import {module!r}"
    if module == "astrobench.registry" or module.startswith("astrobench.tasks"):
        return f"imports {module}"
    if module == "astrobench" and {"registry", "tasks"} & set(names):
        return f"imports astrobench.{names}"
    return None


def through_packages(path: Path, module: str, names: list[str]) -> str | None:
    own = path.relative_to(PACKAGE / "tasks").parts[0]
    if module.startswith("."):
        return f"relative import {module!r}"
    parts = module.split(".")
    if parts[:2] != ["astrobench", "tasks"] or len(parts) < 3 or parts[2] == own:
        return None
    if len(parts) > 3:
        return f"imports {module}: use the package astrobench.tasks.{parts[2]}"
    private = [n for n in names if n.startswith("_")]
    return f"imports private {private} from {module}" if private else None


@pytest.mark.parametrize("folder", ["core", "physics"])
def test_shared_code_imports_no_task(folder):
    assert violations(PACKAGE / folder, below_the_tasks) == []


@pytest.mark.parametrize("task", TASKS)
def test_a_task_uses_another_only_through_its_package(task):
    assert violations(PACKAGE / "tasks" / task, through_packages) == []


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The checks fail where they should: a module of another task, a private name, a task imported from core."""
    folder = PACKAGE / "tasks" / "transfer"
    assert through_packages(folder / "x.py", "astrobench.tasks.photoz.task", ["load_for_run"])
    assert through_packages(folder / "x.py", "astrobench.tasks.photoz", ["_cosmology"])
    assert through_packages(folder / "x.py", "astrobench.tasks.photoz", ["load_for_run"]) is None
    assert through_packages(folder / "x.py", "astrobench.tasks.transfer.grid", ["predict"]) is None
    assert below_the_tasks(PACKAGE / "core" / "x.py", "astrobench.registry", ["get_task"])
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from astrobench.tasks.allsky.task import simulated_frames\n")
    assert imports(bad) == [(2, "astrobench.tasks.allsky.task", ["simulated_frames"])]
