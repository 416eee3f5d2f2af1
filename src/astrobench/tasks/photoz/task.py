"""Experiments of the photoz task: galaxy redshifts from five-band HST photometry, the Hello Universe decision
tree and the methods that beat it (docs/tasks/photoz.md).

``results.point.<features>.<method>.<metric>`` for the point estimators on the notebook's split and cuts;
``results.pdf.<method>`` for probabilistic redshifts (recalibrated on the validation split only);
``results.summary`` for the best point method (chosen on the validation split) against the tuned tree;
``results.learning_curve`` and ``results.importance`` for the figures' numbers.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from astrobench.core import metrics as M
from astrobench.core import plots
from astrobench.core.io import (
    ConfigError,
    DataFormatError,
    bad_option,
    read_run_config,
    write_pickle_atomic,
    write_predictions,
)
from astrobench.core.summary import GOAL, Headline, format_value
from astrobench.core.task import Evaluation, RunContext, Simulation, Task
from astrobench.tasks.photoz.data import (
    FEATURE_SETS,
    Catalogue,
    FeatureTransform,
    hello_universe_rows,
    read_catalogue,
    split_indices,
)
from astrobench.tasks.photoz.models import (
    PDF_METHODS,
    POINT_METHODS,
    Z_PDF_GRID,
    FittedPoint,
    QuantileGBM,
    SearchBudget,
    fit_point,
    tune_knn_pdf,
)
from astrobench.tasks.photoz.simulate import SIMULATOR_VERSION, physics_key
from astrobench.tasks.photoz.simulate import simulate as simulate_photoz

NOTEBOOK = "STScI Hello Universe notebook (3D-HST v4.1, lmass > 9, 70/15/15 split), test MSE"
TARGET = GOAL  # a goal this benchmark sets itself
OUTLIER_DELTA = M.OUTLIER_DELTA
ENSEMBLE_SIZE = 3  # the ensemble averages this many best point methods (by validation MSE)
CATALOGUE_FILE = "3dhst_master.phot.v4.1.cat"
MIN_GALAXIES = 300  # the 70/15/15 split and 3-fold searches (kNN up to 50 neighbours) need a few hundred


POINT_METRICS = M.REDSHIFT_POINT_METRICS


def point_metrics(z_spec: np.ndarray, z_phot: np.ndarray, seed: int = 0) -> dict[str, float]:
    """mse (of z), sigma_nmad, outlier_frac (|delta| > 0.15) and bias (median delta), each with a bootstrap error
    over the galaxies."""
    out: dict[str, float] = {}
    for name, fn in POINT_METRICS.items():
        out.update(M.with_error(name, fn, z_spec, z_phot, seed=seed))
    return out


def catalogue_simulation(n_galaxies: int, n_templates: int, seed: int, n_jobs: int = 2) -> Simulation:
    """A simulated 3D-HST catalogue of ``n_galaxies`` rows from ``n_templates`` bagpipes templates, cached under the
    ``photoz`` task (the photoz task and the transfer task's photoz target share it)."""
    key = {"n": n_galaxies, "seed": seed, "n_templates": n_templates, "physics": physics_key()}
    return Simulation(key, CATALOGUE_FILE, functools.partial(_write_catalogue, key=key, n_jobs=n_jobs),
                      owner="photoz", version=SIMULATOR_VERSION)


def _write_catalogue(folder: Path, key: dict[str, Any], n_jobs: int) -> Path:
    return simulate_photoz(folder / CATALOGUE_FILE, n=key["n"], seed=key["seed"], n_templates=key["n_templates"],
                           n_jobs=n_jobs)


class PhotozData(NamedTuple):
    """The catalogue, the rows that pass the notebook's cuts, their spectroscopic redshifts, and the 70/15/15 split
    (positions in ``rows``)."""

    cat: Catalogue
    rows: np.ndarray
    z: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


class PhotozTask(Task):
    name = "photoz"
    summary = "Galaxy redshifts from 3D-HST photometry: the Hello Universe tree vs RF, GBM, kNN, SVR, MLP, PDFs"
    n_unit = "galaxies (catalogue rows)"
    bytes_per_object = 2e3  # one catalogue row
    count_options = ("n_galaxies",)
    min_objects = 700
    simulator_version = SIMULATOR_VERSION
    anchors = {
        "point.hello_universe.tree_default.mse": {"value": "0.2365 (real 3D-HST)", "source": NOTEBOOK},
        "point.hello_universe.tree_tuned.mse": {"value": "0.1556 (real 3D-HST)", "source": NOTEBOOK},
        "point.hello_universe.random_forest.mse": {"value": "0.1157 (real 3D-HST; fixed notebook parameters)",
                                                   "source": NOTEBOOK},
        "catalogue_z_peak.eazy.mse_validation": {"value": "0.0928 (EAZY z_peak, validation split)",
                                                 "source": NOTEBOOK},
        "summary.best.mse_ratio_to_tree_tuned": {"value": "<= 0.6", "source": TARGET},
        "pdf.quantile_gbm.coverage_68": {"value": "0.63-0.73", "source": TARGET},
        "pdf.quantile_gbm.pit_ks": {"value": "<= 0.05", "source": TARGET},
    }
    question = ("How much better than the Hello Universe decision tree do random forests, boosting, nearest "
                "neighbours, SVR and networks predict galaxy redshifts from 3D-HST photometry, and are their "
                "redshift PDFs calibrated?")
    headlines = (
        Headline("point", "tree_tuned.mse", "tuned tree MSE", better=""),
        Headline("point", "random_forest.mse", "random forest MSE", better=""),
        Headline("point", "gbm.mse", "boosting MSE", better=""),
        Headline("point", "knn.mse", "kNN MSE", better=""),
        Headline("point", "mlp.mse", "network MSE", better=""),
        Headline("summary", "mse_ratio_to_tree_tuned", "best MSE / tuned tree's", better=""),
        Headline("pdf", "coverage_68", "68% interval coverage", better=""),
        Headline("pdf", "pit_ks", "PIT KS distance"),
        Headline("pdf", "crps", "CRPS"),
    )
    figure_captions = {
        "zphot_vs_zspec_*": ("Photometric against spectroscopic redshift", "Test galaxies, best method; the "
                             "diagonal is a perfect estimate."),
        "metrics_by_method": ("MSE by method", "Test MSE of each method on each feature set, with bootstrap error "
                              "bars; lower is better."),
        "learning_curves": ("Learning curves", "Test MSE against the number of training galaxies."),
        "pdf_pit": ("PIT histograms", "Probability integral transform of the redshift PDFs: flat when calibrated."),
        "permutation_importance": ("Permutation importance", "MSE increase when one feature is shuffled."),
    }

    def answers(self, results: Mapping[str, Any], size: str) -> list[str]:
        """The best point estimate against the notebook's tuned tree first, then the per-metric sentences."""
        best = (results.get("summary") or {}).get("best") or {}
        lead = []
        if "mse_ratio_to_tree_tuned" in best:
            ratio = format_value(best["mse_ratio_to_tree_tuned"], best.get("mse_ratio_to_tree_tuned_err"))
            lead.append(f"Best point estimate: {best['method']} on the {best['features']} features, test MSE "
                        f"{best['mse']:.4g}, {ratio} times the tuned decision tree's (goal: at most 0.6).")
        return lead + super().answers(results, size)

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(n_galaxies=1500, n_templates=150, tree_n_iter=4, tree_cv_folds=2, n_iter=2, cv_folds=2,
                          svr_max_rows=300, learning_sizes=[100, 300], permutation_repeats=1),
            "quick": dict(n_galaxies=8000, n_templates=800, tree_n_iter=20, tree_cv_folds=5, n_iter=3, cv_folds=3,
                          svr_max_rows=1500, learning_sizes=[250, 1000, 4000], permutation_repeats=2),
            "full": dict(n_galaxies=30000, n_templates=3000, tree_n_iter=100, tree_cv_folds=5, n_iter=10, cv_folds=3,
                         svr_max_rows=5000, learning_sizes=[500, 1000, 2000, 5000, 10000],
                         permutation_repeats=5),
        }[size]
        return {
            **sizes,
            "features": list(FEATURE_SETS),
            "methods": list(POINT_METHODS),
            "pdf_methods": list(PDF_METHODS),
            "pdf_features": "colors",
            "learning_methods": ["tree_tuned", "random_forest", "gbm", "knn"],
            "learning_features": "colors",
            "n_jobs": 2,  # parallel CV folds / forest trees, and the simulator's bagpipes templates (Dask workers)
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["n_galaxies"] < 200:
            raise bad_option(options, "n_galaxies", "at least 200")
        if options["n_templates"] < 50:
            raise bad_option(options, "n_templates", "at least 50")
        for key in ("tree_n_iter", "n_iter", "svr_max_rows", "permutation_repeats", "n_jobs"):
            if options[key] < 1:
                raise bad_option(options, key, ">= 1")
        for key in ("tree_cv_folds", "cv_folds"):
            if options[key] < 2:
                raise bad_option(options, key, ">= 2")
        if options["n_iter"] > 20:
            raise bad_option(options, "n_iter", "at most 20 (the issue's search budget: 20 draws x 3 folds)")
        if options["cv_folds"] > 3:
            raise bad_option(options, "cv_folds", "at most 3 (the issue's search budget: 20 draws x 3 folds)")
        if not options["features"] or set(options["features"]) - set(FEATURE_SETS):
            raise bad_option(options, "features", f"a non-empty list from {list(FEATURE_SETS)}")
        if not options["methods"] or set(options["methods"]) - set(POINT_METHODS):
            raise bad_option(options, "methods", f"a non-empty list from {list(POINT_METHODS)}")
        if set(options["pdf_methods"]) - set(PDF_METHODS):
            raise bad_option(options, "pdf_methods", f"a list from {list(PDF_METHODS)}")
        if "quantile_gbm" in options["pdf_methods"] and "gbm" not in options["methods"]:
            raise bad_option(options, "pdf_methods",
                             "without quantile_gbm when gbm is not among the methods (it reuses gbm's tuning)")
        for key in ("pdf_features", "learning_features"):
            if options[key] not in options["features"]:
                raise bad_option(options, key, f"one of the run's features {options['features']}")
        if set(options["learning_methods"]) - set(options["methods"]):
            raise bad_option(options, "learning_methods", f"a subset of methods {options['methods']}")
        if not all(isinstance(s, int) and s >= 10 for s in options["learning_sizes"]):
            raise bad_option(options, "learning_sizes", "a list of integers >= 10")
        return options

    def simulate(self, out, n, seed=0, format=None, n_templates: int = 3000, n_jobs: int = 2) -> Path:
        return simulate_photoz(out, n=n, seed=seed, format=format, n_templates=n_templates, n_jobs=n_jobs)

    def example(self, out) -> Path:
        """A 700-row catalogue from 50 templates (enough galaxies pass the cuts for the 70/15/15 split)."""
        return self.simulate(out, n=self.min_objects, seed=0, n_templates=50)

    # --- steps ------------------------------------------------------------------------------------------------

    def simulations(self, ctx: RunContext) -> dict[str, Simulation]:
        opts = ctx.options
        ctx.log(f"simulating {opts['n_galaxies']} galaxies ({opts['n_templates']} bagpipes templates; cached)")
        return {"data": catalogue_simulation(opts["n_galaxies"], opts["n_templates"], ctx.seed, opts["n_jobs"])}

    def read(self, ctx: RunContext, paths: Mapping[str, Path]) -> PhotozData:
        cat = read_catalogue(paths["data"])
        rows = hello_universe_rows(cat)
        if len(rows) < MIN_GALAXIES:
            raise DataFormatError(cat.path, f"only {len(rows)} galaxies pass the cuts lmass > 9 and z_spec > 0; "
                                            f"at least {MIN_GALAXIES} are needed")
        z = cat["z_spec"][rows]
        train, val, test = split_indices(len(rows), ctx.seed)
        ctx.data_info.update(n_rows_file=len(cat), n_after_cuts=len(rows), n_train=len(train), n_val=len(val),
                             n_test=len(test), cuts="lmass > 9, z_spec > 0", split="70/15/15, random_state 42 + seed",
                             z_spec_median=float(np.median(z)))
        ctx.log(f"{len(rows)} of {len(cat)} galaxies pass the cuts; train {len(train)}, validation {len(val)}, "
                f"test {len(test)}")
        return PhotozData(cat, rows, z, train, val, test)

    def fit(self, ctx: RunContext, data: PhotozData) -> dict[str, Any]:
        """{"matrices": {features: (X of the cut rows, feature names)}, "point": {(features, method): FittedPoint},
        "pdf": {method: fitted p(z) model}}; each feature transform is fitted on the training rows (hello_universe:
        the notebook's medians over the whole cut sample) and saved for ``predict``."""
        opts = ctx.options
        cat, rows, z, train = data.cat, data.rows, data.z, data.train
        matrices, fitted = {}, {}
        for features in opts["features"]:
            fit_rows = rows if features == "hello_universe" else rows[train]
            transform = FeatureTransform.fit(cat, fit_rows, features)
            write_pickle_atomic(ctx.run_dir / "checkpoints" / f"features.{features}.pkl", transform)
            X, names = transform.transform(cat, rows)
            matrices[features] = (X, names)
            for method in opts["methods"]:
                fitted[features, method] = self._fit_or_resume(ctx, features, method, X[train], z[train])
        pdf = {}
        X, _ = matrices[opts["pdf_features"]]
        for method in opts["pdf_methods"]:
            if method == "quantile_gbm":
                gbm = fitted[opts["pdf_features"], "gbm"]
                pdf[method] = QuantileGBM(dict(gbm.best_params), seed=ctx.seed).fit(X[train], z[train])
            else:
                pdf[method] = tune_knn_pdf(X[train], z[train], ctx.seed)
        return {"matrices": matrices, "point": fitted, "pdf": pdf}

    def evaluate(self, ctx: RunContext, data: PhotozData, models: dict[str, Any]) -> Evaluation:
        opts = ctx.options
        cat, rows, z, train, val, test = data
        matrices, fitted = models["matrices"], models["point"]
        results: dict[str, Any] = {"point": {}}
        preds: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        for features, (X, _) in matrices.items():
            results["point"][features] = {}
            for method in opts["methods"]:
                model = fitted[features, method]
                preds[features, method] = {"val": model.predict(X[val]), "test": model.predict(X[test])}
                res = point_metrics(z[test], preds[features, method]["test"], ctx.seed)
                res["mse_validation"] = POINT_METRICS["mse"](z[val], preds[features, method]["val"])
                res.update(cv_mse=model.cv_mse, n_train=model.n_train, fit_seconds=model.seconds,
                           best_params=model.best_params)
                results["point"][features][method] = res
                ctx.log(f"{features:14s} {method:13s} test mse {res['mse']:.4f}  sigma_nmad {res['sigma_nmad']:.4f}  "
                        f"outliers {res['outlier_frac']:.3f}  ({model.seconds:.0f} s)")
            if len(opts["methods"]) >= ENSEMBLE_SIZE + 1:
                results["point"][features]["ensemble"] = self._ensemble(ctx, features, results, preds, z[val], z[test])
        results["summary"] = self._summary(ctx, results, preds, z[test], z[val])
        if ctx.data_info["source"] == "file" and "z_peak" in cat.columns:
            z_peak = cat["z_peak"][rows]
            results["catalogue_z_peak"] = {"eazy": {**point_metrics(z[test], z_peak[test], ctx.seed),
                                                    "mse_validation": POINT_METRICS["mse"](z[val], z_peak[val])}}
        pdf_plots: dict[str, Any] = {}
        if models["pdf"]:
            X, _ = matrices[opts["pdf_features"]]
            results["pdf"], pdf_plots = self._pdfs(ctx, models["pdf"], X, z, val, test)
        X, _ = matrices[opts["learning_features"]]
        results["learning_curve"] = self._learning_curves(ctx, fitted, X, z, train, val)
        results["importance"] = self._importance(ctx, fitted, matrices, results, z, val)
        return Evaluation(results, {"preds": preds, "pdf_plots": pdf_plots})

    def figures(self, ctx: RunContext, data: PhotozData, models, evaluation: Evaluation) -> None:
        self._figures(ctx, evaluation.results, evaluation.outputs["preds"], data.z[data.test],
                      evaluation.outputs["pdf_plots"])

    def _ensemble(self, ctx, features, results, preds, z_val, z_test) -> dict[str, Any]:
        """The mean prediction of the ENSEMBLE_SIZE methods with the lowest validation MSE (chosen on validation,
        never on test): a plain average of tuned models, no weights fitted."""
        scores = results["point"][features]
        members = sorted(scores, key=lambda m: scores[m]["mse_validation"])[:ENSEMBLE_SIZE]
        preds[features, "ensemble"] = {part: np.mean([preds[features, m][part] for m in members], axis=0)
                                       for part in ("val", "test")}
        res = point_metrics(z_test, preds[features, "ensemble"]["test"], ctx.seed)
        res.update(mse_validation=POINT_METRICS["mse"](z_val, preds[features, "ensemble"]["val"]), members=members)
        ctx.log(f"{features:14s} ensemble      test mse {res['mse']:.4f}  sigma_nmad {res['sigma_nmad']:.4f}  "
                f"outliers {res['outlier_frac']:.3f}  (mean of {', '.join(members)})")
        return res

    def _fit_or_resume(self, ctx: RunContext, features: str, method: str, X, y) -> FittedPoint:
        """Tune and fit one (features, method) cell, or load it from the run folder when resuming."""
        opts = ctx.options
        path = ctx.checkpoint_dir("point", f"{features}.{method}") / "model.pkl"
        if ctx.resume and path.exists():
            with open(path, "rb") as f:
                return pickle.load(f)
        budget = SearchBudget(opts["n_iter"], opts["cv_folds"], opts["tree_n_iter"], opts["tree_cv_folds"])
        model = fit_point(method, X, y, ctx.seed, budget, max_rows=opts["svr_max_rows"] if method == "svr" else None,
                          n_jobs=opts["n_jobs"])
        write_pickle_atomic(path, model)
        return model

    def _summary(self, ctx, results, preds, z_test, z_val) -> dict[str, Any]:
        """Per feature set: the best point method by validation MSE, and its test MSE over the tuned tree's on the
        same galaxies (bootstrap error, paired)."""
        out: dict[str, Any] = {}
        best_validation: dict[str, float] = {}
        for features, methods in results["point"].items():
            best = min(methods, key=lambda m: methods[m]["mse_validation"])
            entry: dict[str, Any] = {"method": best, "mse": methods[best]["mse"]}
            if "tree_tuned" in methods:
                ratio, err = M.bootstrap(lambda t, a, b: np.mean((a - t) ** 2) / np.mean((b - t) ** 2), z_test,
                                         preds[features, best]["test"], preds[features, "tree_tuned"]["test"],
                                         seed=ctx.seed)
                entry.update(mse_ratio_to_tree_tuned=ratio, mse_ratio_to_tree_tuned_err=err)
            out[features] = entry
            best_validation[features] = methods[best]["mse_validation"]
        features = min(best_validation, key=best_validation.get)
        out["best"] = {"features": features, **out[features]}
        return out

    def _pdfs(self, ctx, models, X, z, val, test):
        """Each PDF method: CDFs on Z_PDF_GRID for validation and test galaxies; a PIT recalibration fitted on the
        validation galaxies; CRPS, 68 % coverage and the PIT's KS distance on the test galaxies, before and after
        recalibration."""
        out: dict[str, Any] = {}
        plots_data: dict[str, dict[str, np.ndarray]] = {}
        for method, model in models.items():
            cdf_val, cdf_test = model.cdf_grid(X[val]), model.cdf_grid(X[test])
            recal = M.PITRecalibration().fit(M.pit_from_cdf(cdf_val, Z_PDF_GRID, z[val]))
            raw_pit = M.pit_from_cdf(cdf_test, Z_PDF_GRID, z[test])
            cdf_cal = recal(cdf_test)
            pit = M.pit_from_cdf(cdf_cal, Z_PDF_GRID, z[test])
            crps = M.crps_from_cdf(cdf_cal, Z_PDF_GRID, z[test])
            crps_raw = M.crps_from_cdf(cdf_test, Z_PDF_GRID, z[test])
            res = {
                **M.with_error("crps", np.mean, crps, seed=ctx.seed),
                **M.with_error("coverage_68", lambda p: M.coverage(p, 0.68), pit, seed=ctx.seed),
                **M.with_error("pit_ks", M.pit_ks, pit, seed=ctx.seed),
                "crps_uncalibrated": float(crps_raw.mean()),
                "coverage_68_uncalibrated": M.coverage(raw_pit, 0.68),
                "pit_ks_uncalibrated": M.pit_ks(raw_pit),
                "calibration": "PIT recalibration (Kuleshov et al. 2018) fitted on the validation split",
            }
            if method == "knn_pdf":
                res.update(k=model.k, bandwidth=model.bandwidth)
            # median of the calibrated PDF as a point estimate, for comparison with the point methods
            median = np.array([np.interp(0.5, row, Z_PDF_GRID) for row in np.maximum.accumulate(cdf_cal, 1)])
            res["median_mse"] = POINT_METRICS["mse"](z[test], median)
            out[method] = res
            plots_data[method] = {"pit": pit, "raw_pit": raw_pit, "cdf": cdf_cal[:6], "z": z[test][:6]}
            ctx.log(f"pdf {method:13s} crps {res['crps']:.4f}  coverage_68 {res['coverage_68']:.3f}  "
                    f"pit_ks {res['pit_ks']:.3f} (uncalibrated {res['coverage_68_uncalibrated']:.3f}, "
                    f"{res['pit_ks_uncalibrated']:.3f})")
        return out, plots_data

    def _learning_curves(self, ctx, fitted, X, z, train, val) -> dict[str, Any]:
        """Validation MSE and sigma_nmad of each learning method (its tuned hyperparameters, refitted) against the
        number of training galaxies (nested random subsets of the training split)."""
        from sklearn.base import clone

        opts = ctx.options
        features = opts["learning_features"]
        order = np.random.default_rng(ctx.seed).permutation(train)
        sizes = sorted({s for s in opts["learning_sizes"] if s < len(train)} | {len(train)})
        out: dict[str, Any] = {}
        for method in opts["learning_methods"]:
            model = fitted[features, method]
            out[method] = {}
            for size in sizes:
                if size == len(train):
                    pred = model.predict(X[val])
                else:
                    sub = order[:size]
                    est = clone(model.estimator).fit(X[sub], z[sub])
                    pred = np.clip(est.predict(X[val]), 0, None)
                out[method][f"n_{size}"] = {"mse": POINT_METRICS["mse"](z[val], pred),
                                            "sigma_nmad": POINT_METRICS["sigma_nmad"](z[val], pred)}
        return out

    def _importance(self, ctx, fitted, matrices, results, z, val) -> dict[str, Any]:
        """Permutation importance (increase of validation MSE when a feature is shuffled) of each feature set's best
        single point method (by validation MSE)."""
        from sklearn.inspection import permutation_importance

        out: dict[str, Any] = {}
        for features, (X, names) in matrices.items():
            scores = results["point"][features]
            method = min((m for m in scores if (features, m) in fitted), key=lambda m: scores[m]["mse_validation"])
            model = fitted[features, method]
            imp = permutation_importance(model.estimator, X[val], z[val], scoring="neg_mean_squared_error",
                                         n_repeats=ctx.options["permutation_repeats"], random_state=ctx.seed)
            order = np.argsort(imp.importances_mean)[::-1]
            out[features] = {"method": method, "mse_increase_by_feature": {
                names[i]: float(imp.importances_mean[i]) for i in order},
                "mse_increase_err_by_feature": {names[i]: float(imp.importances_std[i]) for i in order}}
        return out

    # --- figures ----------------------------------------------------------------------------------------------

    def _figures(self, ctx, results, preds, z_test, pdf_plots) -> None:
        """Every figure of the run: z_phot against z_spec per feature set, the metrics by method, the learning
        curves, the permutation importances and (with p(z) methods) the PIT histograms and example p(z)."""
        self._zphot_figures(ctx, results, preds, z_test)
        self._metrics_figure(ctx, results)
        self._learning_figure(ctx, results)
        self._importance_figure(ctx, results)
        if pdf_plots:
            self._pdf_figure(ctx, results, pdf_plots)

    @staticmethod
    def _zphot_figures(ctx, results, preds, z_test) -> None:
        plt = plots.plt
        for features in results["point"]:
            methods = list(results["point"][features])
            ncol = min(4, len(methods))
            nrow = int(np.ceil(len(methods) / ncol))
            fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.2 * nrow), squeeze=False)
            top = max(4.0, float(z_test.max()) * 1.05)
            for ax, method in zip(axes.flat, methods):
                p = preds[features, method]["test"]
                r = results["point"][features][method]
                ax.scatter(z_test, p, s=2, alpha=0.3, rasterized=True)
                grid = np.array([0, top])
                ax.plot(grid, grid, "k-", lw=0.7)
                for s in (1, -1):
                    ax.plot(grid, grid + s * OUTLIER_DELTA * (1 + grid), "k:", lw=0.6)
                ax.set_xlim(0, top)
                ax.set_ylim(0, top)
                ax.set_title(f"{method}\nMSE {r['mse']:.3f}  $\\sigma_{{NMAD}}$ {r['sigma_nmad']:.3f}  "
                             f"out {r['outlier_frac']:.2f}", fontsize=8)
                ax.set_xlabel("z_spec")
                ax.set_ylabel("z_phot")
            for ax in list(axes.flat)[len(methods):]:
                ax.axis("off")
            fig.suptitle(f"test split, features={features}", fontsize=9)
            fig.tight_layout()
            plots.save_figure(fig, ctx.figures / f"zphot_vs_zspec_{features}.png")

    @staticmethod
    def _metrics_figure(ctx, results) -> None:
        plt = plots.plt
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        feature_sets = list(results["point"])
        methods = list(dict.fromkeys(m for f in feature_sets for m in results["point"][f]))
        width = 0.8 / len(feature_sets)
        for ax, metric in zip(axes, ("mse", "sigma_nmad", "outlier_frac")):
            for k, features in enumerate(feature_sets):
                vals = [results["point"][features].get(m, {}).get(metric, np.nan) for m in methods]
                errs = [results["point"][features].get(m, {}).get(f"{metric}_err", np.nan) for m in methods]
                ax.bar(np.arange(len(methods)) + (k - (len(feature_sets) - 1) / 2) * width, vals, width, yerr=errs,
                       label=features, capsize=2)
            ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel(f"{metric} (test)")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "metrics_by_method.png")

    @staticmethod
    def _learning_figure(ctx, results) -> None:
        plt = plots.plt
        curves = results["learning_curve"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for method, by_size in curves.items():
            sizes = [int(k.removeprefix("n_")) for k in by_size]
            for ax, metric in zip(axes, ("mse", "sigma_nmad")):
                ax.plot(sizes, [v[metric] for v in by_size.values()], "o-", label=method)
        for ax, metric in zip(axes, ("mse", "sigma_nmad")):
            ax.set_xscale("log")
            ax.set_xlabel("training galaxies")
            ax.set_ylabel(f"validation {metric}")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        axes[0].set_title(f"features={ctx.options['learning_features']}", fontsize=9)
        plots.save_figure(fig, ctx.figures / "learning_curves.png")

    @staticmethod
    def _importance_figure(ctx, results) -> None:
        plt = plots.plt
        imp = results["importance"]
        fig, axes = plt.subplots(1, len(imp), figsize=(5.5 * len(imp), 4.2), squeeze=False)
        for ax, (features, entry) in zip(axes[0], imp.items()):
            names = list(entry["mse_increase_by_feature"])[:15][::-1]
            ax.barh(names, [entry["mse_increase_by_feature"][n] for n in names],
                    xerr=[entry["mse_increase_err_by_feature"][n] for n in names], capsize=2)
            ax.set_xlabel("validation MSE increase when shuffled")
            ax.set_title(f"{features}: {entry['method']}", fontsize=9)
            ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "permutation_importance.png")

    @staticmethod
    def _pdf_figure(ctx, results, pdf_plots) -> None:
        plt = plots.plt
        fig, axes = plt.subplots(1, len(pdf_plots) + 1, figsize=(4.2 * (len(pdf_plots) + 1), 3.5))
        for ax, (method, d) in zip(axes, pdf_plots.items()):
            bins = np.linspace(0, 1, 21)
            ax.hist(d["raw_pit"], bins, histtype="step", density=True, label="uncalibrated")
            ax.hist(d["pit"], bins, histtype="stepfilled", alpha=0.5, density=True, label="recalibrated")
            ax.axhline(1, color="k", lw=0.7)
            r = results["pdf"][method]
            ax.set_title(f"{method}: coverage_68 {r['coverage_68']:.3f}, KS {r['pit_ks']:.3f}", fontsize=8)
            ax.set_xlabel("PIT (test)")
            ax.legend(fontsize=7)
        ax = axes[-1]
        d = next(iter(pdf_plots.values()))
        coarse = np.arange(0, Z_PDF_GRID[-1] + 1e-9, 0.05)  # p(z) in 0.05 bins: the CDF is piecewise linear
        for i, (row, zt) in enumerate(zip(d["cdf"], d["z"])):
            pdf = np.diff(np.interp(coarse, Z_PDF_GRID, row)) / 0.05
            ax.step(coarse[:-1], pdf, where="post", color=f"C{i}", lw=0.9)
            ax.axvline(zt, color=f"C{i}", ls=":", lw=0.9)
        ax.set_xlim(0, 4)
        ax.set_xlabel("z")
        ax.set_ylabel("p(z)")
        ax.set_title(f"{next(iter(pdf_plots))}: six test galaxies (dotted: z_spec)", fontsize=8)
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "pdf_pit.png")

    # --- prediction -------------------------------------------------------------------------------------------

    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        """z_phot of every row of a 3D-HST-format catalogue from each of the run's point models (CSV)."""
        run_dir = Path(run_dir)
        if read_run_config(run_dir)["task"] != self.name:
            raise ConfigError(f"{run_dir} is not a photoz run")
        paths = sorted((run_dir / "checkpoints").glob("point.*/model.pkl"))
        if not paths:
            raise DataFormatError(run_dir, "no fitted model under checkpoints/ (is the run finished?)")
        cat = read_catalogue(data)
        rows = np.arange(len(cat))
        columns: dict[str, np.ndarray] = {"id": cat["id"].astype(int), "field": cat["field"],
                                          "z_spec": cat["z_spec"]}
        matrices: dict[str, np.ndarray] = {}
        for path in paths:
            features, method = path.parent.name.removeprefix("point.").split(".")
            if features not in matrices:  # encoded as in training: fields, medians and softenings of the run
                with open(run_dir / "checkpoints" / f"features.{features}.pkl", "rb") as f:
                    matrices[features] = pickle.load(f).transform(cat, rows)[0]
            with open(path, "rb") as f:
                model: FittedPoint = pickle.load(f)
            columns[f"z_phot_{features}_{method}"] = model.predict(matrices[features])
        return write_predictions(columns, out, ".5g")

