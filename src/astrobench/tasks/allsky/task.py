"""Experiments of the allsky task: sky-condition classification of all-sky camera frames (docs/tasks/allsky.md).

``results.classify.<method>`` on the test split (simulated frames, or the user's with ``--data``): accuracy,
macro_f1, ece, confusion, and for frames with the 33 sub-region flags subregion_accuracy and the cloud-fraction mae.
``results.real.<method>``: the same models on other frames (``--set eval_data=DIR``), never used for training or
model selection, with per-frame predictions. ``results.summary``: the method with the best validation accuracy.
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrobench.core import metrics as M
from astrobench.core import plots
from astrobench.core.io import (
    ConfigError,
    DataFormatError,
    atomic_path,
    read_json,
    read_run_config,
    write_json_atomic,
    write_pickle_atomic,
)
from astrobench.core.task import RunContext, Task, cached
from astrobench.core.training import as_dataset, fit, load_weights, predict_batches
from astrobench.tasks.allsky.data import FrameSet, load_frames, split_indices
from astrobench.tasks.allsky.geometry import N_SUBREGIONS
from astrobench.tasks.allsky.models import FeatureGBM, MobileNetSky, SkyConditionTask, imagenet_weights_path, sky_cnn
from astrobench.tasks.allsky.simulate import FRAME_SHAPE, SIMULATOR_VERSION
from astrobench.tasks.allsky.simulate import simulate as simulate_frames

PREPROCESS_VERSION = "2"  # bump when data.preprocess_frame changes: the cached network inputs are rebuilt
METHODS = ("cnn", "mobilenet_ft", "features_gbm")
NETWORKS = ("cnn", "mobilenet_ft")
TARGET = "target (issue #8)"
MOMMERT = "Mommert 2020 (AJ 159, 178), Lowell all-sky camera, per sub-region cloudy/clear"


def simulated_frames(ctx: RunContext, n: int, seed: int, shape: tuple[int, int] = FRAME_SHAPE) -> FrameSet:
    """``n`` simulated frames of a camera with ``shape`` pixels, written in the manifest form and read back through
    the loader (both cached under the ``allsky`` task). Reads the options ``frame_format``, ``n_jobs`` and
    ``image_size``."""
    opts = ctx.options
    sim_key = {"n": n, "seed": seed, "shape": list(shape), "format": opts["frame_format"]}

    def build_frames(folder: Path) -> Path:
        ctx.log(f"simulating {n} frames (cached for later runs)")
        return simulate_frames(folder, n=n, seed=seed, format=opts["frame_format"], n_jobs=opts["n_jobs"],
                               shape=tuple(shape), progress=ctx.progress)

    manifest = cached("allsky", SIMULATOR_VERSION, sim_key, build_frames, "manifest.csv")

    def build_arrays(folder: Path) -> Path:
        ctx.log(f"preprocessing {n} frames (cached for later runs)")
        frames = load_frames(manifest, opts["image_size"], progress=ctx.progress, n_jobs=opts["n_jobs"])
        frames.save(folder / "frames.npz")
        return folder / "frames.npz"

    arrays = cached("allsky", SIMULATOR_VERSION, {**sim_key, "image_size": opts["image_size"],
                                                   "preprocess": PREPROCESS_VERSION}, build_arrays, "frames.npz")
    camera = "" if tuple(shape) == FRAME_SHAPE else f"_{shape[0]}x{shape[1]}"
    ctx.data_info.setdefault("simulated", {})[f"n{n}_seed{seed}{camera}"] = str(manifest)
    return FrameSet.load(arrays)


class AllskyTask(Task):
    name = "allsky"
    summary = "sky-condition classification of all-sky camera frames: clear / partly cloudy / overcast + 33 sub-regions"
    n_unit = "frames"
    anchors = {
        "classify.best.accuracy": {"value": ">= 0.97 (simulated frames)", "source": TARGET},
        "classify.best.subregion_accuracy": {"value": ">= 0.95 (simulated frames)", "source": TARGET},
        "classify.features_gbm.subregion_accuracy": {"value": "0.95 (real frames, gradient boosting)",
                                                     "source": MOMMERT},
        "classify.cnn.subregion_accuracy": {"value": "0.85 (real frames, ResNet)", "source": MOMMERT},
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(n_frames=90, max_epochs=1, mobilenet_max_epochs=1, mobilenet_max_train=32, gbm_max_iter=20,
                          n_pretrain=60, n_saliency=1),
            "quick": dict(n_frames=800, max_epochs=10, mobilenet_max_epochs=3, mobilenet_max_train=400,
                          gbm_max_iter=200, n_pretrain=800, n_saliency=4),
            "full": dict(n_frames=6000, max_epochs=20, mobilenet_max_epochs=6, mobilenet_max_train=4200,
                         gbm_max_iter=400, n_pretrain=4000, n_saliency=10),
        }[size]
        return {
            **sizes,
            "methods": list(METHODS),
            "image_size": 64,
            "data_split": [0.7, 0.1, 0.2],
            "batch_size": 64,
            "lr": 1e-3,
            "mobilenet_lr": 5e-4,
            "patience": 5,
            "widths": [16, 32, 64, 64],
            "flag_weight": 1.0,
            "augment_d4": True,
            "tta": True,
            "imagenet_weights": "",
            "pretrain": "none",
            "eval_data": "",
            "frame_format": "fits",
            "n_jobs": 2,
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        def fail(key, expected):
            raise ConfigError(f"option {key} must be {expected}, got {options[key]!r}")

        for key in ("n_frames", "max_epochs", "mobilenet_max_epochs", "mobilenet_max_train", "gbm_max_iter",
                    "n_pretrain", "batch_size", "n_jobs"):
            if not isinstance(options[key], int) or options[key] < 1:
                fail(key, "a positive integer")
        if options["n_saliency"] < 0:
            fail("n_saliency", ">= 0")
        unknown = [m for m in options["methods"] if m not in METHODS]
        if unknown or not options["methods"]:
            fail("methods", f"a non-empty list from {list(METHODS)}")
        if options["image_size"] not in (32, 64, 96, 128):
            fail("image_size", "one of 32, 64, 96, 128")
        split = options["data_split"]
        if len(split) != 3 or min(split) <= 0 or abs(sum(split) - 1) > 1e-6:
            fail("data_split", "three positive fractions summing to 1")
        for key in ("lr", "mobilenet_lr"):
            if not options[key] > 0:
                fail(key, "positive")
        if options["flag_weight"] < 0:
            fail("flag_weight", ">= 0")
        if options["pretrain"] not in ("none", "simulated"):
            fail("pretrain", "none or simulated")
        if options["frame_format"] not in ("fits", "png"):
            fail("frame_format", "fits or png")
        if not options["widths"] or not all(isinstance(w, int) and w >= 1 for w in options["widths"]):
            fail("widths", "a list of positive integers")
        return options

    # --- data ---------------------------------------------------------------------------------------------

    def simulate(self, out, n, seed=0, format=None, n_jobs=2) -> Path:
        return simulate_frames(out, n=n, seed=seed, format=format or "fits", n_jobs=n_jobs)

    def _splits(self, ctx: RunContext) -> tuple[FrameSet, FrameSet, FrameSet]:
        opts = ctx.options
        if ctx.config["data"] is None:
            ctx.data_info["source"] = "simulated"
            frames = simulated_frames(ctx, opts["n_frames"], ctx.seed)
        else:
            ctx.data_info.update(source="file", path=str(ctx.config["data"]))
            frames = load_frames(ctx.config["data"], opts["image_size"], progress=ctx.progress, n_jobs=opts["n_jobs"])
        counts = np.bincount(frames.labels, minlength=len(frames.class_names))
        if (counts > 0).sum() < 2:
            raise DataFormatError(frames.source, "a classifier needs frames of at least two classes")
        parts = [frames.subset(i) for i in split_indices(frames.labels, tuple(opts["data_split"]), ctx.seed)]
        if min(len(p) for p in parts) == 0:
            raise DataFormatError(frames.source, f"{len(frames)} frames are too few for a train/validation/test split")
        ctx.data_info.update(n_train=len(parts[0]), n_val=len(parts[1]), n_test=len(parts[2]),
                             classes=frames.class_names, class_counts=counts.tolist(),
                             frames_with_flags=int(frames.has_flags.sum()))
        return parts[0], parts[1], parts[2]

    # --- experiments ------------------------------------------------------------------------------------------

    def run(self, ctx: RunContext) -> dict[str, Any]:
        opts = ctx.options
        methods = list(opts["methods"])
        skipped: dict[str, Any] = {}
        if "mobilenet_ft" in methods:
            try:  # fail before any work
                ctx.data_info["imagenet_weights"] = str(imagenet_weights_path(opts["imagenet_weights"] or None))
            except ConfigError as err:
                if opts["imagenet_weights"] or methods != list(METHODS):
                    raise  # asked for by name: the user must hear it
                # the default method list (`astrobench demo`, a first run): go on without it and say why
                methods.remove("mobilenet_ft")
                skipped["mobilenet_ft"] = {"skipped": str(err)}
                ctx.log(f"[yellow]mobilenet_ft skipped:[/] {err}")
        with ctx.timer("simulate"):
            train, val, test = self._splits(ctx)
            pretrain = None
            if opts["pretrain"] == "simulated" and ctx.config["data"] is not None:
                pretrain = simulated_frames(ctx, opts["n_pretrain"], ctx.seed + 1000)
                if pretrain.class_names != train.class_names:
                    ctx.log("pretrain: the simulated classes differ from the data's; the class layer starts afresh")
            eval_frames = None
            if opts["eval_data"]:
                eval_frames = load_frames(opts["eval_data"], opts["image_size"], class_names=train.class_names,
                                          progress=ctx.progress, n_jobs=1)
                ctx.data_info["eval_data"] = {"path": str(opts["eval_data"]), "n": len(eval_frames)}
        results: dict[str, Any] = {"classify": dict(skipped)}
        if eval_frames is not None:
            results["real"] = {}
        models, val_accuracy, test_probs = {}, {}, {}
        for method in methods:
            model, probs_fn = self._train(ctx, method, train, val, pretrain)
            models[method] = (model, probs_fn)
            with ctx.timer("evaluate"):
                val_accuracy[method] = M.accuracy(val.labels, probs_fn(val)[:, : len(val.class_names)].argmax(1))
                test_probs[method] = probs_fn(test)
                results["classify"][method] = frame_metrics(test_probs[method], test, ctx.seed)
                if eval_frames is not None:
                    probs = probs_fn(eval_frames)
                    results["real"][method] = {**frame_metrics(probs, eval_frames, ctx.seed),
                                               "predictions_by_frame": per_frame(probs, eval_frames)}
        best = max(val_accuracy, key=val_accuracy.get)
        results["summary"] = {"best": {"method": best, "validation_accuracy": val_accuracy[best],
                                       **{k: results["classify"][best].get(k) for k in
                                          ("accuracy", "accuracy_err", "subregion_accuracy", "subregion_accuracy_err")}}}
        with ctx.timer("figures"):
            self._figures(ctx, test, test_probs, results, models, eval_frames, best)
        return results

    def _train(self, ctx: RunContext, method: str, train: FrameSet, val: FrameSet, pretrain: FrameSet | None):
        """Fit one method; returns (model, FrameSet -> (N, K + 33) probabilities)."""
        opts = ctx.options
        n_classes = len(train.class_names)
        if method == "features_gbm":
            path = ctx.checkpoint_dir("classify", method) / "model.pkl"
            if ctx.resume and path.exists():
                with open(path, "rb") as f:
                    gbm = pickle.load(f)
            else:
                ctx.log(f"classify: fitting features_gbm on {len(train)} frames")
                with ctx.timer("fit"):
                    gbm = FeatureGBM(opts["gbm_max_iter"], seed=ctx.seed).fit(train.features, train.labels,
                                                                              train.flags, n_classes)
                write_pickle_atomic(path, gbm)
                write_json_atomic(path.parent / "meta.json", {"method": method, "class_names": train.class_names,
                                                              "image_size": opts["image_size"]})
            return gbm, lambda fs: gbm.probabilities(fs.features)

        module = self._network(ctx, method, n_classes)
        if pretrain is not None:
            source = self._network(ctx, method, len(pretrain.class_names))
            p_train, p_val, _ = [pretrain.subset(i) for i in split_indices(pretrain.labels, (0.85, 0.15, 0.0),
                                                                            ctx.seed)]
            self._fit(ctx, "pretrain", method, source, p_train, p_val)
            target = module.state_dict()
            copied = {k: v for k, v in source.state_dict().items() if k in target and v.shape == target[k].shape}
            module.load_state_dict({**target, **copied})
            ctx.log(f"pretrain: {len(copied)} of {len(target)} tensors of {method} start from the simulated fit")
        self._fit(ctx, "classify", method, module, train, val)
        tta = opts["tta"] and opts["augment_d4"]

        def probabilities(fs: FrameSet) -> np.ndarray:
            return predict_batches(lambda x: module.probabilities(x, tta=tta), fs.images, batch_size=256)

        return module, probabilities

    def _network(self, ctx: RunContext, method: str, n_classes: int) -> SkyConditionTask:
        opts = ctx.options
        ctx.seed_model("classify", method)
        if method == "cnn":
            backbone, lr = sky_cnn(n_classes, opts["image_size"], tuple(opts["widths"])), opts["lr"]
        else:
            backbone = MobileNetSky(n_classes + N_SUBREGIONS, imagenet_weights_path(opts["imagenet_weights"] or None),
                                    input_px=opts["image_size"])
            lr = opts["mobilenet_lr"]
        return SkyConditionTask(backbone, n_classes, flag_weight=opts["flag_weight"], lr=lr, d4=opts["augment_d4"])

    def _fit(self, ctx: RunContext, experiment: str, method: str, module: SkyConditionTask, train: FrameSet,
             val: FrameSet) -> None:
        opts = ctx.options
        if method == "mobilenet_ft":  # about 2.5x slower per image than the small CNN on a CPU
            train = train.subset(slice(0, opts["mobilenet_max_train"]))
            cfg = ctx.train_config(max_epochs=opts["mobilenet_max_epochs"])
        else:
            cfg = ctx.train_config()
        ckpt = ctx.checkpoint_dir(experiment, method)
        ctx.log(f"{experiment}: training {method} on {len(train)} frames")
        with ctx.timer("fit"):
            res = fit(module, _dataset(train), _dataset(val), ckpt, cfg, resume=ctx.resume)
        write_json_atomic(ckpt / "meta.json", {"method": method, "n_classes": len(train.class_names),
                                               "class_names": train.class_names, "image_size": opts["image_size"],
                                               "widths": opts["widths"], "tta": opts["tta"] and opts["augment_d4"]})
        plots.loss_curves(res.history, f"{experiment} {method}", ctx.figures / f"loss_{experiment}_{method}.png")

    # --- figures ---------------------------------------------------------------------------------------------

    def _figures(self, ctx, test, test_probs, results, models, eval_frames, best) -> None:
        k = len(test.class_names)
        plots.confusion_matrices({m: confusion_array(p[:, :k].argmax(1), test.labels, k) for m, p in test_probs.items()},
                                 test.class_names, ctx.figures / "classify_confusion.png")
        example_figure(test, test_probs[best], best, ctx.figures / "classify_examples.png")
        if eval_frames is not None:
            probs = {m: fn(eval_frames) for m, (_, fn) in models.items()}
            plots.confusion_matrices({m: confusion_array(p[:, :k].argmax(1), eval_frames.labels, k)
                                      for m, p in probs.items()}, test.class_names, ctx.figures / "real_confusion.png")
            example_figure(eval_frames, probs[best], best, ctx.figures / "real_examples.png", per_class=None)
        networks = [m for m in models if m in NETWORKS]
        if networks and ctx.options["n_saliency"]:
            net = best if best in networks else networks[0]
            frames = eval_frames if eval_frames is not None else test
            chosen = frames.subset(slice(0, ctx.options["n_saliency"]))
            saliency_figure(models[net][0], chosen, net, ctx.figures / ("real_saliency.png" if eval_frames is not None
                                                                        else "classify_saliency.png"))

    # --- predict ---------------------------------------------------------------------------------------------

    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        """Class probabilities and flagged sub-regions of every frame of ``data`` from each of the run's models
        (CSV, one row per frame and method)."""
        run_dir = Path(run_dir)
        if read_run_config(run_dir)["task"] != self.name:
            raise ConfigError(f"{run_dir} is not an allsky run")
        folders = sorted(p for p in (run_dir / "checkpoints").glob("classify.*") if p.is_dir())
        if not folders:
            raise DataFormatError(run_dir, "no trained model under checkpoints/ (is the run finished?)")
        frames = None
        rows = []
        for folder in folders:
            method = folder.name.split(".", 1)[1]
            weights = folder / ("model.pkl" if method == "features_gbm" else "model.pt")
            if not weights.exists():
                continue
            meta = read_json(folder / "meta.json")
            names = meta["class_names"]
            if frames is None:
                frames = load_frames(data, meta["image_size"], require_labels=False)
            if method == "features_gbm":
                with open(weights, "rb") as f:
                    probs = pickle.load(f).probabilities(frames.features)
            else:
                n = len(names)
                backbone = (sky_cnn(n, meta["image_size"], tuple(meta["widths"])) if method == "cnn" else
                            MobileNetSky(n + N_SUBREGIONS, None, input_px=meta["image_size"]))
                module = load_weights(SkyConditionTask(backbone, n), weights)
                probs = predict_batches(lambda x: module.probabilities(x, tta=meta["tta"]), frames.images)
            k = len(names)
            for i, file in enumerate(frames.files):
                flags = probs[i, k:] > 0.5
                rows.append([Path(file).name, method, names[int(probs[i, :k].argmax())],
                             *[f"{p:.4f}" for p in probs[i, :k]], int(flags.sum()), "".join(str(int(f)) for f in flags)])
        if frames is None:
            raise DataFormatError(run_dir, "no finished model under checkpoints/")
        out = Path(out)
        with atomic_path(out) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["file", "method", "predicted", *[f"p_{c}" for c in names], "n_flagged",
                                 "subregion_flags"])
                writer.writerows(rows)
        return out


def _dataset(fs: FrameSet):
    return as_dataset(fs.images, fs.labels, fs.flags, dtypes=(torch.float32, torch.long, torch.float32))


# --- metrics ------------------------------------------------------------------------------------------------

def confusion_array(pred: np.ndarray, true: np.ndarray, n_classes: int) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(true, pred, labels=list(range(n_classes)))


def frame_metrics(probs: np.ndarray, frames: FrameSet, seed: int) -> dict[str, Any]:
    """accuracy, macro_f1, ece (bootstrap errors over frames), confusion {true: {predicted: n}}; with sub-region
    flags on both sides also subregion_accuracy (per sub-region cloudy/clear) and the cloud-fraction mae."""
    from sklearn.metrics import f1_score

    k = len(frames.class_names)
    labels, class_probs = frames.labels, probs[:, :k]
    pred = class_probs.argmax(1)
    out: dict[str, Any] = {"n_frames": len(frames)}
    out.update(M.with_error("accuracy", M.accuracy, labels, pred, seed=seed))
    macro_f1 = lambda t, p: f1_score(t, p, labels=list(range(k)), average="macro", zero_division=0)  # noqa: E731
    out.update(M.with_error("macro_f1", macro_f1, labels, pred, seed=seed))
    out.update(M.with_error("ece", M.expected_calibration_error, class_probs, labels, seed=seed))
    cm = confusion_array(pred, labels, k)
    out["confusion"] = {t: {p: int(cm[i, j]) for j, p in enumerate(frames.class_names)}
                        for i, t in enumerate(frames.class_names)}
    has = frames.has_flags & ~np.isnan(probs[:, k:]).any(axis=1)
    if has.any():
        true_flags, pred_flags = frames.flags[has], (probs[has, k:] > 0.5).astype(np.float32)
        out.update(M.with_error("subregion_accuracy", M.accuracy, true_flags, pred_flags, seed=seed))
        out.update(M.with_error("mae", lambda t, p: float(np.mean(np.abs(t.mean(1) - p.mean(1)))), true_flags,
                                pred_flags, seed=seed))
    return out


def per_frame(probs: np.ndarray, frames: FrameSet) -> dict[str, dict[str, Any]]:
    """{file name: true and predicted class, the predicted class's probability, flagged sub-regions both ways}."""
    k = len(frames.class_names)
    out = {}
    for i, file in enumerate(frames.files):
        j = int(probs[i, :k].argmax())
        row = {"true": frames.class_names[frames.labels[i]] if frames.labels[i] >= 0 else None,
               "predicted": frames.class_names[j], "p_predicted": round(float(probs[i, j]), 4)}
        if not np.isnan(probs[i, k:]).any():
            row["n_flagged_predicted"] = int((probs[i, k:] > 0.5).sum())
        if frames.has_flags[i]:
            row["n_flagged_true"] = int(frames.flags[i].sum())
        out[Path(file).name] = row
    return out


# --- figures ------------------------------------------------------------------------------------------------

def example_figure(frames: FrameSet, probs: np.ndarray, method: str, path: Path, per_class: int | None = 4) -> Path:
    """Frames (block-mean channel) with their true class and the model's class probabilities; ``per_class`` of
    each true class, or every frame with ``per_class=None``."""
    k = len(frames.class_names)
    if per_class is None:
        chosen = list(range(len(frames)))
    else:
        chosen = [i for c in range(k) for i in np.flatnonzero(frames.labels == c)[:per_class]]
    ncols = min(len(chosen), per_class or 5) if per_class else 5
    nrows = -(-len(chosen) // ncols)
    fig, axes = plots.plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.6 * nrows), squeeze=False)
    short = [c.replace("partly_cloudy", "partly") for c in frames.class_names]
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, chosen):
        ax.imshow(frames.images[i, 0], cmap="gray", origin="lower", vmin=0, vmax=1)
        p = " ".join(f"{s[:6]} {probs[i, j]:.2f}" for j, s in enumerate(short))
        true = frames.class_names[frames.labels[i]] if frames.labels[i] >= 0 else "?"
        ok = probs[i, :k].argmax() == frames.labels[i]
        ax.set_title(f"true: {true}\n{p}", fontsize=6, color="black" if ok else "red")
    fig.suptitle(f"{method}: class probabilities (red: misclassified)", fontsize=9)
    fig.tight_layout()
    return plots.save_figure(fig, path)


@torch.no_grad()
def occlusion_saliency(module: SkyConditionTask, images: np.ndarray, patch: int = 8, stride: int = 4) -> np.ndarray:
    """(N, S, S): how much the predicted class's probability drops when a ``patch`` x ``patch`` square is set to
    the frame's median (Zeiler & Fergus 2014), averaged over the squares covering each pixel."""
    n, _, s, _ = images.shape
    out = np.zeros((n, s, s))
    starts = range(0, s - patch + 1, stride)
    for i in range(n):
        x = torch.as_tensor(images[i : i + 1], dtype=torch.float32)
        k = module.n_classes
        base = torch.softmax(module(x)[:, :k], 1)[0]
        c = int(base.argmax())
        batch, where = [], []
        for r in starts:
            for q in starts:
                y = x.clone()
                y[..., r : r + patch, q : q + patch] = x.median()
                batch.append(y)
                where.append((r, q))
        probs = torch.cat([torch.softmax(module(b)[:, :k], 1) for b in torch.cat(batch).split(128)])[:, c]
        drop, count = np.zeros((s, s)), np.zeros((s, s))
        for (r, q), p in zip(where, probs.numpy()):
            drop[r : r + patch, q : q + patch] += float(base[c]) - p
            count[r : r + patch, q : q + patch] += 1
        out[i] = drop / np.maximum(count, 1)
    return out


def saliency_figure(module: SkyConditionTask, frames: FrameSet, method: str, path: Path) -> Path:
    sal = occlusion_saliency(module, frames.images)
    n = len(frames)
    fig, axes = plots.plt.subplots(2, n, figsize=(2.1 * n, 4.4), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(frames.images[i, 0], cmap="gray", origin="lower", vmin=0, vmax=1)
        axes[0, i].set_title(Path(frames.files[i]).name.split(".")[0], fontsize=7)
        lim = max(np.abs(sal[i]).max(), 1e-6)
        axes[1, i].imshow(sal[i], cmap="RdBu_r", origin="lower", vmin=-lim, vmax=lim)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel("occlusion: drop in p(class)", fontsize=7)
    fig.suptitle(f"{method}: where the predicted class comes from", fontsize=9)
    fig.tight_layout()
    return plots.save_figure(fig, path)
