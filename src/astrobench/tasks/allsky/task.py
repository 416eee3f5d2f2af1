"""Experiments of the allsky task: sky-condition classification of all-sky camera frames (docs/tasks/allsky.md).

``results.classify.<method>`` on the test split (simulated frames, or the user's with ``--data``): accuracy,
macro_f1, ece, confusion, and for frames with the 33 sub-region flags subregion_accuracy and the cloud-fraction mae.
``results.real.<method>``: the same models on other frames (``--set eval_data=DIR``), never used for training or
model selection, with per-frame predictions. ``results.summary``: the method with the best validation accuracy.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from astrobench.core import metrics as M
from astrobench.core import plots
from astrobench.core.io import (
    ConfigError,
    DataFormatError,
    bad_option,
    config_key,
    read_json,
    read_run_config,
    write_json_atomic,
    write_pickle_atomic,
    write_predictions,
)
from astrobench.core.summary import GOAL, NOT_CONVERGED, Headline
from astrobench.core.task import Evaluation, RunContext, Simulation, Task, simulated
from astrobench.core.training import (
    StepConfig,
    as_dataset,
    fit,
    load_module,
    predict_batches,
    predict_module,
    train_steps,
)
from astrobench.tasks.allsky.data import KNOWN_CLASSES, FrameSet, load_frames, split_indices
from astrobench.tasks.allsky.geometry import N_SUBREGIONS, parse_camera
from astrobench.tasks.allsky.models import FeatureGBM, MobileNetSky, SkyConditionTask, imagenet_weights_path, sky_cnn
from astrobench.tasks.allsky.simulate import SIMULATOR_VERSION, rule_class_index
from astrobench.tasks.allsky.simulate import simulate as simulate_frames

PREPROCESS_VERSION = "3"  # bump when data.preprocess_frame changes: the cached network inputs are rebuilt
MIN_CAMERAS_FOR_GROUPED_SPLIT = 10  # with this many cameras, whole cameras go to train, validation or test
METHODS = ("cnn", "mobilenet_ft", "features_gbm")
NETWORKS = ("cnn", "mobilenet_ft")
TARGET = GOAL  # a goal this benchmark sets itself
MOMMERT = "Mommert 2020 (AJ 159, 178), Lowell all-sky camera, per sub-region cloudy/clear"


def simulated_frames(ctx: RunContext, n: int, seed: int, camera: str | dict | None = None) -> FrameSet:
    """``n`` simulated frames, written in the manifest form and read back through the loader (both cached under the
    ``allsky`` task). ``camera``: the simulator's camera (``random``: domain randomisation, a new camera every
    ``frames_per_camera`` frames; ``fixed``; or a dict of camera fields), by default the option ``sim_camera``. Reads
    the options ``frame_format``, ``frames_per_camera``, ``n_jobs`` and ``image_size``."""
    opts = ctx.options
    camera = opts.get("sim_camera", "random") if camera is None else camera
    fmt = opts.get("frame_format") or None
    per_camera = opts.get("frames_per_camera", 100)
    sim_key = {"n": n, "seed": seed, "camera": camera, "format": fmt, "frames_per_camera": per_camera}

    def build_frames(folder: Path) -> Path:
        ctx.log(f"simulating {n} frames (cached for later runs)")
        return simulate_frames(folder, n=n, seed=seed, format=fmt, n_jobs=opts["n_jobs"], camera=camera,
                               frames_per_camera=per_camera, progress=ctx.progress)

    manifest = simulated(Simulation(sim_key, "manifest.csv", build_frames, owner="allsky", version=SIMULATOR_VERSION))

    def build_arrays(folder: Path) -> Path:
        ctx.log(f"preprocessing {n} frames (cached for later runs)")
        frames = load_frames(manifest, opts["image_size"], progress=ctx.progress, n_jobs=opts["n_jobs"])
        frames.save(folder / "frames.npz")
        return folder / "frames.npz"

    arrays = simulated(Simulation({**sim_key, "image_size": opts["image_size"], "preprocess": PREPROCESS_VERSION},
                                  "frames.npz", build_arrays, owner="allsky", version=SIMULATOR_VERSION))
    label = camera if isinstance(camera, str) else "camera_" + config_key(camera)[:8]
    ctx.data_info.setdefault("simulated", {})[f"n{n}_seed{seed}_{label}"] = str(manifest)
    return FrameSet.load(arrays)


class AllskyData(NamedTuple):
    """What an allsky run works on: the train / validation / test frames, the real frames to evaluate on
    (``eval_data``) and to adapt on (``adapt_data``), simulated frames to pre-train on, whether adaptation is
    leave-one-frame-out (the same folder for both), and the methods to run (and those skipped, with the reason)."""

    train: FrameSet
    val: FrameSet
    test: FrameSet
    eval_frames: FrameSet | None
    adapt_frames: FrameSet | None
    pretrain: FrameSet | None
    lofo: bool
    methods: list[str]
    skipped: dict[str, Any]


class AllskyTask(Task):
    name = "allsky"
    summary = "sky-condition classification of all-sky camera frames: clear / partly cloudy / overcast + 33 sub-regions"
    n_unit = "frames"
    bytes_per_object = 2e5  # a preprocessed frame and its features
    count_options = ("n_frames",)
    min_objects = 24
    anchors = {
        "classify.*.accuracy": {"value": ">= 0.95 (simulated test split, best method)", "source": TARGET},
        "classify.*.subregion_accuracy": {"value": ">= 0.95 (simulated test split); Mommert 2020: 0.95 boosting, "
                                                   "0.85 ResNet on real frames", "source": MOMMERT},
        "real.*.accuracy": {"value": ">= 0.8 (best method by simulated validation; 10 Lowell frames)",
                            "source": TARGET},
        "real.*.subregion_accuracy": {"value": ">= 0.90 (simulator-trained); Mommert 2020: 0.95 trained on ~2,000 "
                                               "real frames", "source": MOMMERT},
        "real_lofo.*.accuracy": {"value": ">= 0.9 (adapted, leave-one-frame-out)", "source": TARGET},
        "real_lofo.*.subregion_accuracy": {"value": ">= 0.93 (adapted); Mommert 2020: 0.95 with ~2,000 real frames",
                                           "source": MOMMERT},
    }
    question = ("Can a network trained on simulated all-sky camera frames tell clear, partly cloudy and overcast "
                "skies, and cloud in each of 33 sub-regions, on real frames of the Lowell all-sky camera?")
    headlines = (
        Headline("classify", "accuracy", "accuracy, simulated test frames", better="higher",
                 controls=("boundary",)),
        Headline("classify", "subregion_accuracy", "sub-region accuracy, simulated", better="higher",
                 controls=("boundary",)),
        Headline("real", "accuracy", "accuracy, real frames", better="higher"),
        Headline("real", "subregion_accuracy", "sub-region accuracy, real frames", better="higher"),
        Headline("real_lofo", "accuracy", "accuracy, real frames, adapted (leave one frame out)", better="higher"),
    )
    quick_caveats = {"classify.cnn": NOT_CONVERGED, "classify.cnn_flag_rule": NOT_CONVERGED}
    figure_captions = {
        "classify_confusion": ("Confusion matrices", "True sky class (rows) against the prediction (columns)."),
        "classify_examples": ("Example frames", "Frames with their true and predicted classes."),
        "classify_saliency": ("Where the network looks", "Gradient saliency over example frames."),
        "reliability": ("Reliability", "Confidence against accuracy: on the diagonal when calibrated."),
        "real_*": ("Real frames", "Predictions on the real Lowell frames."),
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(n_frames=90, max_epochs=1, mobilenet_max_epochs=1, mobilenet_max_train=32, gbm_max_iter=20,
                          n_pretrain=60, n_saliency=1, frames_per_camera=30, adapt_steps=3),
            "quick": dict(n_frames=500, max_epochs=10, mobilenet_max_epochs=3, mobilenet_max_train=350,
                          gbm_max_iter=200, n_pretrain=500, n_saliency=4, frames_per_camera=50, adapt_steps=40),
            "full": dict(n_frames=5000, max_epochs=20, mobilenet_max_epochs=6, mobilenet_max_train=3500,
                         gbm_max_iter=400, n_pretrain=4000, n_saliency=10, frames_per_camera=50, adapt_steps=120),
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
            "camera": "auto",
            "eval_camera": "auto",
            "sim_camera": "random",
            "frame_format": "",
            "adapt_data": "",
            "adapt_lr": 3e-4,
            "adapt_batch_size": 16,
            "n_jobs": 2,
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        for key in ("n_frames", "max_epochs", "mobilenet_max_epochs", "mobilenet_max_train", "gbm_max_iter",
                    "n_pretrain", "batch_size", "n_jobs", "frames_per_camera", "adapt_steps", "adapt_batch_size"):
            if not isinstance(options[key], int) or options[key] < 1:
                raise bad_option(options, key, "a positive integer")
        if options["n_saliency"] < 0:
            raise bad_option(options, "n_saliency", ">= 0")
        unknown = [m for m in options["methods"] if m not in METHODS]
        if unknown or not options["methods"]:
            raise bad_option(options, "methods", f"a non-empty list from {list(METHODS)}")
        if options["image_size"] not in (32, 64, 96, 128):
            raise bad_option(options, "image_size", "one of 32, 64, 96, 128")
        split = options["data_split"]
        if len(split) != 3 or min(split) <= 0 or abs(sum(split) - 1) > 1e-6:
            raise bad_option(options, "data_split", "three positive fractions summing to 1")
        for key in ("lr", "mobilenet_lr"):
            if not options[key] > 0:
                raise bad_option(options, key, "positive")
        if options["flag_weight"] < 0:
            raise bad_option(options, "flag_weight", ">= 0")
        if options["pretrain"] not in ("none", "simulated"):
            raise bad_option(options, "pretrain", "none or simulated")
        if options["frame_format"] not in ("", "fits", "png", "png8", "png16", "jpeg"):
            raise bad_option(options, "frame_format", "empty (each camera's own), fits, jpeg, png8 or png16")
        from astrobench.tasks.allsky.geometry import parse_camera

        for key in ("camera", "eval_camera"):
            parse_camera(options[key])  # a ConfigError names what is wrong
        if isinstance(options["sim_camera"], str) and options["sim_camera"].strip().startswith("{"):
            from astrobench.tasks.allsky.geometry import dict_from_text

            options["sim_camera"] = dict_from_text(options["sim_camera"].strip(), "sim_camera")
        if not (options["sim_camera"] in ("random", "fixed") or isinstance(options["sim_camera"], dict)):
            raise bad_option(options, "sim_camera", "random, fixed or a dict of camera fields")
        if not options["adapt_lr"] > 0:
            raise bad_option(options, "adapt_lr", "positive")
        if not options["widths"] or not all(isinstance(w, int) and w >= 1 for w in options["widths"]):
            raise bad_option(options, "widths", "a list of positive integers")
        return options

    # --- data ---------------------------------------------------------------------------------------------

    def simulate(self, out, n, seed=0, format=None, n_jobs=2, camera="random", frames_per_camera=100) -> Path:
        return simulate_frames(out, n=n, seed=seed, format=format, n_jobs=n_jobs, camera=camera,
                               frames_per_camera=frames_per_camera)

    def _frames(self, ctx: RunContext) -> FrameSet:
        """The frames the models are trained and tested on: simulated, or the user's ``--data``."""
        opts = ctx.options
        if ctx.config["data"] is None:
            return simulated_frames(ctx, opts["n_frames"], ctx.seed)
        ctx.data_info.update(path=str(ctx.config["data"]))
        frames = load_frames(ctx.config["data"], opts["image_size"], progress=ctx.progress, n_jobs=opts["n_jobs"],
                             camera=opts["camera"])
        ctx.data_info["camera"] = frames.cameras
        return frames

    def _splits(self, ctx: RunContext, frames: FrameSet) -> tuple[FrameSet, FrameSet, FrameSet]:
        opts = ctx.options
        counts = np.bincount(frames.labels, minlength=len(frames.class_names))
        if (counts > 0).sum() < 2:
            raise DataFormatError(frames.source, "a classifier needs frames of at least two classes")
        cameras = sorted(set(frames.camera_ids))
        grouped = len(cameras) >= MIN_CAMERAS_FOR_GROUPED_SPLIT
        parts = [frames.subset(i) for i in split_indices(frames.labels, tuple(opts["data_split"]), ctx.seed,
                                                          frames.camera_ids if grouped else None)]
        ctx.data_info["split"] = ("by camera: no camera on two sides" if grouped else
                                  "by frame, stratified by class (fewer than "
                                  f"{MIN_CAMERAS_FOR_GROUPED_SPLIT} cameras)")
        ctx.data_info["n_cameras"] = len(cameras)
        if min(len(p) for p in parts) == 0:
            raise DataFormatError(frames.source, f"{len(frames)} frames are too few for a train/validation/test split")
        ctx.data_info.update(n_train=len(parts[0]), n_val=len(parts[1]), n_test=len(parts[2]),
                             classes=frames.class_names, class_counts=counts.tolist(),
                             frames_with_flags=int(frames.has_flags.sum()))
        return parts[0], parts[1], parts[2]

    # --- steps ------------------------------------------------------------------------------------------------

    def load(self, ctx: RunContext) -> AllskyData:
        """The training frames (simulated, or ``--data``) split by camera or by frame, the real frames to evaluate
        on (``eval_data``) and adapt on (``adapt_data``), and simulated frames to pre-train on (``pretrain``). A
        user's frames are read (and checked) first: a bad folder stops the run before minutes of simulation."""
        opts = ctx.options
        methods, skipped = self._methods(ctx)
        ctx.data_info["source"] = "simulated" if ctx.config["data"] is None else "file"
        with ctx.timer("simulate" if ctx.config["data"] is None else "load"):
            early = list(KNOWN_CLASSES) if ctx.config["data"] is None else None
            if early:
                eval_frames, adapt_frames = self._real_and_adapt_frames(ctx, early)
            train, val, test = self._splits(ctx, self._frames(ctx))
            if not early:
                eval_frames, adapt_frames = self._real_and_adapt_frames(ctx, train.class_names)
            pretrain = None
            if opts["pretrain"] == "simulated" and ctx.config["data"] is not None:
                pretrain = simulated_frames(ctx, opts["n_pretrain"], ctx.seed + 1000)
                if pretrain.class_names != train.class_names:
                    ctx.log("pretrain: the simulated classes differ from the data's; the class layer starts afresh")
        lofo = False
        if adapt_frames is not None and eval_frames is not None:
            adapt_files = {str(Path(f).resolve()) for f in adapt_frames.files}
            eval_files = {str(Path(f).resolve()) for f in eval_frames.files}
            lofo = adapt_files == eval_files
            if not lofo and adapt_files & eval_files:
                raise DataFormatError(opts["adapt_data"], f"{len(adapt_files & eval_files)} frame(s) are in both "
                                      "adapt_data and eval_data; use the same folder for leave-one-frame-out, or "
                                      "folders without common frames")
        return AllskyData(train, val, test, eval_frames, adapt_frames, pretrain, lofo, methods, skipped)

    def _methods(self, ctx: RunContext) -> tuple[list[str], dict[str, Any]]:
        """The methods to run, and those skipped with the reason: without the ImageNet weights file the default
        method list (`astrobench demo`, a first run) goes on without mobilenet_ft and says why; a list that names
        it, or a weights path that is not there, stops the run before any work."""
        opts = ctx.options
        methods = list(opts["methods"])
        skipped: dict[str, Any] = {}
        if "mobilenet_ft" in methods:
            try:
                ctx.data_info["imagenet_weights"] = str(imagenet_weights_path(opts["imagenet_weights"] or None))
            except ConfigError as err:
                if opts["imagenet_weights"] or methods != list(METHODS):
                    raise  # asked for by name: the user must hear it
                methods.remove("mobilenet_ft")
                skipped["mobilenet_ft"] = {"skipped": str(err)}
                ctx.log(f"[yellow]mobilenet_ft skipped:[/] {err}")
        return methods, skipped

    def fit(self, ctx: RunContext, data: AllskyData) -> dict[str, Any]:
        """{"classify": {method: (model, FrameSet -> (N, K + 33) probabilities)}, "histories": {name: loss
        history}, "adapted": (results key, {method: probabilities of the real frames}, protocol) when
        ``adapt_data`` is given}: the networks fine-tuned on real frames are kept as their predictions (one copy per
        left-out frame)."""
        histories: dict[str, dict] = {}
        classify = {method: self._train(ctx, method, data.train, data.val, data.pretrain, histories)
                    for method in data.methods}
        out: dict[str, Any] = {"classify": classify, "histories": histories}
        if data.adapt_frames is not None:
            out["adapted"] = self._adapt(ctx, classify, data.adapt_frames, data.eval_frames, data.lofo)
        return out

    def evaluate(self, ctx: RunContext, data: AllskyData, models: dict[str, Any]) -> Evaluation:
        """Every method on the simulated (or ``--data``) test split, the model chosen by validation accuracy, and
        the same models on the real frames, before and after adaptation; ``summary.answer`` says it in words."""
        opts = ctx.options
        train, val, test, eval_frames = data.train, data.val, data.test, data.eval_frames
        rule = flag_rule_applies(train)
        results: dict[str, Any] = {"classify": dict(data.skipped)}
        val_accuracy, test_probs, real_probs = {}, {}, {}
        for method, (_, probs_fn) in models["classify"].items():
            val_probs = probs_fn(val)
            probs = probs_fn(test)
            for name, (_, pred) in decisions(method, val_probs, len(val.class_names), rule).items():
                val_accuracy[name] = M.accuracy(val.labels, pred)
            for name, (p, pred) in decisions(method, probs, len(test.class_names), rule).items():
                test_probs[name] = (p, pred)
                results["classify"][name] = frame_metrics(p, test, ctx.seed, pred)
            if eval_frames is not None:
                real_probs[method] = probs_fn(eval_frames)
        if rule:
            results["classify"]["boundary"] = boundary_floor(test, test_probs)
        best = max(val_accuracy, key=val_accuracy.get)
        results["summary"] = {"best": {"method": best, "validation_accuracy": val_accuracy[best],
                                       **headline(results["classify"][best])},
                              "validation_accuracy": {m: round(v, 4) for m, v in val_accuracy.items()},
                              "decision_rule": decision_note(val_accuracy, rule)}
        if eval_frames is not None:
            results["real"] = self._evaluate(real_probs, eval_frames, ctx.seed, rule)
            if parse_camera(opts["eval_camera"]) != "auto":  # how the default geometry would have done
                auto = load_frames(opts["eval_data"], opts["image_size"], class_names=train.class_names, n_jobs=1)
                ctx.data_info["eval_data"]["camera_auto"] = auto.cameras
                results["real_auto_camera"] = self._evaluate({m: fn(auto) for m, (_, fn) in models["classify"].items()},
                                                             auto, ctx.seed, rule)
            results["summary"]["real_best_by_validation"] = {"method": best, **headline(results["real"][best])}
        if "adapted" in models:
            key, probs_by_method, protocol = models["adapted"]
            target = data.adapt_frames if data.lofo else eval_frames
            adapted = self._evaluate(probs_by_method, target, ctx.seed, rule) if target is not None else {}
            results[key] = {**adapted, "protocol": protocol}
            tuned = [m for m in results[key] if m != "protocol"]
            if tuned:  # chosen on simulated validation accuracy, never on the real frames
                top = max(tuned, key=lambda m: val_accuracy.get(m, -1))
                results["summary"][f"{key}_best_by_validation"] = {"method": top, **headline(results[key][top])}
        results["summary"]["answer"] = answer(results, best)
        return Evaluation(results, {"test_probs": test_probs, "real_probs": real_probs, "best": best, "rule": rule})

    def figures(self, ctx: RunContext, data: AllskyData, models: dict[str, Any], evaluation: Evaluation) -> None:
        for name, history in models["histories"].items():
            plots.loss_curves(history, name, ctx.figures / f"loss_{name.replace(' ', '_')}.png")
        self._figures(ctx, data, models["classify"], evaluation)

    def _real_and_adapt_frames(self, ctx: RunContext, class_names: list[str]):
        eval_frames = self._real_frames(ctx, "eval_data", class_names)
        adapt_frames = self._real_frames(ctx, "adapt_data", class_names)
        if adapt_frames is not None and len(adapt_frames) < 2:
            raise DataFormatError(ctx.options["adapt_data"], "adapt_data needs at least 2 labelled frames to adapt on, "
                                                             f"found {len(adapt_frames)}")
        return eval_frames, adapt_frames

    def _real_frames(self, ctx: RunContext, key: str, class_names: list[str]) -> FrameSet | None:
        opts = ctx.options
        if not opts[key]:
            return None
        frames = load_frames(opts[key], opts["image_size"], class_names=class_names, progress=ctx.progress,
                             n_jobs=1, camera=opts["eval_camera"])
        ctx.data_info[key] = {"path": str(opts[key]), "n": len(frames), "camera": frames.cameras}
        return frames

    @staticmethod
    def _evaluate(probs_by_method: dict[str, np.ndarray], frames: FrameSet, seed: int, rule: bool) -> dict:
        out = {}
        for method, probs in probs_by_method.items():
            for name, (p, pred) in decisions(method, probs, len(frames.class_names), rule).items():
                out[name] = {**frame_metrics(p, frames, seed, pred), "predictions_by_frame": per_frame(p, frames, pred)}
        return out

    def _adapt(self, ctx: RunContext, models, adapt: FrameSet, eval_frames: FrameSet | None, lofo: bool):
        """Fine-tune every simulator-trained network on the labelled real frames of ``adapt_data`` with the transfer
        task's step loop. When they are also the evaluation frames: leave-one-frame-out, each frame predicted by a
        copy fine-tuned on the others only (``real_lofo``); else fine-tuned on all of them and applied to
        ``eval_data`` (``real_adapted``). Returns (that key, {method: probabilities}, the protocol)."""
        opts = ctx.options
        networks = [m for m in models if m in NETWORKS]
        k = len(adapt.class_names)
        folds = [np.setdiff1d(np.arange(len(adapt)), [i]) for i in range(len(adapt))] if lofo else None
        probs_by_method = {}
        for method in networks:
            module = models[method][0]
            if lofo:
                from rich.progress import track

                probs = np.zeros((len(adapt), k + N_SUBREGIONS))
                for i, train_idx in track(list(enumerate(folds)), description=f"allsky: adapting {method}, one "
                                          "frame held out at a time", disable=not ctx.progress, transient=True):
                    assert i not in train_idx  # the frame predicted is never among those adapted on
                    tuned = adapt_network(module, adapt.subset(train_idx), opts, ctx.seed + i)
                    probs[i] = self._network_probs(tuned, adapt.subset([i]), opts)[0]
                ctx.log(f"adapt: {method} leave-one-frame-out over {len(adapt)} real frames")
            else:
                tuned = adapt_network(module, adapt, opts, ctx.seed)
                probs = self._network_probs(tuned, eval_frames, opts) if eval_frames is not None else None
            if probs is not None:
                probs_by_method[method] = probs
        protocol = {"adapt_data": str(opts["adapt_data"]), "n_adapt": len(adapt), "steps": opts["adapt_steps"],
                    "lr": opts["adapt_lr"], "leave_one_frame_out": lofo, "methods": networks}
        if lofo:
            protocol["train_indices_by_frame"] = {Path(adapt.files[i]).name: idx.tolist()
                                                  for i, idx in enumerate(folds)}
        return ("real_lofo" if lofo else "real_adapted"), probs_by_method, protocol

    @staticmethod
    def _network_probs(module: SkyConditionTask, frames: FrameSet, opts) -> np.ndarray:
        tta = opts["tta"] and opts["augment_d4"]
        return predict_batches(lambda x: module.probabilities(x, tta=tta), frames.images, batch_size=256)

    def _train(self, ctx: RunContext, method: str, train: FrameSet, val: FrameSet, pretrain: FrameSet | None,
               histories: dict[str, dict]):
        """Fit one method (its loss histories into ``histories``); returns (model, FrameSet -> (N, K + 33)
        probabilities)."""
        opts = ctx.options
        n_classes = len(train.class_names)
        if method == "features_gbm":
            path = ctx.checkpoint_dir("classify", method) / "model.pkl"
            if ctx.resume and path.exists():
                with open(path, "rb") as f:
                    gbm = pickle.load(f)
            else:
                ctx.log(f"classify: fitting features_gbm on {len(train)} frames")
                gbm = FeatureGBM(opts["gbm_max_iter"], seed=ctx.seed).fit(train.features, train.labels, train.flags,
                                                                          n_classes)
                write_pickle_atomic(path, gbm)
                write_json_atomic(path.parent / "meta.json", {"method": method, "class_names": train.class_names,
                                                              "image_size": opts["image_size"]})
            return gbm, lambda fs: gbm.probabilities(fs.features)

        module = self._network(ctx, method, n_classes)
        if pretrain is not None:
            source = self._network(ctx, method, len(pretrain.class_names))
            p_train, p_val, _ = [pretrain.subset(i) for i in split_indices(pretrain.labels, (0.85, 0.15, 0.0),
                                                                            ctx.seed)]
            histories[f"pretrain {method}"] = self._fit(ctx, "pretrain", method, source, p_train, p_val)
            target = module.state_dict()
            copied = {k: v for k, v in source.state_dict().items() if k in target and v.shape == target[k].shape}
            module.load_state_dict({**target, **copied})
            ctx.log(f"pretrain: {len(copied)} of {len(target)} tensors of {method} start from the simulated fit")
        histories[f"classify {method}"] = self._fit(ctx, "classify", method, module, train, val)
        return module, lambda fs: self._network_probs(module, fs, opts)

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
             val: FrameSet) -> dict[str, list]:
        """Train one network (checkpoints and meta.json for ``predict``); returns its loss history."""
        opts = ctx.options
        if method == "mobilenet_ft":  # about 2.5x slower per image than the small CNN on a CPU
            train = train.subset(slice(0, opts["mobilenet_max_train"]))
            cfg = ctx.train_config(max_epochs=opts["mobilenet_max_epochs"])
        else:
            cfg = ctx.train_config()
        ckpt = ctx.checkpoint_dir(experiment, method)
        ctx.log(f"{experiment}: training {method} on {len(train)} frames")
        res = fit(module, _dataset(train), _dataset(val), ckpt, cfg, resume=ctx.resume)
        write_json_atomic(ckpt / "meta.json", {"method": method, "n_classes": len(train.class_names),
                                               "class_names": train.class_names, "image_size": opts["image_size"],
                                               "widths": opts["widths"], "tta": opts["tta"] and opts["augment_d4"]})
        return res.history

    # --- figures ---------------------------------------------------------------------------------------------

    def _figures(self, ctx, data: AllskyData, models, evaluation: Evaluation) -> None:
        test, eval_frames, results = data.test, data.eval_frames, evaluation.results
        test_probs, real_probs, best, rule = (evaluation.outputs[k] for k in ("test_probs", "real_probs", "best",
                                                                               "rule"))
        k = len(test.class_names)
        plots.confusion_matrices({m: confusion_array(pred, test.labels, k) for m, (p, pred) in test_probs.items()},
                                 test.class_names, ctx.figures / "classify_confusion.png")
        example_figure(test, test_probs[best][0], best, ctx.figures / "classify_examples.png", pred=test_probs[best][1])
        curves = {"simulated test split": {m: r["reliability"] for m, r in results["classify"].items()
                                           if isinstance(r, dict) and "reliability" in r}}
        for key, title in (("real", "real frames, simulator-trained"), ("real_lofo", "real frames, adapted (LOFO)"),
                           ("real_adapted", "real frames, adapted")):
            if key in results:
                curves[title] = {m: r["reliability"] for m, r in results[key].items() if "reliability" in r}
        reliability_figure(curves, ctx.figures / "reliability.png")
        base = best.removesuffix("_flag_rule")
        if eval_frames is not None:
            decided = {m: d for method, probs in real_probs.items()
                       for m, d in decisions(method, probs, k, rule).items()}
            plots.confusion_matrices({m: confusion_array(pred, eval_frames.labels, k)
                                      for m, (p, pred) in decided.items()},
                                     test.class_names, ctx.figures / "real_confusion.png")
            example_figure(eval_frames, decided[best][0], best, ctx.figures / "real_examples.png", per_class=None,
                           pred=decided[best][1])
            camera_grid_figure(eval_frames, ctx.figures / "camera_grid.png")
        elif ctx.config["data"] is not None:
            camera_grid_figure(test, ctx.figures / "camera_grid.png")
        networks = [m for m in models if m in NETWORKS]
        if networks and ctx.options["n_saliency"]:
            net = base if base in networks else networks[0]
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
            if frames is None:  # the camera geometry the run used for real frames (auto: from these frames)
                opts = read_run_config(run_dir)["options"]
                camera = opts.get("eval_camera", "auto") if opts.get("eval_data") else opts.get("camera", "auto")
                frames = load_frames(data, meta["image_size"], require_labels=False, camera=camera)
            if method == "features_gbm":
                with open(weights, "rb") as f:
                    probs = pickle.load(f).probabilities(frames.features)
            else:
                n = len(names)
                backbone = (sky_cnn(n, meta["image_size"], tuple(meta["widths"])) if method == "cnn" else
                            MobileNetSky(n + N_SUBREGIONS, None, input_px=meta["image_size"]))
                module = load_module(SkyConditionTask, folder, backbone=backbone)
                probs = predict_module(module, frames.images, lambda m, x: m.probabilities(x, tta=meta["tta"]),  # noqa: B023
                                       batch_size=256)
            k = len(names)
            for i, file in enumerate(frames.files):
                flags = probs[i, k:] > 0.5
                rows.append([Path(file).name, method, names[int(probs[i, :k].argmax())],
                             *probs[i, :k], int(flags.sum()),
                             "".join(str(int(f)) for f in flags)])
        if frames is None:
            raise DataFormatError(run_dir, "no finished model under checkpoints/")
        header = ["file", "method", "predicted", *[f"p_{c}" for c in names], "n_flagged", "subregion_flags"]
        return write_predictions({h: [row[j] for row in rows] for j, h in enumerate(header)}, out, ".4f")


def _dataset(fs: FrameSet):
    return as_dataset(fs.images, fs.labels, fs.flags, dtypes=(torch.float32, torch.long, torch.float32))


# --- adaptation to a real camera ------------------------------------------------------------------------------

def adapt_network(module: SkyConditionTask, frames: FrameSet, opts: dict[str, Any], seed: int) -> SkyConditionTask:
    """A copy of a simulator-trained network fine-tuned on a few labelled real frames: the project's fixed-budget loop
    (``core.training.train_steps``) with this task's loss (class cross-entropy + flag binary cross-entropy), random
    D4 views with the flags permuted, and batch-norm statistics kept from the simulated training."""
    import copy

    tuned = copy.deepcopy(module)
    targets = np.concatenate([frames.labels[:, None].astype(np.float32), frames.flags], axis=1)
    cfg = StepConfig(steps=opts["adapt_steps"], batch_size=opts["adapt_batch_size"], lr=opts["adapt_lr"],
                     freeze_norm=True)

    def loss(out, y):
        return tuned.output_loss(out, y[:, 0].long(), y[:, 1:])

    def augment_pair(x, y):
        x, flags = tuned.random_view(x, y[:, 1:]) if tuned.d4 else (x, y[:, 1:])
        return x, torch.cat([y[:, :1], flags], 1)

    with torch.enable_grad():
        train_steps(tuned, frames.images, targets, "classification", cfg, seed, loss=loss, augment=augment_pair)
    return tuned.eval()


# --- decisions: the class head, or the labelling rule applied to the predicted flags ---------------------------

def flag_rule_applies(frames: FrameSet) -> bool:
    """The rule (0 flagged -> clear, 33 -> overcast, else partly cloudy) needs those three classes and flags."""
    return list(frames.class_names) == list(KNOWN_CLASSES) and bool(frames.has_flags.any())


def flag_rule(flag_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities (N, 3), decisions (N,)) from (N, 33) flag probabilities. The decision is the labelling
    rule on the flags thresholded at 0.5. Each class's score is the upper (Frechet) bound of its probability whatever
    the dependence between the flags: clear min_k (1 - p_k), overcast min_k p_k, partly cloudy
    min(max_k p_k, max_k (1 - p_k)); normalised to sum to 1, their argmax is always the rule's decision."""
    decision = rule_class_index(flag_probs > 0.5)
    p = np.clip(flag_probs, 0.0, 1.0)
    scores = np.stack([(1 - p).min(1), np.minimum(p.max(1), (1 - p).max(1)), p.min(1)], axis=1)
    probs = scores / np.maximum(scores.sum(1, keepdims=True), 1e-12)
    return probs, decision


def decisions(method: str, probs: np.ndarray, k: int, rule: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{method: (probs, class head decision), method_flag_rule: (probs with the rule's class probabilities, rule
    decision)}; the flag columns are the same for both."""
    out = {method: (probs, probs[:, :k].argmax(1))}
    if rule and not np.isnan(probs[:, k:]).any():
        class_probs, decision = flag_rule(probs[:, k:])
        out[f"{method}_flag_rule"] = (np.concatenate([class_probs, probs[:, k:]], axis=1), decision)
    return out


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers a summary repeats: accuracy and sub-region accuracy with their errors."""
    return {k: metrics.get(k) for k in ("accuracy", "accuracy_err", "subregion_accuracy", "subregion_accuracy_err")}


def answer(results: dict[str, Any], best: str) -> str:
    """The run's answer in words, from its numbers: how the model chosen on simulated validation does on the
    simulated test split, on the real frames, and after adaptation."""
    def fmt(r: dict, key: str) -> str:
        value, err = r.get(key), r.get(f"{key}_err")
        return "n/a" if value is None else f"{value:.3f}" + (f" ± {err:.3f}" if err is not None else "")

    sim = results["classify"][best]
    text = (f"Chosen on simulated validation frames, {best} reaches accuracy {fmt(sim, 'accuracy')} and sub-region "
            f"accuracy {fmt(sim, 'subregion_accuracy')} on the simulated test split")
    if "real" in results:
        real = results["real"][best]
        text += (f"; trained on simulated frames only, it classifies the {real['n_frames']} real frames with accuracy "
                 f"{fmt(real, 'accuracy')} and sub-region accuracy {fmt(real, 'subregion_accuracy')}")
    for key, how in (("real_lofo", "adapted on the other real frames (leave-one-frame-out)"),
                     ("real_adapted", "adapted on the adapt_data frames")):
        chosen = results["summary"].get(f"{key}_best_by_validation")
        if chosen:
            text += (f"; {how}, {chosen['method']} (best adapted decision by simulated validation) reaches accuracy "
                     f"{fmt(chosen, 'accuracy')} and sub-region accuracy {fmt(chosen, 'subregion_accuracy')}")
    return text + "."


def decision_note(val_accuracy: dict[str, float], rule: bool) -> str:
    if not rule:
        return "the class head (the flag rule needs the classes clear/partly_cloudy/overcast and sub-region flags)"
    head = {m: v for m, v in val_accuracy.items() if not m.endswith("_flag_rule")}
    by_rule = {m: v for m, v in val_accuracy.items() if m.endswith("_flag_rule")}
    best_head, best_rule = max(head, key=head.get), max(by_rule, key=by_rule.get)
    winner = "the flag rule" if by_rule[best_rule] > head[best_head] else "the class head"
    return (f"{winner} (chosen on validation accuracy: best class head {best_head} {head[best_head]:.3f}, best flag "
            f"rule {best_rule} {by_rule[best_rule]:.3f})")


def boundary_floor(test: FrameSet, test_probs: dict[str, tuple[np.ndarray, np.ndarray]], margin: float = 0.05) -> dict:
    """How much of the simulated test error is the label rule's boundary: the accuracy on the frames whose every
    sub-region's cloudy-pixel fraction sits at least ``margin`` from the rule's 10 % threshold (the simulator's
    ``flag_margin`` column). Frames without it (a user's files) use a proxy: frames not decided by a single
    sub-region (1-2 or 31-32 of 33 flagged)."""
    known = test.flag_margin is not None and np.isfinite(test.flag_margin).all()
    if known:
        away = test.flag_margin >= margin
    else:
        n = test.flags.sum(axis=1)
        away = ~(((n >= 1) & (n <= 2)) | ((n >= 31) & (n <= 32)))
    out = {"definition": f"every sub-region's cloudy-pixel fraction at least {margin} from the 10 % threshold"
           if known else "not 1-2 or 31-32 of 33 sub-regions flagged", "n_frames_away_from_boundary": int(away.sum()),
           "n_frames": len(test)}
    for name, (p, pred) in test_probs.items():
        out[f"{name}_accuracy_away_from_boundary"] = M.accuracy(test.labels[away], pred[away]) if away.any() else None
        if away.any():
            flags = p[away, len(test.class_names):]
            if not np.isnan(flags).any():
                out[f"{name}_subregion_accuracy_away_from_boundary"] = M.accuracy(test.flags[away], flags > 0.5)
    return out


# --- metrics ------------------------------------------------------------------------------------------------

def confusion_array(pred: np.ndarray, true: np.ndarray, n_classes: int) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(true, pred, labels=list(range(n_classes)))


def frame_metrics(probs: np.ndarray, frames: FrameSet, seed: int, pred: np.ndarray | None = None) -> dict[str, Any]:
    """accuracy, macro_f1, ece (bootstrap errors over frames), confusion {true: {predicted: n}}, reliability (the
    calibration curve); with sub-region flags on both sides also subregion_accuracy (per sub-region cloudy/clear) and
    the cloud-fraction mae. ``pred``: the decisions (default: the most probable class)."""
    from sklearn.metrics import f1_score

    k = len(frames.class_names)
    labels, class_probs = frames.labels, probs[:, :k]
    pred = class_probs.argmax(1) if pred is None else np.asarray(pred)
    out: dict[str, Any] = {"n_frames": len(frames)}
    out.update(M.with_error("accuracy", M.accuracy, labels, pred, seed=seed))
    macro_f1 = lambda t, p: f1_score(t, p, labels=list(range(k)), average="macro", zero_division=0)  # noqa: E731
    out.update(M.with_error("macro_f1", macro_f1, labels, pred, seed=seed))
    out.update(M.with_error("ece", M.expected_calibration_error, class_probs, labels, seed=seed))
    out["reliability"] = reliability_curve(class_probs[np.arange(len(pred)), pred], pred == labels)
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


def reliability_curve(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 5) -> dict[str, list]:
    """Equal-width confidence bins: mean confidence, accuracy and count per non-empty bin."""
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    out = {"confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        sel = which == b
        if sel.any():
            out["confidence"].append(round(float(confidence[sel].mean()), 4))
            out["accuracy"].append(round(float(np.mean(correct[sel])), 4))
            out["count"].append(int(sel.sum()))
    return out


def per_frame(probs: np.ndarray, frames: FrameSet, pred: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """{file name: true and predicted class, the predicted class's probability, flagged sub-regions both ways}."""
    k = len(frames.class_names)
    out = {}
    for i, file in enumerate(frames.files):
        j = int(probs[i, :k].argmax()) if pred is None else int(pred[i])
        row = {"true": frames.class_names[frames.labels[i]] if frames.labels[i] >= 0 else None,
               "predicted": frames.class_names[j], "p_predicted": round(float(probs[i, j]), 4)}
        if not np.isnan(probs[i, k:]).any():
            row["n_flagged_predicted"] = int((probs[i, k:] > 0.5).sum())
        if frames.has_flags[i]:
            row["n_flagged_true"] = int(frames.flags[i].sum())
        out[Path(file).name] = row
    return out


# --- figures ------------------------------------------------------------------------------------------------

def example_figure(frames: FrameSet, probs: np.ndarray, method: str, path: Path, per_class: int | None = 4,
                   pred: np.ndarray | None = None) -> Path:
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
        ok = (probs[i, :k].argmax() if pred is None else pred[i]) == frames.labels[i]
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


def reliability_figure(curves: dict[str, dict[str, dict]], path: Path) -> Path:
    """Reliability diagrams: accuracy against confidence of the predicted class, one panel per evaluation set."""
    fig, axes = plots.plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 4), squeeze=False)
    for ax, (title, by_method) in zip(axes[0], curves.items()):
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        for method, c in by_method.items():
            if c["confidence"]:
                ax.plot(c["confidence"], c["accuracy"], "o-", ms=3, lw=1, label=method)
        if not any(c["confidence"] for c in by_method.values()):
            ax.text(0.5, 0.5, "not available", ha="center", transform=ax.transAxes)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence of the decided class")
        ax.set_ylabel("fraction correct")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("Reliability: points on the diagonal are calibrated (5 equal-width bins)", fontsize=9)
    fig.tight_layout()
    return plots.save_figure(fig, path)


def camera_grid_figure(frames: FrameSet, path: Path) -> Path:
    """The 33 sub-regions of the camera geometry the run used, drawn over the first frame of the set."""
    from astrobench.tasks.allsky.data import read_frame
    from astrobench.tasks.allsky.geometry import CameraGeometry, camera_subregion_map

    fig, ax = plots.plt.subplots(figsize=(6, 5))
    key = next(iter(frames.cameras), None)
    geo = frames.cameras.get(key) if key is not None else None
    counts, _ = read_frame(frames.files[0])
    step = max(1, min(counts.shape) // 400)
    small = counts[::step, ::step]
    lo, hi = np.percentile(small, [1, 99.5])
    ax.imshow(np.arcsinh(5 * np.clip((small - lo) / max(hi - lo, 1e-9), 0, None)), cmap="gray", origin="upper")
    if geo is None or "cx" not in geo:
        ax.text(0.5, 0.5, "geometry found per frame: not available", ha="center", color="red", transform=ax.transAxes)
    else:
        camera = CameraGeometry(geo["cx"] / step, geo["cy"] / step, geo["radius"] / step, geo["rotation_deg"],
                                geo["flip"], tuple(int(c / step) for c in geo["crop"]) if geo.get("crop") else None,
                                geo["grid"])
        index = camera_subregion_map(small.shape, camera)
        ax.contour(index, levels=np.arange(-0.5, 33), colors="orange", linewidths=0.5)
        yy, xx = np.indices(small.shape)
        for k in range(33):
            sel = index == k
            if sel.any():
                ax.text(xx[sel].mean(), yy[sel].mean(), str(k), color="yellow", fontsize=5, ha="center", va="center")
        ax.set_title(f"camera ({geo['source']}): centre ({geo['cx']:.0f}, {geo['cy']:.0f}) px, "
                     f"R = {geo['radius']:.0f} px"
                     + (f", horizon mask {100 * geo.get('horizon_fraction', 0):.1f} %" if geo.get("horizon_fraction")
                        else ""), fontsize=8)
    ax.set_xlabel(f"{Path(frames.files[0]).name}: does the grid fit the sky?", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return plots.save_figure(fig, path)


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
