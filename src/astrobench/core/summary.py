"""What a run answered, from its own numbers: headline metrics, rankings, anchor checks and number formatting.

A task names its headline metrics (:class:`Headline`); :func:`headline_table` picks them out of a results tree for
every method, :func:`ranked_sentence` says in words which method is best and whether the next one is within the
error bars, and :func:`anchor_check` decides ✔/✘ against a published number or a stated goal where the anchor
gives a bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NOT_CONVERGED = "not converged at quick size: see the full run"
GOAL = "astrobench goal"  # the source of a goal this benchmark sets itself (shown as "goal", not as a citation)


@dataclass(frozen=True)
class Headline:
    """One headline metric of one experiment: ``metric`` is its dotted path inside each method's metrics
    (``"x.rmse"``), ``label`` what a reader calls it, ``unit`` its unit ("" for a pure number), ``better`` which
    way is better ("lower", "higher", or "" where the methods are not ranked on it) and ``controls`` the methods
    that are checks of the metric itself rather than answers (a real-vs-real two-sample test), never ranked."""

    experiment: str
    metric: str
    label: str
    unit: str = ""
    better: str = "lower"
    controls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    """One method's value of a headline metric: ``value`` and its error bar ``err`` (None without one), the
    anchor it is compared with (``{"value": text, "source": citation}``) and the check (True ✔, False ✘, None)."""

    method: str
    value: float
    err: float | None
    anchor: Mapping[str, Any] | None = None
    check: bool | None = None


def leaf(metrics: Any, path: str) -> Any:
    """The value at dotted ``path`` inside ``metrics`` (None where it is missing)."""
    node = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _error(metrics: Any, path: str) -> float | None:
    head, _, last = path.rpartition(".")
    err = leaf(metrics, f"{head}.{last}_err" if head else f"{last}_err")
    return float(err) if isinstance(err, (int, float)) and not isinstance(err, bool) else None


def anchor_for(anchors: Mapping[str, Mapping[str, Any]], experiment: str, method: str,
               metric: str) -> Mapping[str, Any] | None:
    """The anchor of ``experiment.method.metric``, or of ``experiment.*.metric`` (any method), or None."""
    return anchors.get(f"{experiment}.{method}.{metric}") or anchors.get(f"{experiment}.*.{metric}")


_NUMBER = r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)"


def anchor_bounds(anchor: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """The (lower, upper) bound an anchor states: explicit ``at_least`` / ``at_most`` keys, else read from its text:
    ``">= 0.995"``, ``"<= 0.3 px"``, ``"> 1 when ..."``, ``"... (target [0.12, 0.16])"``, or a range ``"0.7-1.5"``
    for a goal. A published number alone (``"0.2365 (real 3D-HST)"``) states no bound: it is a reference, not a
    pass mark."""
    lo, hi = anchor.get("at_least"), anchor.get("at_most")
    if lo is not None or hi is not None:
        return lo, hi
    text = str(anchor.get("value", "")).strip().replace("≥", ">=").replace("≤", "<=")
    # a bound relative to another metric ("<= 0.75 x lm_core_excised.scatter_dex") is no number to check against
    if (m := re.match(rf"(>=|>|<=|<)\s*{_NUMBER}(?![\w.])", text)) and not re.match(r"\s*(x|×)\s", text[m.end():]):
        bound = float(m.group(2))
        return (bound, None) if m.group(1).startswith(">") else (None, bound)
    if m := re.search(rf"target \[{_NUMBER},\s*{_NUMBER}\]", text):
        return float(m.group(1)), float(m.group(2))
    if anchor.get("source") == GOAL and (m := re.fullmatch(rf"{_NUMBER}\s*-\s*{_NUMBER}", text)):
        return float(m.group(1)), float(m.group(2))
    return None, None


def anchor_check(anchor: Mapping[str, Any] | None, value: float) -> bool | None:
    """True (✔) when ``value`` is within the anchor's bounds, False (✘) when not, None when it states none."""
    if anchor is None:
        return None
    lo, hi = anchor_bounds(anchor)
    if lo is None and hi is None:
        return None
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def headline_cells(results: Mapping[str, Any], headline: Headline,
                   anchors: Mapping[str, Mapping[str, Any]]) -> list[Cell]:
    """Every method of ``headline.experiment`` that has a number at ``headline.metric``, in the results' order."""
    cells = []
    for method, metrics in (results.get(headline.experiment) or {}).items():
        value = leaf(metrics, headline.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        anchor = anchor_for(anchors, headline.experiment, method, headline.metric)
        cells.append(Cell(method, float(value), _error(metrics, headline.metric), anchor,
                          anchor_check(anchor, float(value))))
    return cells


def ranked(cells: list[Cell], headline: Headline) -> list[Cell]:
    """The cells of the ranked methods (controls left out), best first; unranked headlines keep their order."""
    cells = [c for c in cells if c.method not in headline.controls]
    if headline.better not in ("lower", "higher"):
        return cells
    return sorted(cells, key=lambda c: c.value, reverse=headline.better == "higher")


def format_value(value: float, err: float | None = None, unit: str = "") -> str:
    """``value ± err unit`` with the value rounded where its error bar makes digits meaningless (two significant
    digits of the error), else four significant digits."""
    suffix = f" {unit}" if unit else ""
    if err is None or not math.isfinite(err) or err <= 0:
        return f"{value:.4g}{suffix}"
    digits = max(0, min(6, 1 - math.floor(math.log10(err))))
    if abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-4):
        return f"{value:.3g} ± {err:.2g}{suffix}"
    return f"{value:.{digits}f} ± {err:.{digits}f}{suffix}"


def tied(a: Cell, b: Cell) -> bool | None:
    """Whether two values are within their combined error bars (None when either has none)."""
    if a.err is None or b.err is None:
        return None
    return abs(a.value - b.value) <= math.hypot(a.err, b.err)


def ranked_sentence(cells: list[Cell], headline: Headline, caveats: Mapping[str, str] | None = None) -> str | None:
    """One sentence: which method is best on the headline metric, by how much, and what the next one does.
    ``caveats`` (``"experiment.method" -> note``) are said next to the numbers they qualify."""
    order = ranked(cells, headline)
    if not order:
        return None
    notes = {c.method: (caveats or {}).get(f"{headline.experiment}.{c.method}") for c in order}
    shared = next(iter(notes.values())) if len(set(notes.values())) == 1 else None  # said once, at the end
    tail = f" ({shared})" if shared else ""

    def said(cell: Cell) -> str:
        note = None if shared else notes[cell.method]
        return f"{cell.method} ({format_value(cell.value, cell.err, headline.unit)}{'; ' + note if note else ''})"

    if headline.better not in ("lower", "higher") or len(order) == 1:
        return f"{headline.label}: " + ", ".join(said(c) for c in order) + f"{tail}."
    best, second = order[0], order[1]
    verdict = {True: "tied within the error bars with", False: "ahead of", None: "then"}[tied(best, second)]
    rest = f"; {len(order) - 2} more behind" if len(order) > 2 else ""
    lead = f"{headline.label} ({headline.better} is better)"
    return f"{lead}: {said(best)} is best, {verdict} {said(second)}{rest}{tail}."
