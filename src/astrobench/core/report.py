"""Self-contained HTML reports: metrics tables (value +- error beside the anchors) and embedded figures."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from astrobench.core.io import DataFormatError, read_json, write_text_atomic

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:0.9em}
th{background:#f0f0f0}td.num{text-align:right;font-family:monospace}
figure{display:inline-block;margin:0.5em;vertical-align:top}figure img{max-width:520px}
figcaption{font-size:0.8em;color:#555}.meta{color:#555;font-size:0.9em}
"""


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
                    if isinstance(val, dict) and not _is_small_leaf(key):
                        walk(val, path + ".")
                    else:
                        rows.append((exp, method, path, val, node.get(f"{key}_err")))  # noqa: B023 (called in the loop)
            if isinstance(metrics, dict):
                walk(metrics, "")
    return rows


def _is_small_leaf(key: str) -> bool:
    """Dict-valued metrics are named ``<metric>_by_<group>`` or ``*_matrix``; they show as one value."""
    return "_by_" in key or key.endswith("matrix")


def _rounded(value: Any) -> Any:
    """Floats to 4 significant digits, inside dicts and lists too."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(_rounded(value)))
    return html.escape(str(value))


def _run_section(run_dir: Path, anchors: Mapping[str, Mapping]) -> str:
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        raise DataFormatError(run_dir, "not a finished run folder (no metrics.json)")
    m = read_json(metrics_path)
    if not isinstance(m, dict) or not isinstance(m.get("results"), dict):
        raise DataFormatError(metrics_path, "not an astrobench metrics.json (no results)")
    parts = [f"<h2>{html.escape(m.get('task', '?'))} &mdash; {html.escape(run_dir.name)}</h2>"]
    data = m.get("data", {})
    parts.append(f"<p class='meta'>data: {html.escape(json.dumps(data))}<br>seconds: "
                 f"{html.escape(json.dumps({k: round(v, 1) for k, v in m.get('seconds', {}).items()}))}<br>"
                 f"astrobench {html.escape(str(m.get('astrobench_version')))}; error bars: "
                 f"{html.escape(m.get('error_bars', 'bootstrap standard error over test objects'))}</p>")
    parts.append("<table><tr><th>experiment</th><th>method</th><th>metric</th><th>value</th><th>&plusmn;</th>"
                 "<th>anchor</th></tr>")
    for exp, method, metric, val, err in flatten_results(m.get("results", {})):
        anchor = anchors.get(f"{exp}.{method}.{metric}") or anchors.get(f"{exp}.*.{metric}")
        anchor_txt = html.escape(f"{anchor['value']} ({anchor['source']})") if anchor else ""
        err_txt = _fmt(err) if err is not None else ""
        parts.append(f"<tr><td>{exp}</td><td>{method}</td><td>{html.escape(metric)}</td>"
                     f"<td class='num'>{_fmt(val)}</td><td class='num'>{err_txt}</td><td>{anchor_txt}</td></tr>")
    parts.append("</table>")
    for fig in sorted((run_dir / "figures").glob("*.png")):
        b64 = base64.b64encode(fig.read_bytes()).decode()
        parts.append(f"<figure><img src='data:image/png;base64,{b64}'><figcaption>{html.escape(fig.stem)}"
                     "</figcaption></figure>")
    return "\n".join(parts)


def render_report(run_dirs: list[Path], out: Path, title: str = "astrobench report",
                  anchors_of: Callable[[str], Mapping[str, Mapping]] | None = None) -> Path:
    """Write one self-contained HTML page over one or more run folders to ``out`` and return ``out``.
    ``anchors_of(task_name)`` gives a task's published anchors (``Task.anchors``; ``metrics.json``'s ``task``); the
    caller passes it, so that this module needs no task."""
    sections = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
        task_name = metrics.get("task") if isinstance(metrics, dict) else None
        anchors = anchors_of(task_name) if task_name and anchors_of else {}
        sections.append(_run_section(run_dir, anchors))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>")
    write_text_atomic(out, page)
    return out
