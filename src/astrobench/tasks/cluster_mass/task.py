"""Experiments of the cluster_mass task: cluster masses from X-ray images (see docs/tasks/cluster_mass.md).

One experiment, ``mass``, with five methods evaluated on the same k folds over clusters: two luminosity-mass
power laws (``lm_total``, ``lm_core_excised``), the Ntampaka et al. 2019 CNN (``cnn``), the same CNN trained
with random rotations and flips (``cnn_aug``) and a D4-invariant group-convolutional CNN (``d4cnn``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrobench.core import plots
from astrobench.core.io import ConfigError, DataFormatError, bad_option, read_json, write_json_atomic, write_predictions
from astrobench.core.nets import D4_ORDER, d4_transform
from astrobench.core.summary import GOAL, NOT_CONVERGED, Headline
from astrobench.core.task import Evaluation, RunContext, Simulation, Task
from astrobench.core.training import RegressionTask, as_dataset, fit, load_module, predict_module, random_d4
from astrobench.tasks.cluster_mass.data import ClusterImages, cluster_folds, load_cluster_fits
from astrobench.tasks.cluster_mass.models import (
    CORE_EXCISED_APERTURE,
    ApertureMass,
    CNNPredictor,
    d4_cnn,
    n_parameters,
    ntampaka_cnn,
    radius_map,
)
from astrobench.tasks.cluster_mass.simulate import PARAMETERS, SIMULATOR_VERSION, kpc_per_arcsec
from astrobench.tasks.cluster_mass.simulate import simulate as simulate_clusters

METHODS = ("lm_total", "lm_core_excised", "cnn", "cnn_aug", "d4cnn")
CNN_METHODS = ("cnn", "cnn_aug", "d4cnn")
PAPER = "Ntampaka et al. 2019 (ApJ 876, 82)"
TARGET = GOAL  # a goal this benchmark sets itself
# The notebook shows log10 counts on this colour range.
IMAGE_VMIN, IMAGE_VMAX = 0.0, 2.7


def scatter_pct(scatter_dex: float) -> float:
    """A log-normal scatter in dex as the percentage the paper quotes: 100 (10^scatter - 1)."""
    return float(100.0 * (10.0**scatter_dex - 1.0))


class ClusterMassTask(Task):
    name = "cluster_mass"
    summary = "Galaxy-cluster masses from mock Chandra images: L-M laws, the Ntampaka 2019 CNN, a D4-invariant CNN"
    n_unit = "clusters"
    bytes_per_object = 6e5  # 8 projections of 128 x 128 int32 counts
    count_options = ("n_clusters",)
    min_objects = 12
    simulator_version = SIMULATOR_VERSION
    sizes = ("smoke", "quick", "full", "paper")
    anchors = {
        "mass.cnn.scatter_pct": {"value": "12 (mean over folds), 8 (best fold)", "source": PAPER},
        "mass.cnn.bias_dex": {"value": "-0.02", "source": PAPER},
        "mass.lm_core_excised.scatter_pct": {"value": "15-18", "source": PAPER},
        "mass.cnn.scatter_dex": {"value": "<= 0.75 x lm_core_excised.scatter_dex", "source": TARGET},
        "mass.d4cnn.rot_std_dex": {"value": "<= 1e-4 (exact invariance)", "source": TARGET},
        "mass.d4cnn.scatter_dex": {"value": "<= cnn.scatter_dex", "source": TARGET},
    }
    question = ("How precisely do cluster masses follow from mock Chandra X-ray images: luminosity-mass laws, the "
                "Ntampaka et al. 2019 CNN, or a CNN that is exactly invariant to rotations and flips?")
    headlines = (
        Headline("mass", "scatter_dex", "mass scatter", "dex"),
        Headline("mass", "bias_dex", "mean bias", "dex", better=""),
    )
    quick_caveats = {"mass.cnn": NOT_CONVERGED, "mass.cnn_aug": NOT_CONVERGED, "mass.d4cnn": NOT_CONVERGED}
    figure_captions = {
        "predicted_vs_true": ("Predicted against true mass", "Every test cluster, each method; the diagonal is a "
                              "perfect estimate."),
        "residual_vs_mass": ("Residuals against mass", "log10 predicted minus true mass, binned in true mass: "
                             "where each method is biased."),
        "scatter_by_method": ("Scatter by method", "Mass scatter in dex with bootstrap error bars; lower is better."),
        "saliency": ("Where the CNN looks", "Gradient saliency averaged over test images: the core against the "
                     "outskirts."),
        "sample_images": ("Mock X-ray images", "Simulated Chandra-like images of clusters across the mass range."),
        "loss_*": ("Training curve", "Training and validation loss per epoch, each fold."),
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(n_clusters=12, n_projections=2, image_size=32, k_folds=2, max_epochs=1, n_saliency=8),
            "quick": dict(n_clusters=150, n_projections=4, image_size=64, k_folds=3, max_epochs=8, n_saliency=100),
            # The CPU setting of the issue: about 3,000 images of 64 x 64 pixels, k = 3, at most 15 epochs.
            "full": dict(n_clusters=400, n_projections=8, image_size=64, k_folds=3, max_epochs=15, n_saliency=300),
            # Ntampaka et al. 2019's size (329 clusters x 24 projections, 128 px, k = 5): a GPU configuration.
            "paper": dict(n_clusters=329, n_projections=24, image_size=128, k_folds=5, max_epochs=50,
                          n_saliency=500),
        }[size]
        return {
            **sizes,
            "methods": list(METHODS),
            "val_fraction": 0.15,
            "batch_size": 16,
            "lr": 2e-4,
            "patience": 5,
            "d4_widths": [6, 12, 24],
            "background_per_arcmin2": PARAMETERS.background_per_arcmin2,
            "redshift": PARAMETERS.redshift,
            # used only when the file's header lacks them (PIXARCS, REDSHIFT); pixel_arcsec 0: the ACIS-I field
            # (16.79') across the image
            "pixel_arcsec": 0.0,
            "n_jobs": 2,  # simulator processes (Dask workers); the images do not depend on it
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        for key in ("n_clusters", "n_projections", "max_epochs", "batch_size", "n_saliency", "n_jobs"):
            if options[key] < 1:
                raise bad_option(options, key, "a positive integer")
        if options["k_folds"] < 2:
            raise bad_option(options, "k_folds", "at least 2")
        if options["patience"] < 0:
            raise bad_option(options, "patience", ">= 0")
        if not 0 < options["val_fraction"] < 1:
            raise bad_option(options, "val_fraction", "in (0, 1)")
        for key in ("lr", "redshift"):
            if not options[key] > 0:
                raise bad_option(options, key, "positive")
        for key in ("background_per_arcmin2", "pixel_arcsec"):
            if options[key] < 0:
                raise bad_option(options, key, "non-negative")
        if options["image_size"] < 8 or options["image_size"] % 8:
            raise bad_option(options, "image_size", "a multiple of 8 (three 2x2 poolings)")
        unknown = set(options["methods"]) - set(METHODS)
        if unknown or not options["methods"]:
            raise bad_option(options, "methods", f"a non-empty list drawn from {list(METHODS)}")
        if not options["d4_widths"] or not all(isinstance(w, int) and w >= 1 for w in options["d4_widths"]):
            raise bad_option(options, "d4_widths", "a list of positive integers")
        return options

    # --- data -------------------------------------------------------------------------------------------

    def simulate(self, out, n, seed=0, format=None, n_projections=8, image_size=128, n_jobs=2) -> Path:
        if format not in (None, "fits"):
            raise ConfigError(f"cluster_mass writes FITS only (cluster_TNG_data.fits), not {format!r}")
        return simulate_clusters(out, n=n, seed=seed, n_projections=n_projections, image_size=image_size,
                                 progress=True, n_jobs=n_jobs)

    def simulations(self, ctx: RunContext) -> dict[str, Simulation]:
        key = {"n_clusters": ctx.options["n_clusters"], "n_projections": ctx.options["n_projections"], "seed": ctx.seed}
        return {"data": Simulation(key, "cluster_TNG_data.fits", functools.partial(
            _write_simulated, key=key, n_jobs=ctx.options["n_jobs"], progress=ctx.progress))}

    def read(self, ctx: RunContext, paths: Mapping[str, Path]) -> tuple[ClusterImages, list[dict[str, np.ndarray]]]:
        """The images at ``image_size`` with the geometry the L-M methods need, and the folds over clusters."""
        opts = ctx.options
        data = load_cluster_fits(paths["data"])
        native = data.image_size
        data = data.rebinned(opts["image_size"])
        # One rule for the geometry the L-M methods need: the file's header, else the options (pixel_arcsec = 0:
        # the ACIS-I field across the image, the simulator's and our reading of the paper's setup).
        scale_source = "header"
        if "pixel_arcsec" not in data.meta:
            scale_source = "options"
            data.meta["pixel_arcsec"] = opts["pixel_arcsec"] or PARAMETERS.pixel_arcsec(data.image_size)
        if "redshift" not in data.meta:
            scale_source = "options"
            data.meta["redshift"] = opts["redshift"]
        if "kpc_per_pixel" not in data.meta:
            data.meta["kpc_per_pixel"] = data.meta["pixel_arcsec"] * kpc_per_arcsec(data.meta["redshift"])
        ctx.log(f"pixel scale from the {scale_source}: {data.meta['pixel_arcsec']:.2f} arcsec = "
                f"{data.meta['kpc_per_pixel']:.2f} kpc at z = {data.meta['redshift']}")
        ctx.data_info.update(n_images=len(data), n_clusters=int(len(np.unique(data.groups))),
                             native_image_size=native, image_size=data.image_size,
                             pixel_arcsec=data.meta["pixel_arcsec"], kpc_per_pixel=data.meta["kpc_per_pixel"],
                             redshift=data.meta["redshift"], pixel_scale_from=scale_source,
                             has_cluster_id=data.cluster_id is not None)
        return data, self._folds(ctx, data)

    def _folds(self, ctx: RunContext, data: ClusterImages) -> list[dict[str, np.ndarray]]:
        if data.cluster_id is not None:
            folds = cluster_folds(data.cluster_id, ctx.options["k_folds"], ctx.options["val_fraction"], ctx.seed)
            ctx.error_bars = (f"standard error of the mean over the {len(folds)} folds over clusters "
                              "(spread / sqrt(k))")
        else:  # without cluster ids only the file's own split is safe
            folds = [{"train": np.flatnonzero(data.flags["train"]), "val": np.flatnonzero(data.flags["validate"]),
                      "test": np.flatnonzero(data.flags["test"])}]
            for part, idx in folds[0].items():
                if len(idx) < 2:
                    raise DataFormatError(data.source, f"no cluster_id column, so the file's own flags split the "
                                          f"data, but only {len(idx)} image(s) are flagged {part}")
            ctx.error_bars = "bootstrap standard error over test images (the file has no cluster_id: no k-fold)"
        ctx.data_info["folds"] = [{k: int(len(v)) for k, v in f.items()} for f in folds]
        ctx.data_info.update(n_train=int(np.mean([len(f["train"]) for f in folds])),
                             n_val=int(np.mean([len(f["val"]) for f in folds])),
                             n_test=int(np.mean([len(f["test"]) for f in folds])))
        return folds

    # --- fit ----------------------------------------------------------------------------------------------------

    def fit(self, ctx: RunContext, data: tuple[ClusterImages, list[dict[str, np.ndarray]]]) -> list[dict[str, Any]]:
        """One {method: (predict: images -> log M, facts to report, training history or None)} per fold."""
        images, folds = data
        methods = [m for m in METHODS if m in ctx.options["methods"]]
        fitted = []
        for k, fold in enumerate(folds):
            fitted.append({})
            for method in methods:
                ctx.log(f"fold {k + 1}/{len(folds)}: {method} on {len(fold['train'])} training images")
                fitted[k][method] = self._fit(ctx, method, k, images, fold)
        return fitted

    def _fit(self, ctx: RunContext, method: str, k: int, data: ClusterImages, fold: dict[str, np.ndarray]):
        """Fit one method on one fold; return (predict: images -> log M, facts to report, history or None)."""
        opts = ctx.options
        train, val = fold["train"], fold["val"]
        if method.startswith("lm_"):
            background = opts["background_per_arcmin2"] * (data.meta["pixel_arcsec"] / 60.0) ** 2
            estimator = ApertureMass(method.removeprefix("lm_"), data.meta["kpc_per_pixel"], background,
                                     data.meta["redshift"])
            estimator.fit(data.images[train], data.log_m500[train])

            def predict(images: np.ndarray) -> np.ndarray:
                out = estimator.predict(images)
                if method == "lm_core_excised":
                    unconverged.append(estimator.unconverged_ / len(images))
                return out

            unconverged: list[float] = []
            info = {"slope": float(estimator.slope_)}
            if method == "lm_core_excised":
                info["unconverged_fraction"] = unconverged  # filled as the test images are predicted
            return predict, info, None
        ctx.seed_model("mass", f"{method}.fold{k}")
        net = d4_cnn(opts["d4_widths"]) if method == "d4cnn" else ntampaka_cnn()
        y = data.log_m500[:, None]
        module = RegressionTask(net, y[train].mean(0), y[train].std(0), loss="mse", lr=opts["lr"], weight_decay=0.0,
                                augment=random_d4 if method == "cnn_aug" else None)
        ckpt = ctx.checkpoint_dir("mass", f"{method}.fold{k}")
        res = fit(module, as_dataset(data.images[train, None], y[train]),
                  as_dataset(data.images[val, None], y[val]), ckpt, ctx.train_config(), resume=ctx.resume)
        write_json_atomic(ckpt / "meta.json", {"method": method, "fold": k, "image_size": data.image_size,
                                               "d4_widths": opts["d4_widths"]})
        return CNNPredictor(module), {"epochs": res.epochs, "n_parameters": n_parameters(net)}, res.history

    # --- evaluate -------------------------------------------------------------------------------------------------

    def evaluate(self, ctx: RunContext, data: tuple[ClusterImages, list[dict[str, np.ndarray]]],
                 models: list[dict[str, Any]]) -> Evaluation:
        """Out-of-fold predictions (every image by the models of the fold that tests it), under all 8 rotations and
        flips; the scatter, bias and rotation spread of each method, and where the first fold's CNNs look."""
        images, folds = data
        methods = list(models[0])
        pred = {m: np.full(len(images), np.nan) for m in methods}
        rot_std = {m: np.full(len(images), np.nan) for m in methods}
        fold_of = np.full(len(images), -1)
        extra: dict[str, dict[str, list]] = {m: {} for m in methods}
        for k, fold in enumerate(folds):
            fold_of[fold["test"]] = k
            test = images.images[fold["test"]]
            for method, (predictor, info, _) in models[k].items():
                views = np.stack([predictor(_d4_numpy(test, g)) for g in range(D4_ORDER)])
                pred[method][fold["test"]] = views[0]
                rot_std[method][fold["test"]] = views.std(axis=0)
                for key, value in info.items():
                    extra[method].setdefault(key, []).append(value)
        tested = fold_of >= 0
        results = {m: self._metrics(images.log_m500, pred[m], rot_std[m], fold_of, tested, len(folds), ctx.seed)
                   for m in methods}
        for method, info in extra.items():
            for key, values in info.items():
                if key == "unconverged_fraction":  # one list per fold, one entry per predicted view
                    values = [np.mean(v) for v in values]
                results[method][key] = values[0] if key == "n_parameters" else float(np.mean(values))
        first_models = {m: fitted[0] for m, fitted in models[0].items() if m in CNN_METHODS}
        for method, predictor in first_models.items():
            results[method].update(self._saliency_summary(ctx, images, folds[0]["test"], predictor, method))
        if "cnn" in results and "lm_core_excised" in results:
            results["cnn"]["scatter_ratio_to_lm_core_excised"] = (results["cnn"]["scatter_dex"]
                                                                   / results["lm_core_excised"]["scatter_dex"])
        return Evaluation({"mass": results}, {"pred": pred, "tested": tested, "first_models": first_models})

    def figures(self, ctx: RunContext, data, models: list[dict[str, Any]], evaluation: Evaluation) -> None:
        images, folds = data
        for method, (_, _, history) in models[0].items():
            if history is not None:
                plots.loss_curves(history, f"{method}, fold 1", ctx.figures / f"loss_{method}.png")
        out = evaluation.outputs
        self._figures(ctx, images, out["pred"], out["tested"], evaluation.results["mass"], out["first_models"],
                      folds[0]["test"])

    @staticmethod
    def _metrics(truth, pred, rot_std, fold_of, tested, n_folds, seed) -> dict[str, Any]:
        from astrobench.core import metrics as M

        def summary(sel):
            r = pred[sel] - truth[sel]
            return {"scatter_dex": float(np.std(r)), "bias_dex": float(np.mean(r)),
                    "rot_std_dex": float(np.mean(rot_std[sel]))}

        if n_folds == 1:  # error bars: bootstrap over the test images
            sel = tested
            out = {**M.with_error("scatter_dex", lambda t, p: np.std(p - t), truth[sel], pred[sel], seed=seed),
                   **M.with_error("bias_dex", lambda t, p: np.mean(p - t), truth[sel], pred[sel], seed=seed),
                   **M.with_error("rot_std_dex", np.mean, rot_std[sel], seed=seed)}
            out["scatter_pct"] = scatter_pct(out["scatter_dex"])
            out["scatter_pct_err"] = float(np.log(10) * 100 * 10 ** out["scatter_dex"] * out["scatter_dex_err"])
            return out
        per_fold = [summary(fold_of == k) for k in range(n_folds)]
        out: dict[str, Any] = {}
        for key in ("scatter_dex", "bias_dex", "rot_std_dex"):
            values = np.array([f[key] for f in per_fold])
            out[key] = float(values.mean())
            out[f"{key}_err"] = float(values.std(ddof=1) / np.sqrt(n_folds))
        pct = np.array([scatter_pct(f["scatter_dex"]) for f in per_fold])
        out["scatter_pct"] = float(pct.mean())
        out["scatter_pct_err"] = float(pct.std(ddof=1) / np.sqrt(n_folds))
        out["best_fold_scatter_pct"] = float(pct.min())
        out["scatter_pct_by_fold"] = [float(v) for v in pct]
        return out

    # --- saliency and figures -----------------------------------------------------------------------------

    def _saliency_summary(self, ctx, data, test_idx, predictor, method) -> dict[str, float]:
        """Where the network looks: mean saliency per pixel inside 0.15 R500 relative to 0.15-1 R500."""
        if "r500_kpc" not in data.columns:
            return {}
        idx = test_idx[: ctx.options["n_saliency"]]
        sal = predictor.saliency(data.images[idx])
        r = radius_map(data.image_size)[None] * data.meta["kpc_per_pixel"] / data.columns["r500_kpc"][idx, None, None]
        core, outer = r < CORE_EXCISED_APERTURE[0], (r >= CORE_EXCISED_APERTURE[0]) & (r <= CORE_EXCISED_APERTURE[1])
        ratio = (sal * core).sum() / core.sum() / ((sal * outer).sum() / outer.sum())
        return {"saliency_core_to_outer_ratio": float(ratio)}

    def _figures(self, ctx, data, pred, tested, results, models, test_idx) -> None:
        plt = plots.plt
        truth = data.log_m500
        methods = list(pred)
        lo, hi = truth.min() - 0.05, truth.max() + 0.05
        fig, axes = plt.subplots(1, len(methods), figsize=(3.3 * len(methods), 3.3), squeeze=False)
        for ax, m in zip(axes[0], methods):
            ax.scatter(truth[tested], pred[m][tested], s=3, alpha=0.3)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_xlabel("true log10 M500c [Msun/h]")
            ax.set_title(f"{m}: {results[m]['scatter_pct']:.1f} % scatter", fontsize=9)
        axes[0, 0].set_ylabel("predicted log10 M500c [Msun/h]")
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "predicted_vs_true.png")

        fig, ax = plt.subplots(figsize=(6, 3.8))
        edges = np.quantile(truth[tested], np.linspace(0, 1, 9))
        centres = 0.5 * (edges[1:] + edges[:-1])
        which = np.clip(np.digitize(truth, edges[1:-1]), 0, len(centres) - 1)
        filled = [b for b in range(len(centres)) if (tested & (which == b)).any()]
        centres = centres[filled]
        for j, m in enumerate(methods):
            r = pred[m] - truth
            mean = [np.mean(r[tested & (which == b)]) for b in filled]
            std = [np.std(r[tested & (which == b)]) for b in filled]
            offset = (j - (len(methods) - 1) / 2) * 0.008  # side by side, not on top of each other
            ax.errorbar(centres + offset, mean, yerr=std, fmt="o-", ms=3, capsize=2, label=m)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("true log10 M500c [Msun/h]")
        ax.set_ylabel("predicted - true [dex] (mean, std)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        plots.save_figure(fig, ctx.figures / "residual_vs_mass.png")

        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        values = [results[m]["scatter_pct"] for m in methods]
        errors = [results[m].get("scatter_pct_err", 0.0) for m in methods]
        ax.bar(methods, values, yerr=errors, color=[f"C{i}" for i in range(len(methods))], capsize=3)
        ax.axhspan(15, 18, color="grey", alpha=0.25, label="paper: core-excised L, 15-18 %")
        ax.axhline(12, color="k", ls="--", label="paper: CNN, mean over folds 12 %")
        ax.axhline(8, color="k", ls=":", label="paper: CNN, best fold 8 %")
        ax.set_ylabel("mass scatter [%]")
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", rotation=30)
        rot = [max(results[m]["rot_std_dex"], 1e-9) for m in methods]
        ax2.bar(methods, rot, color=[f"C{i}" for i in range(len(methods))])
        ax2.axhline(1e-4, color="k", ls="--", label="1e-4 dex (exact invariance target)")
        ax2.set_yscale("log")
        ax2.set_ylabel("std over the 8 rotations/flips [dex]")
        ax2.legend(fontsize=7)
        ax2.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "scatter_by_method.png")

        self._sample_figure(data, ctx.figures / "sample_images.png")
        if models and "r500_kpc" in data.columns:
            self._saliency_figure(ctx, data, test_idx, models)

    @staticmethod
    def _sample_figure(data: ClusterImages, path: Path) -> None:
        plt = plots.plt
        order = np.argsort(data.log_m500)
        picks = order[np.linspace(0, len(order) - 1, 8).astype(int)]
        fig, axes = plt.subplots(1, 8, figsize=(16, 2.4))
        for ax, i in zip(axes, picks):
            im = ax.imshow(np.log10(np.maximum(data.images[i], 1e-3)), vmin=IMAGE_VMIN, vmax=IMAGE_VMAX,
                           origin="lower", cmap="magma")
            state = f"\n{data.columns['core_state'][i]}" if "core_state" in data.columns else ""
            ax.set_title(f"log M = {data.log_m500[i]:.2f}{state}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=axes, shrink=0.8, label="log10 counts")
        plots.save_figure(fig, path)

    def _saliency_figure(self, ctx, data, test_idx, models) -> None:
        plt = plots.plt
        idx = test_idx[: ctx.options["n_saliency"]]
        r_rel = (radius_map(data.image_size)[None] * data.meta["kpc_per_pixel"]
                 / data.columns["r500_kpc"][idx, None, None])
        bins = np.linspace(0, 0.8, 17)
        fig, axes = plt.subplots(1, 2 + len(models), figsize=(3.4 * (2 + len(models)), 3.2))
        axes[0].imshow(np.log10(np.maximum(data.images[idx].mean(0), 1e-3)), origin="lower", cmap="magma",
                       vmin=IMAGE_VMIN, vmax=IMAGE_VMAX)
        axes[0].set_title("mean test image (log10 counts)", fontsize=9)
        for ax, (method, predictor) in zip(axes[1:], models.items()):
            sal = predictor.saliency(data.images[idx])
            ax.imshow(sal.mean(0), origin="lower", cmap="viridis")
            ax.set_title(f"{method}: mean |saliency|", fontsize=9)
            which = np.digitize(r_rel, bins) - 1
            profile = [sal[which == b].mean() if (which == b).any() else np.nan for b in range(len(bins) - 1)]
            axes[-1].plot(0.5 * (bins[1:] + bins[:-1]), np.asarray(profile) / np.nanmax(profile), "o-", ms=3,
                          label=method)
        for ax in axes[:-1]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[-1].axvline(CORE_EXCISED_APERTURE[0], color="k", ls="--", lw=0.8, label="0.15 R500 (core)")
        axes[-1].set_xlabel("r / R500")
        axes[-1].set_ylabel("saliency per pixel (max = 1)")
        axes[-1].legend(fontsize=7)
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "saliency.png")

    # --- predict ------------------------------------------------------------------------------------------

    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        """log10 M500 of every image in a cluster_TNG_data.fits-format file from the run's CNNs; each method's
        prediction is the mean over its fold models. Writes a CSV."""
        run_dir = Path(run_dir)
        weights = sorted((run_dir / "checkpoints").glob("mass.*/model.pt"))
        if not weights:
            raise DataFormatError(run_dir, "no trained CNN under checkpoints/ (is the run finished?)")
        images = load_cluster_fits(data, require_labels=False)
        columns: dict[str, np.ndarray] = {"image": np.arange(len(images))}
        if np.isfinite(images.log_m500).all():
            columns["log_M500"] = images.log_m500
        by_method: dict[str, list[np.ndarray]] = {}
        for path in weights:
            meta = read_json(path.parent / "meta.json")
            sized = images.rebinned(meta["image_size"])
            net = d4_cnn(meta["d4_widths"]) if meta["method"] == "d4cnn" else ntampaka_cnn()
            module = load_module(RegressionTask, path.parent, backbone=net, target_mean=[0.0], target_std=[1.0])
            pred = predict_module(module, sized.images[:, None], lambda m, x: m.predict_physical(x)[0])[:, 0]
            by_method.setdefault(meta["method"], []).append(pred)
        for method, preds in by_method.items():
            columns[f"{method}_log_m500"] = np.mean(preds, axis=0)
        return write_predictions(columns, out, ".5f")


def _write_simulated(folder: Path, key: dict[str, Any], n_jobs: int, progress: bool) -> Path:
    return simulate_clusters(folder / "cluster_TNG_data.fits", n=key["n_clusters"], seed=key["seed"],
                             n_projections=key["n_projections"], progress=progress, n_jobs=n_jobs)


def _d4_numpy(images: np.ndarray, g: int) -> np.ndarray:
    """D4 element ``g`` applied to (N, S, S) images, as :func:`~astrobench.core.nets.d4_transform` does."""
    return np.ascontiguousarray(d4_transform(torch.as_tensor(images), g).numpy())
