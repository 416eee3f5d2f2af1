"""Self-contained HTML reports, answer first: the task's question and the run's answer in sentences, headline tables
(value ± error with units, the anchor and ✔/✘), per-group metrics as small tables, captioned figures, every metric
in a collapsed section, and a footer with the command that reproduces the run. Jinja2 templates in ``templates/``.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astrobench.core.io import DataFormatError, read_json, write_text_atomic
from astrobench.core.summary import GOAL, Headline, anchor_for, format_value, headline_cells

if TYPE_CHECKING:
    import jinja2

    from astrobench.core.task import Task

TaskOf = Callable[[str], "Task | None"]
TEMPLATES = Path(__file__).parent / "templates"
LONG_ROW = 8  # a per-group metric with more groups is shown as a column


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                              lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(style=(TEMPLATES / "style.css").read_text(), **context)


# --- the metric tree ----------------------------------------------------------------------------------------------

def flatten_results(results: dict[str, Any]) -> list[tuple[str, str, str, Any, Any]]:
    """Rows (experiment, method, metric path, value, error) of a results tree; ``*_err`` leaves pair up."""
    rows = []
    for exp, methods in results.items():
        for method, metrics in methods.items():
            def walk(node, prefix):
                for key, val in node.items():
                    if key.endswith("_err") and key[:-4] in node:  # the error bar of a sibling metric
                        continue
                    path = f"{prefix}{key}"
                    if isinstance(val, dict) and not _is_small_table(key):
                        walk(val, path + ".")
                    else:
                        rows.append((exp, method, path, val, node.get(f"{key}_err")))  # noqa: B023 (called in the loop)
            if isinstance(metrics, dict):
                walk(metrics, "")
    return rows


def _is_small_table(key: str) -> bool:
    """Dict-valued metrics are named ``<metric>_by_<group>`` or ``*_matrix``: they show as small tables."""
    return "_by_" in key or key.endswith("matrix")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(_rounded(value))
    return str(value)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def small_tables(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Dict-valued metrics (``*_by_*``: one row of values, ± their ``*_err`` sibling; ``*_matrix``: a labelled grid)
    and confusion matrices (lists of lists, labelled by a sibling ``*_by_*`` of the same length, true × predicted)
    as small tables."""
    tables = []
    for exp, methods in results.items():
        for method, metrics in (methods or {}).items():
            if isinstance(metrics, dict):
                tables += _tables_in(metrics, f"{exp} · {method}")
    return tables


def _tables_in(node: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    tables = []
    for key, val in node.items():
        if key.endswith("_err") or "_err_by_" in key:  # error bars: shown with their values
            continue
        if isinstance(val, dict) and _is_small_table(key) and val:
            if all(isinstance(v, dict) for v in val.values()):  # a matrix: rows × columns
                columns = list(next(iter(val.values())))
                rows = [{"label": r, "cells": [_fmt(v.get(c)) for c in columns]} for r, v in val.items()]
                tables.append({"caption": f"{where} · {key}", "corner": "", "columns": columns, "rows": rows})
            else:
                errs = node.get(f"{key}_err") or node.get(key.replace("_by_", "_err_by_")) or {}
                values = [format_value(v, errs.get(k)) if isinstance(v, (int, float)) and not isinstance(v, bool)
                          else _fmt(v) for k, v in val.items()]
                if len(val) > LONG_ROW:  # one row per group: a wide row would run off the page
                    rows = [{"label": k, "cells": [v]} for k, v in zip(val, values)]
                    tables.append({"caption": f"{where} · {key}", "corner": "", "columns": ["value"], "rows": rows})
                else:
                    tables.append({"caption": f"{where} · {key}", "corner": "", "columns": list(val),
                                   "rows": [{"label": "value", "cells": values}]})
        elif key.endswith("confusion_matrix") and isinstance(val, list) and val and isinstance(val[0], list):
            labels = next((list(v) for k, v in node.items() if "_by_" in k and isinstance(v, dict)
                           and len(v) == len(val)), [str(i) for i in range(len(val))])
            rows = [{"label": f"true {labels[i]}", "cells": [str(x) for x in row]} for i, row in enumerate(val)]
            tables.append({"caption": f"{where} · {key} (rows: true, columns: predicted)", "corner": "",
                           "columns": [f"pred. {x}" for x in labels], "rows": rows})
        elif isinstance(val, dict):
            tables += _tables_in(val, f"{where} · {key}")
    return tables


# --- one run ------------------------------------------------------------------------------------------------------

def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A finished run's metrics.json; DataFormatError (one line) for a folder without one or a file that is not an
    astrobench metrics.json."""
    path = Path(run_dir) / "metrics.json"
    if not Path(run_dir).is_dir():
        raise DataFormatError(run_dir, "not a run folder (no such folder)")
    if not path.exists():
        raise DataFormatError(run_dir, "not a finished run folder (no metrics.json)")
    m = read_json(path)
    if not isinstance(m, dict) or not isinstance(m.get("results"), dict) or not isinstance(m.get("task"), str):
        raise DataFormatError(path, "not an astrobench metrics.json (no task and results)")
    return m


def _headline_tables(task: Task | None, results: Mapping[str, Any], caveats: Mapping[str, str],
                     refs: list[str]) -> list[dict[str, Any]]:
    """Per experiment: one row per method, one value and anchor column pair per headline metric."""
    if task is None:
        return []
    by_experiment: dict[str, list[Headline]] = {}
    for h in task.headlines:
        by_experiment.setdefault(h.experiment, []).append(h)
    tables = []
    for exp, headlines in by_experiment.items():
        columns = [{c.method: c for c in headline_cells(results, h, task.anchors)} for h in headlines]
        methods = list(dict.fromkeys(m for col in columns for m in col))
        if not methods:
            continue
        rows = []
        for method in methods:
            cells = []
            for h, col in zip(headlines, columns):
                cell = col.get(method)
                cells.append(_cell_view(cell, h, caveats.get(f"{exp}.{method}"), refs) if cell else
                             {"text": "—", "caveat": None, "check": None, "anchor": "", "ref": None})
            rows.append({"method": method, "control": any(method in h.controls for h in headlines), "cells": cells})
        tables.append({"experiment": exp, "rows": rows,
                       "headers": [{"label": h.label, "unit": h.unit, "better": h.better} for h in headlines]})
    return tables


def _cell_view(cell, headline: Headline, caveat: str | None, refs: list[str]) -> dict[str, Any]:
    anchor, ref = "", None
    if cell.anchor:
        source = str(cell.anchor.get("source", ""))
        text = str(cell.anchor["value"]).replace(">=", "≥").replace("<=", "≤")
        anchor = f"goal {text}" if source == GOAL else f"published {text}"
        if source and source != GOAL:
            if source not in refs:
                refs.append(source)
            ref = refs.index(source) + 1
    return {"text": format_value(cell.value, cell.err), "caveat": caveat, "check": cell.check, "anchor": anchor,
            "ref": ref}


def _figures(run_dir: Path, task: Task | None) -> list[dict[str, Any]]:
    figures = []
    for fig in sorted((run_dir / "figures").glob("*.png")):
        title, caption = (task.caption(fig.stem) if task else None) or (fig.stem.replace("_", " ").capitalize(), "")
        data = fig.read_bytes()
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # PNG header
        figures.append({"title": title, "caption": caption, "data": base64.b64encode(data).decode(),
                        "wide": height > 0 and width / height > 2.2})  # a row of panels: the page's full width
    return figures


def _tree(results: Mapping[str, Any], anchors: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for exp, method, metric, value, err in flatten_results(dict(results)):
        anchor = anchor_for(anchors, exp, method, metric)
        rows.append({"experiment": exp, "method": method, "metric": metric, "value": _fmt(value),
                     "err": "" if err is None else _fmt(err),
                     "anchor": f"{anchor['value']} ({anchor['source']})" if anchor else ""})
    return rows


def _run_summary(run_dir: Path, task_of: TaskOf | None) -> dict[str, Any]:
    """What the index and the report both show of a run: task, name, size, seed, question and answers, with the
    metrics.json and the Task object they came from (``metrics``, ``task_obj``)."""
    m = read_metrics(run_dir)
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else {}
    task = task_of(m["task"]) if task_of else None
    size = (config or {}).get("size", "?")
    return {"task": m["task"], "name": run_dir.name, "size": size, "seed": (config or {}).get("seed", "?"),
            "question": task.question if task else "",
            "answers": task.answers(m["results"], size) if task else [], "metrics": m, "task_obj": task}


def _run_view(run_dir: Path, task_of: TaskOf | None) -> dict[str, Any]:
    view = _run_summary(run_dir, task_of)
    m, task = view["metrics"], view["task_obj"]
    results = m["results"]
    caveats = task.caveats(results, view["size"]) if task else {}
    refs: list[str] = []
    env = m.get("environment") or {}
    data = m.get("data") or {}
    return {
        **view,
        "headline_tables": _headline_tables(task, results, caveats, refs), "references": refs,
        "small_tables": small_tables(results),
        "figures": _figures(run_dir, task),
        "tree": _tree(results, task.anchors if task else {}),
        "command": m.get("command") or f"astrobench run {m['task']} (this run predates recorded commands)",
        "data": ", ".join(f"{k}: {v}" for k, v in data.items() if not isinstance(v, (dict, list)))
                or "not recorded",
        "error_bars": m.get("error_bars", "bootstrap standard error over test objects"),
        "seconds": ", ".join(f"{k} {v:.0f} s" for k, v in (m.get("seconds") or {}).items()),
        "versions": ", ".join(f"{k} {v}" for k, v in env.items()) or f"astrobench {m.get('astrobench_version')}",
    }


def _comparison(views: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Headline metrics of two or more runs of one task side by side, with each run's difference to the first."""
    task = views[0]["task_obj"] if views else None
    if len(views) < 2 or len({v["task"] for v in views}) != 1 or task is None:
        return None
    trees = [v["metrics"]["results"] for v in views]
    rows = []
    for h in task.headlines:
        per_run = [{c.method: c for c in headline_cells(t, h, task.anchors)} for t in trees]
        for method in dict.fromkeys(m for cells in per_run for m in cells):
            first = per_run[0].get(method)
            cells = []
            for cells_of_run in per_run:
                c = cells_of_run.get(method)
                delta = "" if c is None or first is None else f"{c.value - first.value:+.3g}"
                cells.append({"text": "—" if c is None else format_value(c.value, c.err, h.unit), "delta": delta})
            rows.append({"experiment": h.experiment, "label": h.label, "method": method, "cells": cells})
    return {"runs": [f"{v['metrics']['task']}/{v['name']}" for v in views], "rows": rows}


def render_report(run_dirs: list[Path], out: Path, title: str = "astrobench report",
                  task_of: TaskOf | None = None) -> Path:
    """Write one self-contained HTML page over one or more run folders to ``out`` and return ``out``; two or more
    runs of one task are also compared side by side. ``task_of(name)`` gives the Task that describes a run (its
    question, headline metrics, anchors, figure captions), or None; the caller passes it, so that this module
    needs no task."""
    runs = [Path(r) for r in run_dirs]
    views = [_run_view(r, task_of) for r in runs]
    page = _render("report.html.j2", title=title, runs=views, comparison=_comparison(views))
    write_text_atomic(out, page)
    return out


def render_index(run_dirs: list[Path], out: Path, title: str, task_of: TaskOf | None = None) -> Path:
    """Write an index page to ``out``: every run's task, question and answer, and a link to its report.html."""
    rows = []
    for run_dir in map(Path, run_dirs):
        view = _run_summary(run_dir, task_of)
        total = (view["metrics"].get("seconds") or {}).get("total")
        rows.append({**view, "link": os.path.relpath(run_dir / "report.html", Path(out).parent),
                     "total": "" if total is None else f"{total:.0f} s"})
    footer = f"written {datetime.now():%Y-%m-%d %H:%M}; seed {rows[0]['seed'] if rows else '?'}"
    write_text_atomic(out, _render("index.html.j2", title=title, runs=rows, footer=footer))
    return out

