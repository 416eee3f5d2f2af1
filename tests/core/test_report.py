"""Answer-first reports: anchors' bounds and checks, number formatting, rankings in words, small tables."""

import pytest

from astrobench.core.report import small_tables
from astrobench.core.summary import (
    GOAL,
    Cell,
    Headline,
    anchor_bounds,
    anchor_check,
    format_value,
    headline_cells,
    ranked_sentence,
)


@pytest.mark.parametrize(("anchor", "bounds"), [
    ({"value": ">= 0.995", "source": GOAL}, (0.995, None)),
    ({"value": "<= 0.3 px", "source": GOAL}, (None, 0.3)),
    ({"value": "<= 1e-4 (exact invariance)", "source": GOAL}, (None, 1e-4)),
    ({"value": "> 1 when pre-training helps", "source": "McCabe et al. 2023"}, (1.0, None)),
    ({"value": "0.14-0.15 (target [0.12, 0.16])", "source": "Brout et al. 2022"}, (0.12, 0.16)),
    ({"value": "0.7-1.5", "source": GOAL}, (0.7, 1.5)),
    ({"value": "<= 0.75 x lm_core_excised.scatter_dex", "source": GOAL}, (None, None)),  # relative: not checked
    ({"value": "0.2365 (real 3D-HST)", "source": "STScI Hello Universe"}, (None, None)),  # a reference, no bound
    ({"value": "15-18", "source": "Ntampaka et al. 2019"}, (None, None)),  # a published range is not a pass mark
    ({"value": "anything", "source": GOAL, "at_least": 2.0}, (2.0, None)),
])
def test_anchor_bounds_are_read_from_the_anchor(anchor, bounds):
    assert anchor_bounds(anchor) == bounds


def test_anchor_check_is_true_false_or_none():
    assert anchor_check({"value": ">= 0.9", "source": GOAL}, 0.95) is True
    assert anchor_check({"value": ">= 0.9", "source": GOAL}, 0.85) is False
    assert anchor_check({"value": "about 0.04", "source": "Villaescusa-Navarro et al. 2022"}, 0.05) is None
    assert anchor_check(None, 1.0) is None


def test_format_value_rounds_to_the_error_bar():
    assert format_value(0.99321, 0.00123) == "0.9932 ± 0.0012"
    assert format_value(12.345, 2.7, "%") == "12.3 ± 2.7 %"
    assert format_value(0.1234567) == "0.1235"
    assert format_value(3.0, None, "px") == "3 px"


RESULTS = {"regress": {"cnn": {"x": {"rmse": 0.22, "rmse_err": 0.01}},
                       "circle_fit": {"x": {"rmse": 0.19, "rmse_err": 0.01}},
                       "broken": {"x": {"rmse": float("nan")}}}}


def test_headline_cells_pair_values_with_errors_and_anchors():
    h = Headline("regress", "x.rmse", "centre x RMSE", "px")
    cells = headline_cells(RESULTS, h, {"regress.cnn.x.rmse": {"value": "<= 0.3 px", "source": GOAL}})
    assert [c.method for c in cells] == ["cnn", "circle_fit"]  # a NaN is no number to rank
    assert cells[0] == Cell("cnn", 0.22, 0.01, {"value": "<= 0.3 px", "source": GOAL}, True)
    assert cells[1].anchor is None and cells[1].check is None


def test_ranked_sentence_says_who_is_best_and_whether_the_next_is_a_tie():
    h = Headline("regress", "x.rmse", "centre x RMSE", "px")
    sentence = ranked_sentence(headline_cells(RESULTS, h, {}), h)
    assert sentence.startswith("centre x RMSE (lower is better): circle_fit (0.190 ± 0.010 px) is best")
    assert "ahead of cnn (0.220 ± 0.010 px)" in sentence  # 0.03 apart, combined error 0.014: not a tie
    close = {"regress": {"a": {"x": {"rmse": 0.20, "rmse_err": 0.01}}, "b": {"x": {"rmse": 0.21, "rmse_err": 0.01}}}}
    assert "tied within the error bars with b" in ranked_sentence(headline_cells(close, h, {}), h)
    apart = {"regress": {"a": {"x": {"rmse": 0.1, "rmse_err": 0.01}}, "b": {"x": {"rmse": 0.3, "rmse_err": 0.01}}}}
    assert "a (0.100 ± 0.010 px) is best, ahead of b" in ranked_sentence(headline_cells(apart, h, {}), h)
    higher = Headline("regress", "x.rmse", "score", better="higher")
    assert "b (0.300 ± 0.010) is best" in ranked_sentence(headline_cells(apart, higher, {}), higher)


def test_ranked_sentence_leaves_out_controls_and_says_caveats_once():
    h = Headline("g", "auc", "C2ST AUC", controls=("real",))
    results = {"g": {"real": {"auc": 0.3}, "a": {"auc": 0.6}, "b": {"auc": 0.8}}}
    sentence = ranked_sentence(headline_cells(results, h, {}), h, {"g.a": "not converged", "g.b": "not converged"})
    assert "real" not in sentence and sentence.startswith("C2ST AUC (lower is better): a (0.6) is best")
    assert sentence.count("not converged") == 1
    assert ranked_sentence([], h) is None


def test_small_tables_label_groups_and_confusion_matrices():
    results = {"classify": {"cnn": {"accuracy_by_n": {"1": 1.0, "2": 0.9}, "accuracy_by_n_err": {"1": 0.0, "2": 0.1},
                                    "confusion_matrix": [[5, 0], [1, 4]]}}}
    by_n, confusion = small_tables(results)
    assert by_n["columns"] == ["1", "2"] and by_n["rows"][0]["cells"] == ["1", "0.90 ± 0.10"]
    assert confusion["columns"] == ["pred. 1", "pred. 2"]
    assert [r["label"] for r in confusion["rows"]] == ["true 1", "true 2"]
    assert confusion["rows"][1]["cells"] == ["1", "4"]


def test_long_per_group_metrics_become_a_column_with_their_error_bars():
    values = {f"f{i}": 0.1 * i for i in range(12)}
    errors = {f"f{i}": 0.01 for i in range(12)}
    (table,) = small_tables({"importance": {"colors": {"mse_increase_by_feature": values,
                                                       "mse_increase_err_by_feature": errors}}})
    assert table["columns"] == ["value"] and len(table["rows"]) == 12
    assert table["rows"][3] == {"label": "f3", "cells": ["0.300 ± 0.010"]}
