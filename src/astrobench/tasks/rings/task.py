"""Experiments of the rings task: classify, classify_n, clusters, regress, generate (see docs/tasks/rings.md)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from astrobench.core import metrics as M
from astrobench.core import plots
from astrobench.core.io import DataFormatError, bad_option, read_json, write_json_atomic, write_predictions
from astrobench.core.summary import GOAL, NOT_CONVERGED, Headline
from astrobench.core.task import Evaluation, RunContext, Simulation, Task
from astrobench.core.training import (
    ClassificationTask,
    ConditionalDecoderTask,
    ConditionalVAETask,
    RegressionTask,
    as_dataset,
    d4_average,
    fit,
    load_module,
    predict_batches,
    predict_module,
    random_d4,
)
from astrobench.tasks.rings.data import (
    RingSet,
    load_ring_collection,
    load_rings,
    split_indices,
)
from astrobench.tasks.rings.models import (
    CircleFit,
    RingDecoder,
    RingEncoder,
    ring_classifier,
    ring_regressor,
)
from astrobench.tasks.rings.simulate import PARAM_NAMES, SIMULATOR_VERSION
from astrobench.tasks.rings.simulate import simulate as simulate_rings

REL_ERR_PARAMS = ("radius", "thickness", "deformation")
TARGET = GOAL  # a goal this benchmark sets itself
# PIL's pixel i covers [i, i + 1) of the label coordinates; matplotlib's imshow centres pixel i on i.
PIXEL_ORIGIN = 0.5


class RingsTask(Task):
    name = "rings"
    summary = "Cherenkov-ring images: count rings, regress ring parameters, generate rings from parameters"
    n_unit = "images"
    bytes_per_object = 8e3  # a 28 x 28 image and its labels
    count_options = ("n_classify", "n_classify_n", "n_single", "n_generate_train")
    min_objects = 60
    simulator_version = SIMULATOR_VERSION
    anchors = {
        "classify.cnn.accuracy": {"value": ">= 0.995", "source": TARGET},
        "regress.cnn.x.rmse": {"value": "<= 0.3 px", "source": TARGET},
        "regress.cnn.y.rmse": {"value": "<= 0.3 px", "source": TARGET},
        "regress.cnn.radius.rmse": {"value": "<= 0.3 px", "source": TARGET},
        "generate.cvae.c2st_auc": {"value": "<= 0.75, below decoder", "source": TARGET},
        "generate.cvae.radius_fidelity_rmse": {"value": "<= 0.5 px", "source": TARGET},
        "generate.real.c2st_auc": {"value": "~0.5 (control)",
                                   "source": "two-sample test control (Lopez-Paz & Oquab 2017)"},
        "generate.degraded.c2st_auc": {"value": ">= 0.9 (control)",
                                       "source": "two-sample test control (Lopez-Paz & Oquab 2017)"},
    }
    question = ("Can a CNN count Cherenkov rings in an image, measure a ring's centre and radius to a fraction of a "
                "pixel, and generate rings from their parameters that a classifier cannot tell from simulated ones?")
    headlines = (
        Headline("classify", "accuracy", "accuracy, 1 vs 2 rings", better="higher"),
        Headline("classify_n", "accuracy", "accuracy, 1 to 5 rings", better="higher"),
        Headline("regress", "x.rmse", "centre x RMSE", "px"),
        Headline("regress", "y.rmse", "centre y RMSE", "px"),
        Headline("regress", "radius.rmse", "radius RMSE", "px"),
        Headline("generate", "c2st_auc", "C2ST AUC (0.5: indistinguishable)", controls=("real", "degraded")),
        Headline("generate", "radius_fidelity_rmse", "radius fidelity RMSE", "px", controls=("real", "degraded")),
    )
    quick_caveats = {"generate.decoder": "quick-size C2ST has little power (the degraded control barely separates): "
                                         "see the full run",
                     "generate.cvae": NOT_CONVERGED}
    figure_captions = {
        "classify_confusion": ("Confusion matrix, 1 vs 2 rings", "Test images: true ring count (rows) against the "
                               "CNN's prediction (columns)."),
        "classify_n_confusion": ("Confusion matrix, 1 to 5 rings", "Overlapping rings are where the counts are "
                                 "confused: most errors sit next to the diagonal."),
        "classify_n_accuracy_by_n": ("Accuracy by ring count", "Test accuracy for each true number of rings, with "
                                     "bootstrap error bars."),
        "clusters_found_vs_true": ("DBSCAN clusters against true rings", "Counting rings by clustering lit pixels: "
                                   "the classical baseline the CNN replaces."),
        "regress_examples": ("Fitted rings", "Test images with the true ring and the CNN's and the circle fit's "
                             "rings drawn over them."),
        "regress_relative_errors": ("Regression errors", "Predicted minus true centre and radius, in pixels, for "
                                    "the CNN and the algebraic circle fit."),
        "regress_error_correlation": ("Error correlations", "How the errors of the five ring parameters move "
                                      "together (Pearson correlation)."),
        "generate_real_vs_generated": ("Simulated and generated rings", "Rings drawn by the simulator and by the "
                                       "generators for the same parameters."),
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            #            classify (train, val, test), classify_n, regress/generate, epochs, gen epochs, c2st n
            "smoke": dict(n_classify=(200, 60, 100), n_classify_n=(250, 60, 100), n_single=(300, 60, 160),
                          n_generate_train=300, max_epochs=1, regress_max_epochs=1, gen_max_epochs=1, n_c2st=50,
                          n_clusters=100),
            "quick": dict(n_classify=(3000, 500, 1000), n_classify_n=(4000, 500, 1000), n_single=(6000, 500, 1000),
                          n_generate_train=6000, max_epochs=4, regress_max_epochs=4, gen_max_epochs=3, n_c2st=400,
                          n_clusters=500),
            "full": dict(n_classify=(10000, 2000, 4000), n_classify_n=(12000, 2000, 5000),
                         n_single=(30000, 2000, 4000), n_generate_train=20000, max_epochs=25,
                         regress_max_epochs=12, gen_max_epochs=8, n_c2st=1500, n_clusters=2500),
        }[size]
        return {
            "image_size": 28,
            "max_rings": 5,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
            "data_split": [0.7, 0.15, 0.15],
            "batch_size": 128,
            "lr": 1e-3,
            "patience": 8,
            "widths": [16, 32, 64],
            "circle_fit_max_train": 5000,
            "pca_components": 50,
            "svm_c": 10.0,
            "svm_max_train": 10000,
            "augment_d4": True,
            "dbscan_eps": 1.5,
            "dbscan_min_samples": 1,
            "cvae_latent_dim": 8,
            "cvae_beta": 3.0,
            "decoder_width": 32,
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        for key in ("n_classify", "n_classify_n", "n_single"):
            value = options[key]
            if len(value) != 3 or not all(isinstance(v, int) and v >= 1 for v in value):
                raise bad_option(options, key, "three positive integers [train, val, test]")
        for key in ("max_epochs", "regress_max_epochs", "gen_max_epochs", "batch_size", "n_c2st", "n_clusters",
                    "n_generate_train", "cvae_latent_dim", "decoder_width", "pca_components", "svm_max_train",
                    "circle_fit_max_train", "dbscan_min_samples"):
            if options[key] < 1:
                raise bad_option(options, key, "a positive integer")
        for key in ("lr", "svm_c", "dbscan_eps", "cvae_beta"):
            if not options[key] > 0:
                raise bad_option(options, key, "positive")
        if options["patience"] < 0:
            raise bad_option(options, "patience", ">= 0")
        if not 16 <= options["image_size"] or options["image_size"] % 4:
            raise bad_option(options, "image_size", "a multiple of 4, at least 16")
        if not 1 <= options["max_rings"] <= 10:
            raise bad_option(options, "max_rings", "in [1, 10]")
        if not options["widths"] or not all(isinstance(w, int) and w >= 1 for w in options["widths"]):
            raise bad_option(options, "widths", "a list of positive integers")
        split = options["data_split"]
        if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1) > 1e-6:
            raise bad_option(options, "data_split", "three non-negative fractions summing to 1")
        return options

    # --- data -------------------------------------------------------------------------------------------

    def simulate(self, out, n, seed=0, format=None, mode="single", max_rings=2, image_size=28) -> Path:
        return simulate_rings(out, n=n, seed=seed, format=format or "png", mode=mode, max_rings=max_rings,
                            image_size=image_size)

    # the simulated sets: experiment -> (simulator mode, max rings, option with [train, val, test], seed offset)
    PLAN: ClassVar[dict[str, tuple[str, str | int, str, int]]] = {
        "classify": ("n_ring", 2, "n_classify", 0), "classify_n": ("n_ring", "max_rings", "n_classify_n", 1),
        "single": ("single", 1, "n_single", 2)}

    def simulations(self, ctx: RunContext) -> dict[str, Simulation]:
        sims = {}
        for experiment, (mode, rings, sizes, offset) in self.PLAN.items():
            max_rings = ctx.options[rings] if isinstance(rings, str) else rings
            key = {"mode": mode, "max_rings": max_rings, "n": sum(ctx.options[sizes]),
                   "image_size": ctx.options["image_size"], "seed": ctx.seed + offset}
            sims[experiment] = Simulation(key, "rings.npz", functools.partial(_write_simulated, key=key))
        return sims

    def read(self, ctx: RunContext, paths: Mapping[str, Path]) -> dict[str, tuple[RingSet, RingSet, RingSet]]:
        """{"classify"|"classify_n"|"single": (train, val, test)}: the simulated sets cut by the options' sizes, or
        the user's collection split by ``data_split``."""
        opts = ctx.options
        splits: dict[str, tuple[RingSet, RingSet, RingSet]] = {}
        if "data" not in paths:
            for experiment, path in paths.items():
                full, cut = load_rings(path), np.cumsum(opts[self.PLAN[experiment][2]])
                splits[experiment] = (full.subset(slice(0, cut[0])), full.subset(slice(cut[0], cut[1])),
                                      full.subset(slice(cut[1], cut[2])))
        else:
            for kind, ring_set in load_ring_collection(paths["data"]).items():
                if ring_set.image_size != opts["image_size"]:
                    raise DataFormatError(ring_set.source, f"images are {ring_set.image_size} px but image_size is "
                                          f"{opts['image_size']}; pass --set image_size={ring_set.image_size}")
                parts = tuple(ring_set.subset(i) for i in split_indices(len(ring_set), opts["data_split"], ctx.seed))
                if kind == "single_ring":
                    splits["single"] = parts
                else:
                    splits["classify" if ring_set.n_rings.max() <= 2 else "classify_n"] = parts
        for key, (tr, va, te) in splits.items():
            ctx.data_info[key] = {"n_train": len(tr), "n_val": len(va), "n_test": len(te)}
        first = next(iter(splits.values()))
        ctx.data_info.update(n_train=sum(len(s[0]) for s in splits.values()),
                             n_val=sum(len(s[1]) for s in splits.values()),
                             n_test=sum(len(s[2]) for s in splits.values()), image_size=first[0].image_size)
        return splits

    # --- fit ----------------------------------------------------------------------------------------------------

    def fit(self, ctx: RunContext, data: dict[str, tuple[RingSet, RingSet, RingSet]]) -> dict[str, Any]:
        """{"classify"|"classify_n": {"cnn": (module, FitResult), "pca_svm": pipeline},
        "regress": {"cnn": ..., "circle_fit": CircleFit}, "generate": {"decoder"|"cvae": (module, FitResult)}}."""
        models: dict[str, Any] = {}
        for key in ("classify", "classify_n"):
            if key in data:
                train, val, _ = data[key]
                models[key] = {"cnn": self._train_classifier(ctx, key, train, val, int(train.n_rings.max()))}
                if key == "classify":
                    models[key]["pca_svm"] = self._fit_svm(ctx, key, train)
        if "single" in data:
            models["regress"] = self._fit_regressors(ctx, *data["single"][:2])
            models["generate"] = self._fit_generators(ctx, *data["single"][:2])
        return models

    def _train_classifier(self, ctx, experiment, train, val, n_classes):
        # The number of rings does not change under rotations and flips: train on all 8 views of each image.
        ctx.seed_model(experiment, "cnn")
        module = ClassificationTask(ring_classifier(n_classes, ctx.options["image_size"], ctx.options["widths"]),
                                    lr=ctx.options["lr"], augment=random_d4 if ctx.options["augment_d4"] else None)
        ckpt = ctx.checkpoint_dir(experiment, "cnn")
        ctx.log(f"{experiment}: training cnn on {len(train)} images")
        res = fit(module, as_dataset(train.as_float(), train.n_rings - 1, dtypes=(torch.float32, torch.long)),
                  as_dataset(val.as_float(), val.n_rings - 1, dtypes=(torch.float32, torch.long)),
                  ckpt, ctx.train_config(), resume=ctx.resume)
        write_json_atomic(ckpt / "meta.json", {"kind": "classifier", "n_classes": n_classes,
                                               "image_size": ctx.options["image_size"], "widths": ctx.options["widths"],
                                               "augment_d4": ctx.options["augment_d4"]})
        return module, res

    @staticmethod
    def _fit_svm(ctx: RunContext, experiment: str, train: RingSet):
        from sklearn.decomposition import PCA
        from sklearn.pipeline import make_pipeline
        from sklearn.svm import SVC

        n_fit = min(len(train), ctx.options["svm_max_train"])
        ctx.log(f"{experiment}: fitting pca_svm on {n_fit} images")
        pipe = make_pipeline(PCA(min(ctx.options["pca_components"], n_fit - 1), random_state=ctx.seed),
                             SVC(C=ctx.options["svm_c"], gamma="scale"))
        return pipe.fit(train.as_float()[:n_fit].reshape(n_fit, -1), train.n_rings[:n_fit])

    @staticmethod
    def _fit_regressors(ctx: RunContext, train: RingSet, val: RingSet) -> dict[str, Any]:
        opts = ctx.options
        ctx.seed_model("regress", "cnn")
        module = RegressionTask(ring_regressor(opts["image_size"], opts["widths"]), train.params.mean(0),
                                train.params.std(0), lr=opts["lr"])
        ckpt = ctx.checkpoint_dir("regress", "cnn")
        ctx.log(f"regress: training cnn on {len(train)} images")
        res = fit(module, as_dataset(train.as_float(), train.params), as_dataset(val.as_float(), val.params),
                  ckpt, ctx.train_config(max_epochs=opts["regress_max_epochs"]), resume=ctx.resume)
        write_json_atomic(ckpt / "meta.json", {"kind": "regressor", "image_size": opts["image_size"],
                                               "widths": opts["widths"]})
        n_fit = opts["circle_fit_max_train"]
        return {"cnn": (module, res), "circle_fit": CircleFit().fit(train.images[:n_fit], train.params[:n_fit])}

    @staticmethod
    def _fit_generators(ctx: RunContext, train: RingSet, val: RingSet) -> dict[str, Any]:
        opts = ctx.options
        mean, std = train.params.mean(0), train.params.std(0)
        cfg = ctx.train_config(max_epochs=opts["gen_max_epochs"])
        train = train.subset(slice(0, opts["n_generate_train"]))
        train_ds, val_ds = as_dataset(train.params, train.as_float()), as_dataset(val.params, val.as_float())
        latent = opts["cvae_latent_dim"]
        ctx.seed_model("generate", "decoder_and_cvae")
        generators = {
            "decoder": ConditionalDecoderTask(RingDecoder(0, mean, std, opts["image_size"], opts["decoder_width"]),
                                              lr=opts["lr"]),
            "cvae": ConditionalVAETask(RingEncoder(latent, mean, std, opts["image_size"], opts["widths"]),
                                       RingDecoder(latent, mean, std, opts["image_size"], opts["decoder_width"]),
                                       latent, likelihood="bernoulli", beta=opts["cvae_beta"], lr=opts["lr"]),
        }
        fitted = {}
        for method, module in generators.items():
            ctx.log(f"generate: training {method} on {len(train)} images")
            fitted[method] = (module, fit(module, train_ds, val_ds, ctx.checkpoint_dir("generate", method), cfg,
                                          resume=ctx.resume))
        return fitted

    # --- evaluate -------------------------------------------------------------------------------------------------

    def evaluate(self, ctx: RunContext, data: dict[str, tuple[RingSet, RingSet, RingSet]],
                 models: dict[str, Any]) -> Evaluation:
        results: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        for key in ("classify", "classify_n"):
            if key in data:
                results[key], outputs[key] = self._score_classifiers(ctx, data[key], models[key])
        cluster_source = data.get("classify_n") or data.get("classify")
        if cluster_source is not None:
            results["clusters"], outputs["clusters"] = self._clusters(ctx, cluster_source[2])
        if "single" in data:
            test = data["single"][2]
            results["regress"], outputs["regress"] = self._score_regressors(ctx, test, models["regress"])
            results["generate"], outputs["generate"] = self._score_generators(ctx, test, models["generate"],
                                                                              models["regress"]["cnn"][0])
        return Evaluation(results, outputs)

    def _score_classifiers(self, ctx: RunContext, split: tuple[RingSet, RingSet, RingSet], models: dict[str, Any]):
        """The classifiers' metrics on the test set, and their confusion matrices (for the figures)."""
        train, _, test = split
        labels = list(range(1, max(int(train.n_rings.max()), int(test.n_rings.max())) + 1))
        module, res = models["cnn"]
        pred = predict_batches(self._class_probabilities(module, ctx.options["augment_d4"]),
                               test.as_float()).argmax(1) + 1
        out: dict[str, Any] = {"cnn": self._classification_metrics(test.n_rings, pred, labels, ctx.seed)}
        out["cnn"]["epochs"] = res.epochs
        if "pca_svm" in models:
            svm_pred = models["pca_svm"].predict(test.as_float().reshape(len(test), -1))
            out["pca_svm"] = self._classification_metrics(test.n_rings, svm_pred, labels, ctx.seed)
        return out, {"labels": labels, "matrices": {m: np.asarray(r["confusion_matrix"]) for m, r in out.items()}}

    @staticmethod
    def _class_probabilities(module, d4: bool):
        """Softmax probabilities; with ``d4`` averaged over the 8 views the network was trained on."""
        probabilities = lambda x: torch.softmax(module(x), dim=1)  # noqa: E731
        return d4_average(probabilities) if d4 else probabilities

    @staticmethod
    def _classification_metrics(y_true, y_pred, labels, seed) -> dict[str, Any]:
        from sklearn.metrics import confusion_matrix

        out = M.with_error("accuracy", M.accuracy, y_true, y_pred, seed=seed)
        by_n, by_n_err = {}, {}
        for n in labels:
            sel = y_true == n
            if sel.any():
                by_n[str(n)], by_n_err[str(n)] = M.bootstrap(M.accuracy, y_true[sel], y_pred[sel], seed=seed)
        out["accuracy_by_n"], out["accuracy_by_n_err"] = by_n, by_n_err
        out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
        return out

    @staticmethod
    def _clusters(ctx: RunContext, test: RingSet):
        """DBSCAN's cluster count against the true number of rings; and the counts (for the figure)."""
        from sklearn.cluster import DBSCAN

        sub = test.subset(slice(0, ctx.options["n_clusters"]))
        dbscan = DBSCAN(eps=ctx.options["dbscan_eps"], min_samples=ctx.options["dbscan_min_samples"])
        found = np.array([len(set(dbscan.fit_predict(np.argwhere(img > 0))) - {-1}) if (img > 0).any() else 0
                          for img in sub.images])
        means, errs, exact, exact_errs = {}, {}, {}, {}
        for n in np.unique(sub.n_rings):
            sel = sub.n_rings == n
            means[str(n)], errs[str(n)] = M.bootstrap(np.mean, found[sel], seed=ctx.seed)
            exact[str(n)], exact_errs[str(n)] = M.bootstrap(np.mean, found[sel] == n, seed=ctx.seed)
        return ({"dbscan": {"mean_clusters_by_n": means, "mean_clusters_by_n_err": errs,
                            "exact_fraction_by_n": exact, "exact_fraction_by_n_err": exact_errs,
                            "n_images": int(len(sub))}},
                {"found": found, "n_rings": sub.n_rings})

    def _score_regressors(self, ctx: RunContext, test: RingSet, models: dict[str, Any]):
        module, res = models["cnn"]
        pred = predict_batches(lambda x: module.predict_physical(x)[0], test.as_float())
        results = {"cnn": {"epochs": res.epochs, **self._regression_metrics(test.params, pred, PARAM_NAMES, ctx.seed)}}
        results["circle_fit"] = self._regression_metrics(test.params, models["circle_fit"].predict(test.images),
                                                         PARAM_NAMES[:3], ctx.seed)
        return results, {"test": test, "pred": pred}

    @staticmethod
    def _regression_metrics(truth: np.ndarray, pred: np.ndarray, names, seed: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for j, p in enumerate(names):
            out[p] = {**M.with_error("rmse", M.rmse, truth[:, j], pred[:, j], seed=seed),
                      **M.with_error("bias", M.bias, truth[:, j], pred[:, j], seed=seed)}
            if p in REL_ERR_PARAMS:
                out[p].update(M.with_error("rel_err_sigma68", M.rel_err_sigma68, truth[:, j], pred[:, j], seed=seed))
        return out

    @staticmethod
    def _score_generators(ctx: RunContext, test: RingSet, generators: dict[str, Any], regressor):
        """C2ST and radius fidelity of the generated rings, with a real-vs-real and a degraded control."""
        # Disjoint halves of the test pool: A is the C2ST reference, B's labels condition the generators.
        n_c2st = min(ctx.options["n_c2st"], len(test) // 2)
        ref, other = test.subset(slice(0, n_c2st)), test.subset(slice(n_c2st, 2 * n_c2st))
        cond = torch.as_tensor(other.params, dtype=torch.float32)
        samples: dict[str, np.ndarray] = {}
        for method, (module, _) in generators.items():
            gen = torch.Generator().manual_seed(ctx.seed)
            # Images in the real format are binary (0 or 255): the decoder's grey output is thresholded.
            samples[method] = (module.sample(cond, generator=gen).numpy() > 0.5).astype(np.float32)
        if n_c2st >= M.C2ST_MIN_SAMPLES:
            c2st = M.c2st_with_controls(ref.as_float(), other.as_float(), samples, degrade=_thicken, seed=ctx.seed)
        else:
            ctx.log(f"generate: only {n_c2st} test images per C2ST side (< {M.C2ST_MIN_SAMPLES}); C2ST skipped")
            c2st = {key: {} for key in ("real_vs_real", "real_vs_degraded", *samples)}
        out: dict[str, Any] = {}
        for method, images in {"real": other.as_float(), **samples}.items():
            radius = predict_batches(lambda x: regressor.predict_physical(x)[0], images)[:, 2]
            out[method] = {**c2st["real_vs_real" if method == "real" else method],
                           **M.with_error("radius_fidelity_rmse", M.rmse, other.params[:, 2], radius, seed=ctx.seed)}
        if c2st["real_vs_degraded"]:
            out["degraded"] = c2st["real_vs_degraded"]
        for method, (_, res) in generators.items():
            out[method]["epochs"] = res.epochs
        return out, {"real": other, "samples": samples}

    # --- figures --------------------------------------------------------------------------------------------------

    def figures(self, ctx: RunContext, data, models: dict[str, Any], evaluation: Evaluation) -> None:
        results, outputs = evaluation.results, evaluation.outputs
        for experiment, fitted in models.items():
            for method, model in fitted.items():
                if isinstance(model, tuple):  # a network and its training history
                    plots.loss_curves(model[1].history, f"{experiment} {method}",
                                      ctx.figures / f"loss_{experiment}_{method}.png")
        for key in ("classify", "classify_n"):
            if key in outputs:
                plots.confusion_matrices(outputs[key]["matrices"], [str(n) for n in outputs[key]["labels"]],
                                         ctx.figures / f"{key}_confusion.png")
        if "classify_n" in results:
            self._plot_accuracy_by_n(results["classify_n"]["cnn"], ctx.figures / "classify_n_accuracy_by_n.png")
        if "clusters" in outputs:
            self._plot_clusters(outputs["clusters"]["found"], outputs["clusters"]["n_rings"],
                                ctx.figures / "clusters_found_vs_true.png")
        if "regress" in outputs:
            self._regression_figures(ctx, outputs["regress"]["test"], outputs["regress"]["pred"])
        if "generate" in outputs:
            self._generation_figure(ctx, outputs["generate"]["real"], outputs["generate"]["samples"])

    @staticmethod
    def _plot_accuracy_by_n(m: dict, path: Path) -> None:
        fig, ax = plots.plt.subplots(figsize=(4.5, 3.3))
        ns = [int(k) for k in m["accuracy_by_n"]]
        ax.errorbar(ns, list(m["accuracy_by_n"].values()), yerr=list(m["accuracy_by_n_err"].values()), fmt="o-")
        ax.set_xlabel("true number of rings N")
        ax.set_ylabel("CNN accuracy")
        ax.set_xticks(ns)
        ax.grid(alpha=0.3)
        plots.save_figure(fig, path)

    @staticmethod
    def _plot_clusters(found: np.ndarray, n_rings: np.ndarray, path: Path) -> None:
        fig, ax = plots.plt.subplots(figsize=(4.8, 3.6))
        ns = np.unique(n_rings)
        ax.violinplot([found[n_rings == n] for n in ns], positions=ns, showmeans=True)
        ax.plot(ns, ns, "k--", lw=1, label="found = true")
        ax.set_xlabel("true number of rings N")
        ax.set_ylabel("DBSCAN clusters found")
        ax.set_xticks(ns)
        ax.legend()
        plots.save_figure(fig, path)

    @staticmethod
    def _regression_figures(ctx: RunContext, test: RingSet, pred: np.ndarray) -> None:
        from matplotlib.patches import Circle

        plt = plots.plt
        rel = (test.params - pred) / test.params
        fig, axes = plt.subplots(1, 5, figsize=(16, 3))
        for j, (ax, p) in enumerate(zip(axes, PARAM_NAMES)):
            lo, hi = np.percentile(rel[:, j], [1, 99])
            ax.hist(rel[:, j], bins=60, range=(lo, hi), color="C0")
            ax.set_xlabel(f"({p} true - pred) / true")
            ax.set_title(f"sigma68 = {M.sigma68(rel[:, j]):.3f}")
        plots.save_figure(fig, ctx.figures / "regress_relative_errors.png")
        corr = np.corrcoef((pred - test.params).T)
        fig, ax = plt.subplots(figsize=(4.6, 4))
        im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
        for i in range(5):
            for j in range(5):
                ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(5), PARAM_NAMES, rotation=45)
        ax.set_yticks(range(5), PARAM_NAMES)
        fig.colorbar(im, ax=ax, label="correlation of errors")
        plots.save_figure(fig, ctx.figures / "regress_error_correlation.png")

        def overlay(ax, i):
            for params, color in ((test.params[i], "lime"), (pred[i], "red")):
                ax.add_patch(Circle(params[:2] - PIXEL_ORIGIN, params[2], fill=False, color=color, lw=1))

        plots.image_grid({"true (green) / predicted (red)": test.as_float()[:8, 0]},
                         ctx.figures / "regress_examples.png", overlays={"true (green) / predicted (red)": overlay})

    @staticmethod
    def _generation_figure(ctx: RunContext, real: RingSet, samples: dict[str, np.ndarray]) -> None:
        from matplotlib.patches import Circle

        rows = {"real": real.as_float()[:8, 0], **{m: s[:8, 0] for m, s in samples.items()}}

        def overlay(ax, i):
            ax.add_patch(Circle(real.params[i, :2] - PIXEL_ORIGIN, real.params[i, 2], fill=False, color="red", lw=0.6,
                                alpha=0.6))

        plots.image_grid(rows, ctx.figures / "generate_real_vs_generated.png", overlays={k: overlay for k in rows})

    # --- predict ------------------------------------------------------------------------------------------

    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        """Apply the run's CNNs (classifiers and regressor) to images in the ring format; write a CSV."""
        run_dir = Path(run_dir)
        models = sorted((run_dir / "checkpoints").glob("*.cnn/model.pt"))
        if not models:
            raise DataFormatError(run_dir, "no trained CNN found under checkpoints/ (is the run finished?)")
        ring_set = load_rings(data, require_labels=False)
        columns: dict[str, np.ndarray] = {"image": np.arange(len(ring_set))}
        for weights in models:
            meta = read_json(weights.parent / "meta.json")
            experiment = weights.parent.name.split(".")[0]
            if ring_set.image_size != meta["image_size"]:
                raise DataFormatError(data, f"images are {ring_set.image_size} px; the run's models expect "
                                      f"{meta['image_size']} px")
            if meta["kind"] == "classifier":
                module = load_module(ClassificationTask, weights.parent, backbone=ring_classifier(
                    meta["n_classes"], meta["image_size"], meta["widths"]))
                probabilities = self._class_probabilities(module, meta.get("augment_d4", False))
                probs = predict_module(module, ring_set.as_float(), lambda m, x: probabilities(x))  # noqa: B023
                columns[f"{experiment}_cnn_n_rings"] = probs.argmax(1) + 1
            else:
                module = load_module(RegressionTask, weights.parent, backbone=ring_regressor(meta["image_size"],
                                                                                            meta["widths"]),
                                     target_mean=np.zeros(5), target_std=np.ones(5))
                pred = predict_module(module, ring_set.as_float(), lambda m, x: m.predict_physical(x)[0])
                for j, p in enumerate(PARAM_NAMES):
                    columns[f"{experiment}_cnn_{p}"] = pred[:, j]
        return write_predictions(columns, out, ".4f")


def _write_simulated(folder: Path, key: dict[str, Any]) -> Path:
    return simulate_rings(folder / "rings.npz", n=key["n"], seed=key["seed"], format="npz", mode=key["mode"],
                          max_rings=key["max_rings"], image_size=key["image_size"])


def _thicken(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The C2ST's degraded control: every ring grown by one pixel (a binary dilation with a cross)."""
    from scipy.ndimage import binary_dilation

    structure = np.zeros((1, 1, 3, 3), dtype=bool)
    structure[0, 0, 1, :] = structure[0, 0, :, 1] = True
    return binary_dilation(images > 0.5, structure=structure).astype(np.float32)
