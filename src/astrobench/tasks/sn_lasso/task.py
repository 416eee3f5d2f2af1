"""Experiments of the sn_lasso task: which variables model SN Ia peak magnitudes (docs/tasks/sn_lasso.md)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from astrobench.core import plots
from astrobench.core.io import ConfigError, bad_option, check_memory
from astrobench.core.summary import GOAL, Headline
from astrobench.core.task import Evaluation, RunContext, Simulation, Task
from astrobench.tasks.sn_lasso.data import SNTable, load_sn_table, prepare_pantheon
from astrobench.tasks.sn_lasso.models import eiv_fit, lasso_cv, nested_cv_rmse, ols_bootstrap, stability_selection
from astrobench.tasks.sn_lasso.simulate import (
    SIMULATOR_VERSION,
    SPECTRAL,
    STRETCH_PROXIES,
    TRUE_VARIABLES,
    simulate_sn_table,
)
from astrobench.tasks.sn_lasso.simulate import simulate as simulate_sn

COMPARE_METHODS = ("ols_all", "ridge", "elastic_net", "lasso_min", "lasso_1se", "adaptive_lasso", "best_subset")

PUBLISHED = "Scolnic et al. 2022; Brout et al. 2022 (Pantheon+)"
TARGET = GOAL  # a goal this benchmark sets itself


def residual_panel(ax, residual: np.ndarray, predicted: np.ndarray, redshift: np.ndarray | None) -> None:
    """Residuals against redshift (a Hubble-residual trend shows there), or against the prediction when the table
    has no redshift column (a generic table): the panel is never left empty."""
    x, label = (redshift, "zHD") if redshift is not None else (predicted, "predicted y [mag] (no zHD column)")
    ax.scatter(x, residual, s=6, alpha=0.6)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel(label)
    ax.set_ylabel("residual [mag]")


class SNLassoTask(Task):
    name = "sn_lasso"
    summary = "Which variables model SN Ia peak magnitudes: LASSO + cross-validation, relaxed and EIV refits"
    n_unit = "supernovae"
    bytes_per_object = 1e3  # one table row
    count_options = ("n_sne",)
    min_objects = 80
    simulator_version = SIMULATOR_VERSION
    anchors = {
        "relaxed.ols.alpha": {"value": "0.14-0.15 (target [0.12, 0.16])", "source": PUBLISHED},
        "relaxed.ols.beta": {"value": "3.0-3.1 (target [2.6, 3.3]; OLS biased low)", "source": PUBLISHED},
        "relaxed.eiv.beta": {"value": "3.0-3.1 (target [2.8, 3.4])", "source": PUBLISHED},
        "relaxed.eiv.mass_step": {"value": "about -0.05 mag", "source": PUBLISHED},
        "lasso.lassocv.cv_rmse_min": {"value": "<= 0.16 mag (raw scatter ~0.33)", "source": TARGET},
        "lasso.lassocv.n_noise_selected_1se": {"value": "0", "source": TARGET},
    }
    question = ("Which light-curve and host-galaxy variables does a Type Ia supernova's standardised peak magnitude "
                "need, when LASSO with cross-validation chooses them?")
    headlines = (
        Headline("compare", "cv_rmse", "cross-validated RMSE", "mag"),
        Headline("relaxed", "alpha", "alpha (stretch)", better=""),
        Headline("relaxed", "beta", "beta (colour)", better=""),
        Headline("relaxed", "mass_step", "host-mass step", "mag", better=""),
        Headline("truth", "precision", "precision of the chosen set", better="higher"),
        Headline("truth", "recall", "recall of the true variables", better="higher"),
    )
    figure_captions = {
        "lasso_cv_and_paths": ("LASSO paths and cross-validation", "Coefficients against the penalty, and the "
                               "cross-validated error with the minimum and one-standard-error choices."),
        "predicted_and_residuals": ("Predictions and residuals", "Predicted against observed magnitudes, and the "
                                    "residuals against redshift where the table has one."),
        "stability_frequencies": ("Stability selection", "How often each variable is chosen over subsamples; those "
                                  "above the threshold form the stable set."),
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(n_sne=150, n_boot=30, n_boot_eiv=0, n_subsamples=10, n_truth_seeds=2, max_subset=2),
            "quick": dict(n_sne=450, n_boot=200, n_boot_eiv=0, n_subsamples=50, n_truth_seeds=3, max_subset=4),
            "full": dict(n_sne=450, n_boot=1000, n_boot_eiv=100, n_subsamples=200, n_truth_seeds=20, max_subset=6),
        }[size]
        return {
            **sizes,
            "n_folds": 10,
            "n_noise": 10,
            "z_min": 0.023,
            "z_max": 0.15,
            "stability_threshold": 0.9,
            "stability_expected_false": 1.0,
            "outer_folds": 5,  # nested CV of the compare experiment
            "inner_folds": 5,
            "screen": 15,  # best_subset: candidates kept by |correlation with y| before the exhaustive search
            "target": "",  # generic tables: the column to model (Pantheon+ tables: mB - mu_fiducial)
            "features": [],  # generic tables: candidate columns (empty: every other numeric column)
            "missing_values": [-9.0, -999.0],  # sentinels of a missing value ([] where -9 is a real value)
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["n_sne"] < 20:
            raise bad_option(options, "n_sne", "at least 20")
        for key in ("n_folds", "outer_folds", "inner_folds"):
            if options[key] < 2:
                raise bad_option(options, key, "at least 2")
        for key in ("n_truth_seeds", "screen", "max_subset"):
            if options[key] < 1:
                raise bad_option(options, key, ">= 1")
        if options["target"] and options["target"] in options["features"]:
            raise bad_option(options, "features", f"a list without the target {options['target']!r}")
        if not isinstance(options["missing_values"], list | tuple) or not all(
                isinstance(v, int | float) for v in options["missing_values"]):
            raise bad_option(options, "missing_values", "a list of numbers such as [-9, -999]")
        for key in ("n_boot", "n_boot_eiv", "n_noise"):
            if options[key] < 0:
                raise bad_option(options, key, ">= 0")
        if options["n_subsamples"] < 1:
            raise bad_option(options, "n_subsamples", ">= 1")
        # the design matrix with its noise columns, and a few working copies of it (scaling, CV folds)
        check_memory(f"n_sne={options['n_sne']} with n_noise={options['n_noise']}",
                     4 * 8.0 * options["n_sne"] * (options["n_noise"] + 20))
        if not 0 <= options["z_min"] < options["z_max"]:
            raise bad_option(options, "z_max", "above z_min >= 0")
        if not 0.5 < options["stability_threshold"] <= 1:
            raise bad_option(options, "stability_threshold", "in (0.5, 1]")
        return options

    def simulate(self, out, n, seed=0, format=None) -> Path:
        if format not in (None, "csv"):
            raise ConfigError(f"sn_lasso writes CSV only, not {format!r}")
        return simulate_sn(out, n=n, seed=seed)

    def simulations(self, ctx: RunContext) -> dict[str, Simulation]:
        key = {"n": ctx.options["n_sne"], "seed": ctx.seed}
        return {"data": Simulation(key, "sn.csv", functools.partial(_write_simulated, key=key))}

    def read(self, ctx: RunContext, paths: Mapping[str, Path]) -> SNTable:
        opts = ctx.options
        table = load_sn_table(paths["data"], target=opts["target"] or None, features=opts["features"] or None,
                              n_noise=opts["n_noise"], seed=ctx.seed, z_range=(opts["z_min"], opts["z_max"]),
                              min_rows=max(opts["n_folds"], 10), missing=tuple(opts["missing_values"]))
        ctx.data_info.update(table.info, n_candidates=len(table.names), candidates=table.names,
                             n_train=len(table), n_val=0, n_test=0)
        ctx.log(f"{len(table)} SNe, {len(table.names)} candidate variables ({table.info})")
        return table

    def fit(self, ctx: RunContext, data: SNTable) -> dict[str, Any]:
        """The LASSO path with its CV ("lasso"), the OLS / errors-in-variables refits of its 1-SE set ("relaxed"),
        and stability selection ("stability": frequencies, q)."""
        opts = ctx.options
        sel = lasso_cv(data.X, data.y, opts["n_folds"], ctx.seed)
        relaxed = self._relaxed(ctx, data, sel.selected(sel.i_1se, data.names))
        stability = stability_selection(data.X, data.y, sel.alphas, opts["n_subsamples"], opts["stability_threshold"],
                                        opts["stability_expected_false"], ctx.seed)
        return {"lasso": sel, "relaxed": relaxed, "stability": stability}

    def evaluate(self, ctx: RunContext, data: SNTable, models: dict[str, Any]) -> Evaluation:
        """The selections and their CV errors; the nested-CV comparison of the selection methods; on simulated data,
        precision and recall against the true variables over independent samples."""
        opts, sel, names = ctx.options, models["lasso"], data.names
        ctx.error_bars = ("bootstrap over SNe: 68 % intervals as _lo/_hi for the refits; CV standard errors for "
                          "cv_rmse")
        selected_min, selected_1se = sel.selected(sel.i_min, names), sel.selected(sel.i_1se, names)
        lasso = {
            "selected_min": selected_min, "selected_1se": selected_1se,
            "cv_rmse_min": float(np.sqrt(sel.cv_mse[sel.i_min])),
            "cv_rmse_min_err": float(sel.cv_se[sel.i_min] / (2 * np.sqrt(sel.cv_mse[sel.i_min]))),
            "cv_rmse_1se": float(np.sqrt(sel.cv_mse[sel.i_1se])),
            "cv_rmse_1se_err": float(sel.cv_se[sel.i_1se] / (2 * np.sqrt(sel.cv_mse[sel.i_1se]))),
            "raw_rmse": float(np.std(data.y)),
            "lambda_min": float(sel.alphas[sel.i_min]), "lambda_1se": float(sel.alphas[sel.i_1se]),
            "n_noise_selected_min": sum(n.startswith("noise_") for n in selected_min),
            "n_noise_selected_1se": sum(n.startswith("noise_") for n in selected_1se),
            "coef_by_variable_min": sel.physical_coefficients(sel.i_min, names),
            "coef_by_variable_1se": sel.physical_coefficients(sel.i_1se, names),
        }
        frequencies, q = models["stability"]
        results: dict[str, Any] = {"lasso": {"lassocv": lasso}, "relaxed": models["relaxed"]}
        results["stability"] = {"lasso": {
            "frequencies_by_variable": {n: float(f) for n, f in zip(names, frequencies) if f > 0},
            "stable_set": [n for n, f in zip(names, frequencies) if f >= opts["stability_threshold"]],
            "threshold": opts["stability_threshold"], "q": q,
        }}
        results["compare"] = {}
        for method in COMPARE_METHODS:
            rmse = nested_cv_rmse(method, data.X, data.y, opts["outer_folds"], opts["inner_folds"], ctx.seed,
                                  opts["screen"], opts["max_subset"])
            results["compare"][method] = {"cv_rmse": float(rmse.mean()),
                                          "cv_rmse_err": float(rmse.std(ddof=1) / np.sqrt(len(rmse)))}
        if ctx.data_info["source"] == "simulated":
            results["truth"] = self._truth_over_seeds(ctx)
        return Evaluation(results)

    def figures(self, ctx: RunContext, data: SNTable, models: dict[str, Any], evaluation: Evaluation) -> None:
        self._figures(ctx, data, models["lasso"], models["stability"][0], evaluation.results)

    @staticmethod
    def _truth(selected: list[str]) -> dict[str, float]:
        true = set(TRUE_VARIABLES)
        hits = true & set(selected)
        informative = true | set(STRETCH_PROXIES)
        return {"precision": len(hits) / max(len(selected), 1),
                "precision_informative": len(informative & set(selected)) / max(len(selected), 1),
                "recall": len(hits) / len(true),
                "recall_x1_c": len({"x1", "c"} & set(selected)) / 2, "step_selected": float("mass_step" in selected)}

    def _truth_over_seeds(self, ctx: RunContext) -> dict[str, Any]:
        """Three selections on ``n_truth_seeds`` independent simulated samples (true variables: x1, c, mass_step):
        the LASSO at the CV-minimum and the 1-SE lambda, and stability selection. For each, the mean and standard
        error over samples of precision, recall, recall of x1 and c, and how often the mass step is selected."""
        opts = ctx.options
        scores: dict[str, list[dict[str, float]]] = {"lasso_min": [], "lasso_1se": [], "stability": []}
        from rich.progress import track

        for k in track(range(opts["n_truth_seeds"]), description="truth: simulated samples", disable=not ctx.progress,
                       transient=True):
            cols = simulate_sn_table(opts["n_sne"], seed=ctx.seed + 1000 + k)
            table = prepare_pantheon(cols, "simulated", (opts["z_min"], opts["z_max"]), opts["n_noise"],
                                     ctx.seed + k, extra_physical=SPECTRAL)
            sel = lasso_cv(table.X, table.y, opts["n_folds"], ctx.seed + k)
            scores["lasso_min"].append(self._truth(sel.selected(sel.i_min, table.names)))
            scores["lasso_1se"].append(self._truth(sel.selected(sel.i_1se, table.names)))
            frequencies, _ = stability_selection(table.X, table.y, sel.alphas, opts["n_subsamples"],
                                                 opts["stability_threshold"], opts["stability_expected_false"],
                                                 ctx.seed + k)
            stable = [n for n, f in zip(table.names, frequencies) if f >= opts["stability_threshold"]]
            scores["stability"].append(self._truth(stable))
        out: dict[str, Any] = {}
        for method, runs in scores.items():
            out[method] = {"n_seeds": len(runs)}
            for key in runs[0]:
                values = np.array([s[key] for s in runs])
                out[method][key] = float(values.mean())
                out[method][f"{key}_err"] = (float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1
                                             else float("nan"))
        return out

    def _relaxed(self, ctx: RunContext, table: SNTable, selected: list[str]) -> dict[str, Any]:
        """OLS and errors-in-variables refits of the 1-SE set, in physical units (Tripp signs: alpha = -coef(x1))."""
        opts = ctx.options
        out: dict[str, Any] = {}
        if not selected:
            return {"ols": {"note": "the 1-SE set is empty"}}
        X = table.X[:, [table.names.index(n) for n in selected]]
        coef, draws = ols_bootstrap(X, table.y, max(opts["n_boot"], 2), ctx.seed)
        ols: dict[str, Any] = {"intercept": float(coef[0]), "rmse": float(np.std(table.y - coef[0] - X @ coef[1:]))}
        # Tripp signs only where the columns are the SALT2 ones (Pantheon+ format, or the simulator)
        pantheon = table.info.get("format") == "pantheon+"
        tripp = {"x1": ("alpha", -1.0), "c": ("beta", 1.0), "mass_step": ("mass_step", 1.0)} if pantheon else {}
        for j, name in enumerate(selected):
            if name in tripp:
                key, sign = tripp[name]
                lo, hi = np.percentile(sign * draws[:, j + 1], [16, 84])
                ols.update({key: float(sign * coef[j + 1]), f"{key}_lo": float(lo), f"{key}_hi": float(hi)})
        ols["coef_by_variable"] = {n: float(b) for n, b in zip(selected, coef[1:])}
        if "beta" in ols:
            ols["beta_note"] = ("biased low: colour measurement errors (median cERR about a third of the colour "
                                "spread) attenuate an OLS slope; see relaxed.eiv")
        out["ols"] = ols
        if pantheon and {"x1", "c"} <= set(selected) and {"x1ERR", "cERR", "mBERR"} <= set(table.errors):
            # the Tripp terms only: other selected variables (stretch proxies, squares of x1 or c) would soak up
            # part of the latent stretch or colour, which the one-population model cannot describe
            others = [n for n in ("mass_step",) if n in selected]
            Z = table.X[:, [table.names.index(n) for n in others]]

            def fit(idx):
                errors = {k: v[idx] for k, v in table.errors.items()}
                return eiv_fit(table.y[idx], table.column("x1")[idx], table.column("c")[idx], Z[idx], errors)

            best = fit(np.arange(len(table)))
            eiv = {"alpha": best["alpha"], "beta": best["beta"], "sigma_int": best["sigma_int"],
                   "converged": best["converged"], "terms": ["x1", "c", *others]}
            if "mass_step" in others:
                eiv["mass_step"] = float(best["gamma"][others.index("mass_step")])
            if opts["n_boot_eiv"] > 0:
                rng = np.random.default_rng(ctx.seed)
                boots = [fit(rng.integers(0, len(table), len(table))) for _ in range(opts["n_boot_eiv"])]
                eiv["n_boot_unconverged"] = sum(not b["converged"] for b in boots)
                boots = [b for b in boots if b["converged"]] or boots
                for key in ("alpha", "beta", "sigma_int"):
                    eiv[f"{key}_lo"], eiv[f"{key}_hi"] = (float(v) for v in
                                                          np.percentile([b[key] for b in boots], [16, 84]))
                if "mass_step" in eiv:
                    steps = [b["gamma"][others.index("mass_step")] for b in boots]
                    eiv["mass_step_lo"], eiv["mass_step_hi"] = (float(v) for v in np.percentile(steps, [16, 84]))
            out["eiv"] = eiv
        return out

    def _figures(self, ctx: RunContext, table: SNTable, sel, frequencies, results) -> None:
        plt = plots.plt
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        log_l = np.log10(sel.alphas)
        ax.errorbar(log_l, np.sqrt(sel.cv_mse), yerr=sel.cv_se / (2 * np.sqrt(sel.cv_mse)), fmt=".", ms=3)
        for i, label, style in ((sel.i_min, "CV minimum", "--"), (sel.i_1se, "1-SE", ":")):
            ax.axvline(log_l[i], color="k", ls=style, label=f"{label}: {len(sel.selected(i, table.names))} variables")
        ax.set_xlabel("log10 lambda (standardised variables)")
        ax.set_ylabel("CV rms error [mag]")
        ax.legend(fontsize=8)
        for j, name in enumerate(table.names):
            ax2.plot(log_l, sel.coef_path[:, j], lw=1.5 if name in ("x1", "c", "mass_step") else 0.6,
                     color="C3" if name.startswith("noise_") else None, label=name if name in ("x1", "c", "mass_step")
                     else None)
        ax2.axvline(log_l[sel.i_1se], color="k", ls=":")
        ax2.set_xlabel("log10 lambda")
        ax2.set_ylabel("coefficient (standardised)")
        ax2.set_title("coefficient paths (noise columns red)", fontsize=9)
        ax2.legend(fontsize=8)
        plots.save_figure(fig, ctx.figures / "lasso_cv_and_paths.png")

        order = np.argsort(frequencies)[::-1][:25]
        fig, ax = plt.subplots(figsize=(9, 3.6))
        ax.bar([table.names[i] for i in order], frequencies[order],
               color=["C3" if table.names[i].startswith("noise_") else "C0" for i in order])
        ax.axhline(ctx.options["stability_threshold"], color="k", ls="--", label="stability threshold")
        ax.set_ylabel("selection frequency")
        ax.tick_params(axis="x", rotation=70, labelsize=7)
        ax.legend(fontsize=8)
        plots.save_figure(fig, ctx.figures / "stability_frequencies.png")

        ols = results["relaxed"].get("ols", {})
        if "coef_by_variable" in ols:
            names = list(ols["coef_by_variable"])
            X = table.X[:, [table.names.index(n) for n in names]]
            pred = ols["intercept"] + X @ np.array(list(ols["coef_by_variable"].values()))
            fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
            ax.scatter(pred, table.y, s=6, alpha=0.6)
            lim = [min(pred.min(), table.y.min()), max(pred.max(), table.y.max())]
            ax.plot(lim, lim, "k--", lw=0.8)
            ax.set_xlabel("predicted y (relaxed OLS on the 1-SE set) [mag]")
            ax.set_ylabel("observed y [mag]")
            residual_panel(ax2, table.y - pred, pred, table.extra.get("zHD"))
            plots.save_figure(fig, ctx.figures / "predicted_and_residuals.png")

    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        raise ConfigError("sn_lasso has no trained model to apply: its results are the selected variables and "
                          "coefficients in metrics.json")


def _write_simulated(folder: Path, key: dict[str, Any]) -> Path:
    return simulate_sn(folder / "sn.csv", n=key["n"], seed=key["seed"])
