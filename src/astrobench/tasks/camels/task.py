"""Experiments of the camels task: Omega_m, sigma_8 (and the feedback amplitudes) from CAMELS multifield maps
with the CMD benchmark CNN and its moment loss, in-suite and across suites (see docs/tasks/camels.md).

For every training suite (tng, simba) and input field (mtot, mtot_nomean, p, mtot_p) one network is trained on
the suite's training simulations; its sigma is recalibrated on the same suite's validation simulations; it is
scored on the test simulations of both suites: ``results.<train>_to_<test>.<field>.<param>.<metric>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from astrobench.core import metrics as M
from astrobench.core import plots
from astrobench.core.io import ConfigError, DataFormatError, bad_option, read_json, write_json_atomic, write_predictions
from astrobench.core.summary import GOAL, Headline
from astrobench.core.task import Evaluation, RunContext, Simulation, Task
from astrobench.core.training import RegressionTask, fit, load_module, predict_module, random_d4
from astrobench.tasks.camels.data import (
    FIELD_CHANNELS,
    LOG_PARAMS,
    MapDataset,
    Suite,
    channel_stats,
    load_camels,
    simulation,
    split_sims,
    targets,
)
from astrobench.tasks.camels.models import cmd_cnn
from astrobench.tasks.camels.simulate import MAPS_PER_SIM, PARAM_NAMES, SIMULATOR_VERSION, SUITES
from astrobench.tasks.camels.simulate import simulate as simulate_camels

PAPER = "Villaescusa-Navarro et al. 2022 (arXiv:2109.10360), Mtot tested across suites"
TARGET = GOAL  # a goal this benchmark sets itself
METRICS = ("r2", "rel_err", "chi2", "coverage_68")


def parameter_metrics(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray, sims: np.ndarray,
                      seed: int = 0) -> dict[str, float]:
    """r2, mean relative error, chi2 and 68 % coverage of one parameter, with errors over simulations."""
    stats = {
        "r2": lambda t, m, s: M.r2(t, m),
        "rel_err": lambda t, m, s: np.mean(np.abs(m - t) / np.abs(t)),
        "chi2": lambda t, m, s: np.mean(((m - t) / s) ** 2),
        "coverage_68": lambda t, m, s: np.mean(np.abs(m - t) <= s),
    }
    out = {}
    for name, fn in stats.items():
        out[name], out[f"{name}_err"] = M.bootstrap(fn, true, mean, sigma, seed=seed, groups=sims)
    return out


def has_inputs(suite: Suite, field: str) -> bool:
    """Whether ``suite`` has the map files the input ``field`` is made of."""
    return all(("p" if c == "p" else "mtot") in suite.maps for c in FIELD_CHANNELS[field])


class CamelsTask(Task):
    name = "camels"
    summary = "Omega_m and sigma_8 from CAMELS Mtot / P maps: CMD CNN with error bars, IllustrisTNG vs SIMBA"
    n_unit = "simulations (15 maps each)"
    bytes_per_object = 1e6  # 15 maps of 64 x 64 in two fields, float32
    count_options = ("n_sims",)
    min_objects = 3
    simulator_version = SIMULATOR_VERSION
    anchors = {
        "tng_to_simba.mtot.omega_m.rel_err": {"value": "about 0.04 (Mtot, across suites)", "source": PAPER},
        "tng_to_simba.mtot.sigma_8.rel_err": {"value": "about 0.025 (Mtot, across suites)", "source": PAPER},
        "tng_to_tng.mtot.omega_m.r2": {"value": ">= 0.95", "source": TARGET},
        "tng_to_tng.mtot.sigma_8.r2": {"value": ">= 0.90", "source": TARGET},
        "tng_to_tng.mtot.omega_m.rel_err": {"value": "<= 0.06", "source": TARGET},
        "tng_to_tng.mtot.sigma_8.rel_err": {"value": "<= 0.05", "source": TARGET},
        "tng_to_tng.mtot.omega_m.chi2": {"value": "0.7-1.5", "source": TARGET},
        "tng_to_tng.mtot.sigma_8.chi2": {"value": "0.7-1.5", "source": TARGET},
        "tng_to_tng.mtot_nomean.omega_m.r2": {"value": ">= 0.85", "source": TARGET},
        "tng_to_tng.mtot_nomean.sigma_8.r2": {"value": ">= 0.85", "source": TARGET},
    }
    question = ("How well do CAMELS maps of total matter (Mtot) and gas pressure constrain Omega_m and sigma_8, "
                "within one simulation suite and across suites (IllustrisTNG and SIMBA)?")
    headlines = (
        Headline("tng_to_tng", "omega_m.r2", "Omega_m r2", better="higher"),
        Headline("tng_to_tng", "sigma_8.r2", "sigma_8 r2", better="higher"),
        Headline("tng_to_tng", "omega_m.rel_err", "Omega_m relative error"),
        Headline("tng_to_tng", "sigma_8.rel_err", "sigma_8 relative error"),
        Headline("tng_to_simba", "omega_m.rel_err", "Omega_m relative error, trained on TNG, tested on SIMBA"),
        Headline("tng_to_simba", "sigma_8.rel_err", "sigma_8 relative error, trained on TNG, tested on SIMBA"),
    )
    quick_caveats = {"*": "6 test simulations and 3 epochs at quick size, not converged: see the full run"}
    figure_captions = {
        "example_maps": ("Example maps", "One map of each field from each suite."),
        "cross_suite_r2": ("Within and across suites", "r2 of each field when trained and tested on the same suite "
                           "and on the other one."),
        "pred_*": ("Predicted against true parameters", "Test maps: the network's predicted mean against the true "
                   "value, with its predicted standard deviation as the error bar."),
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(n_sims=12, map_size=32, hidden=2, max_epochs=1, fields=["mtot", "mtot_nomean"]),
            # quick: 32 px maps from 32^3 particles (64 px: 158 s of the 242 s were the 120 N-body boxes)
            "quick": dict(n_sims=60, map_size=32, hidden=4, max_epochs=3, fields=["mtot", "mtot_nomean", "p",
                                                                                  "mtot_p"]),
            "full": dict(n_sims=500, map_size=64, hidden=4, max_epochs=20, fields=["mtot", "mtot_nomean", "p",
                                                                                   "mtot_p"]),
        }[size]
        return {
            **sizes,
            # --data: use the first max_sims simulations of each suite (0: all); n_sims is the simulator's
            "max_sims": 0,
            "train_suites": ["tng", "simba"],
            "split": [0.9, 0.05, 0.05],  # train / validation / test, by simulation
            "batch_size": 32,
            "patience": 6,
            "lr": 3e-4,  # best validation loss of 1e-3, 3e-4, 1e-4 (docs/tasks/camels.md)
            "weight_decay": 1e-4,
            "dropout": 0.2,
            "augment": True,  # random rotations and flips of the training maps
            "n_trials": 0,  # Optuna trials of (lr, weight_decay, dropout) before the runs; 0: no search
            "trial_epochs": 3,
            "optuna_storage": "",  # default: sqlite:///<run>/optuna.db
            "n_jobs": 2,  # simulator processes (Dask workers); the maps do not depend on it
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["n_sims"] < 3:
            raise bad_option(options, "n_sims", "at least 3 (train, validation and test need one simulation each)")
        if options["map_size"] < 16 or options["map_size"] & (options["map_size"] - 1):
            raise bad_option(options, "map_size", "a power of two >= 16")
        bad = [f for f in options["fields"] if f not in FIELD_CHANNELS]
        if bad or not options["fields"]:
            raise bad_option(options, "fields", f"a non-empty list from {list(FIELD_CHANNELS)}")
        if not options["train_suites"] or set(options["train_suites"]) - set(SUITES):
            raise bad_option(options, "train_suites", f"a non-empty list from {list(SUITES)}")
        split = options["split"]
        if len(split) != 3 or min(split) <= 0 or abs(sum(split) - 1) > 1e-6:
            raise bad_option(options, "split", "three positive fractions (train, validation, test) summing to 1")
        for key in ("hidden", "max_epochs", "batch_size", "trial_epochs", "n_jobs"):
            if options[key] < 1:
                raise bad_option(options, key, ">= 1")
        if not 0 <= options["dropout"] < 1:
            raise bad_option(options, "dropout", "in [0, 1)")
        if options["max_sims"] < 0 or 0 < options["max_sims"] < 3:
            raise bad_option(options, "max_sims", "0 (all) or at least 3")
        if options["n_trials"] < 0:
            raise bad_option(options, "n_trials", ">= 0")
        return options

    def simulate(self, out, n, seed=0, format=None, map_size: int = 64, n_jobs: int = 2) -> Path:
        if format not in (None, "npy"):
            raise ConfigError(f"camels writes the CMD .npy / .txt files only, not {format!r}")
        return simulate_camels(out, n_sims=n, seed=seed, map_size=map_size, progress=True, n_jobs=n_jobs)

    def example(self, out) -> Path:
        """Three simulations of both suites at the smoke size's 32 px (what a smoke run's networks take)."""
        return self.simulate(out, n=self.min_objects, seed=0, map_size=self.options("smoke")["map_size"])

    # -- data -------------------------------------------------------------------------------------------------
    def simulations(self, ctx: RunContext) -> dict[str, Simulation]:
        opts = ctx.options
        return {"data": simulation(opts["n_sims"], opts["map_size"], ctx.seed, opts["n_jobs"], ctx.progress)}

    def read(self, ctx: RunContext, paths: Mapping[str, Path]) -> tuple[dict[str, Suite], dict[str, tuple]]:
        """The suites' maps and parameters, and each suite's (train, val, test) simulation ids."""
        opts = ctx.options
        if ctx.data_info["source"] == "simulated":  # the cached folder's done.json
            folder, n_sims = paths["data"].parent, None
            ctx.data_info["path"] = str(folder)
        else:
            folder = paths["data"]
            # every simulation, or the first max_sims of each suite (a prefix of a Latin hypercube still spans it)
            n_sims = min(s.n_sims for s in load_camels(folder).values())
            n_sims = min(n_sims, opts["max_sims"]) if opts["max_sims"] > 0 else n_sims
        suites = load_camels(folder, n_sims)
        for name in opts["train_suites"]:
            for field in opts["fields"]:
                if name in suites and not has_inputs(suites[name], field):
                    raise DataFormatError(folder, f"the {SUITES[name]} files lack the maps field {field!r} needs "
                                                  "(choose others with --set fields=[...], e.g. "
                                                  "['mtot','mtot_nomean'])")
        if len({s.map_size for s in suites.values()}) > 1:
            raise DataFormatError(folder, "the suites' maps differ in size ("
                                  + ", ".join(f"{SUITES[k]} {v.map_size} px" for k, v in suites.items())
                                  + "); one network cannot score both")
        missing = [s for s in opts["train_suites"] if s not in suites]
        if missing:
            raise DataFormatError(folder, f"lacks the {', '.join(SUITES[s] for s in missing)} files that "
                                          "train_suites names (or pass --set train_suites=[...])")
        ctx.data_info.update(suites={s: {"n_sims": v.n_sims, "fields": sorted(v.maps), "map_size": v.map_size}
                                     for s, v in suites.items()})
        ctx.log(f"{', '.join(f'{SUITES[s]}: {v.n_sims} simulations' for s, v in suites.items())}, "
                f"{next(iter(suites.values())).map_size} px maps")
        splits = {s: split_sims(v.n_sims, opts["split"], ctx.seed) for s, v in suites.items()}
        ctx.data_info.update(n_train=int(sum(len(splits[s][0]) for s in opts["train_suites"])),
                             n_val=int(sum(len(splits[s][1]) for s in opts["train_suites"])),
                             n_test=int(sum(len(sp[2]) for sp in splits.values())), unit="simulations")
        return suites, splits

    # -- training and scoring -----------------------------------------------------------------------------------
    def _module(self, channels: int, map_size: int, y_train: np.ndarray, opts: dict[str, Any],
                **hyper) -> RegressionTask:
        h = {k: hyper.get(k, opts[k]) for k in ("lr", "weight_decay", "dropout")}
        net = cmd_cnn(channels, map_size, hidden=opts["hidden"], n_params=len(PARAM_NAMES), dropout=h["dropout"])
        return RegressionTask(net, y_train.mean(0), y_train.std(0), loss="moment", lr=h["lr"],
                              weight_decay=h["weight_decay"], augment=random_d4 if opts["augment"] else None)

    @staticmethod
    @torch.no_grad()
    def _predict(module: RegressionTask, dataset: MapDataset, batch_size: int = 256):
        module.eval()
        means, sigmas = [], []
        for x, _ in DataLoader(dataset, batch_size=batch_size):
            mu, sigma = module.predict_physical(x)
            means.append(mu.numpy())
            sigmas.append(sigma.numpy())
        return np.concatenate(means), np.concatenate(sigmas)

    def fit(self, ctx: RunContext, data: tuple[dict[str, Suite], dict[str, tuple]]) -> dict[tuple[str, str], Any]:
        """{(training suite, field): (network, channel statistics, sigma scale per parameter, FitResult)}: one
        network per suite and field (with ``n_trials`` > 0, on the hyperparameters Optuna found first)."""
        opts = ctx.options
        suites, splits = data
        hyper = self._tune(ctx, suites, splits) if opts["n_trials"] > 0 else {}
        models = {}
        for train in opts["train_suites"]:
            suite = suites[train]
            tr, va, _ = splits[train]
            for field in opts["fields"]:
                stats = channel_stats(suite, tr, field, seed=ctx.seed)
                train_set, val_set = MapDataset(suite, tr, field, stats), MapDataset(suite, va, field, stats)
                ctx.seed_model(train, field)
                module = self._module(len(FIELD_CHANNELS[field]), suite.map_size, targets(suite.params[tr]), opts,
                                      **hyper)
                ckpt = ctx.checkpoint_dir(train, field)
                ctx.log(f"training on {SUITES[train]}, field {field}: {len(train_set)} maps")
                res = fit(module, train_set, val_set, ckpt, ctx.train_config(), resume=ctx.resume)
                # sigma recalibration: one factor per parameter from the validation simulations only
                mu_val, sig_val = self._predict(module, val_set)
                y_val = targets(suite.params[np.repeat(va, MAPS_PER_SIM)])
                scale = np.sqrt(np.mean(((mu_val - y_val) / sig_val) ** 2, axis=0))
                write_json_atomic(ckpt / "meta.json", {
                    "suite": train, "field": field, "map_size": suite.map_size, "hidden": opts["hidden"],
                    "dropout": hyper.get("dropout", opts["dropout"]),
                    "stats": [s.tolist() for s in stats],  # mean, std and floor of each channel
                    "sigma_scale": scale.tolist(), "epochs": res.epochs})
                models[(train, field)] = (module, stats, scale, res)
        return models

    def evaluate(self, ctx: RunContext, data: tuple[dict[str, Suite], dict[str, tuple]],
                 models: dict[tuple[str, str], Any]) -> Evaluation:
        """Every network on the test simulations of every suite whose files it can read:
        ``<train>_to_<test>.<field>.<param>.<metric>``, with errors over test simulations."""
        suites, splits = data
        ctx.error_bars = "bootstrap over test simulations (their 15 maps resampled together)"
        results: dict[str, Any] = {}
        predictions: dict[tuple[str, str, str], tuple] = {}
        for (train, field), (module, stats, scale, _) in models.items():
            for test, other in suites.items():
                if not has_inputs(other, field):
                    continue
                test_set = MapDataset(other, splits[test][2], field, stats)
                mu, sigma = self._predict(module, test_set)
                sigma = sigma * scale
                y = targets(other.params[test_set.sim_of_item()])
                sims = test_set.sim_of_item()
                block = results.setdefault(f"{train}_to_{test}", {}).setdefault(field, {})
                for j, name in enumerate(PARAM_NAMES):
                    block[name] = {**parameter_metrics(y[:, j], mu[:, j], sigma[:, j], sims, ctx.seed),
                                   "sigma_scale": float(scale[j])}
                predictions[(train, test, field)] = (y, mu, sigma)
        return Evaluation(results, {"predictions": predictions})

    def figures(self, ctx: RunContext, data, models: dict[tuple[str, str], Any], evaluation: Evaluation) -> None:
        for (train, field), (_, _, _, res) in models.items():
            plots.loss_curves(res.history, f"{SUITES[train]}, {field}", ctx.figures / f"loss_{train}_{field}.png")
        self._figures(ctx, data[0], evaluation.outputs["predictions"], evaluation.results)

    def _tune(self, ctx: RunContext, suites: dict[str, Suite], splits) -> dict[str, float]:
        """Optuna search of (lr, weight_decay, dropout) on the validation loss of the first training suite and
        field, ``trial_epochs`` epochs each; the best values are used by every network of the run."""
        import optuna

        opts = ctx.options
        train, field = opts["train_suites"][0], opts["fields"][0]
        suite = suites[train]
        tr, va, _ = splits[train]
        stats = channel_stats(suite, tr, field, seed=ctx.seed)
        train_set, val_set = MapDataset(suite, tr, field, stats), MapDataset(suite, va, field, stats)

        def objective(trial):
            hyper = {"lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
                     "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
                     "dropout": trial.suggest_float("dropout", 0.0, 0.5)}
            module = self._module(len(FIELD_CHANNELS[field]), suite.map_size, targets(suite.params[tr]), opts,
                                  **hyper)
            res = fit(module, train_set, val_set, ctx.run_dir / "optuna" / f"trial{trial.number}",
                      ctx.train_config(max_epochs=opts["trial_epochs"]))
            return float(np.nanmin(res.history["val_loss"]))

        storage = opts["optuna_storage"] or f"sqlite:///{ctx.run_dir / 'optuna.db'}"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=f"camels-{ctx.run_dir.name}", storage=storage, direction="minimize",
                                    sampler=optuna.samplers.TPESampler(seed=ctx.seed), load_if_exists=True)
        study.optimize(objective, n_trials=opts["n_trials"])
        write_json_atomic(ctx.run_dir / "optuna_best.json", {"params": study.best_params, "value": study.best_value,
                                                             "n_trials": len(study.trials), "storage": storage})
        ctx.data_info["tuned"] = study.best_params
        return dict(study.best_params)

    # -- figures ------------------------------------------------------------------------------------------------
    def _figures(self, ctx: RunContext, suites: dict[str, Suite], predictions, results) -> None:
        plt = plots.plt
        labels = {"omega_m": "Ωm", "sigma_8": "σ8", **{p: f"log10 {p.upper()}" for p in LOG_PARAMS}}
        for (train, test, field), (y, mu, sigma) in predictions.items():
            fig, axes = plt.subplots(2, 3, figsize=(12, 7))
            for j, ax in enumerate(axes.ravel()):
                ax.errorbar(y[:, j], mu[:, j], yerr=sigma[:, j], fmt=".", ms=2, alpha=0.4, elinewidth=0.5)
                lim = [y[:, j].min(), y[:, j].max()]
                ax.plot(lim, lim, "k--", lw=0.8)
                m = results[f"{train}_to_{test}"][field][PARAM_NAMES[j]]
                ax.set_title(f"{labels[PARAM_NAMES[j]]}: r2 {m['r2']:.2f}, chi2 {m['chi2']:.2f}", fontsize=9)
                ax.set_xlabel("true")
                ax.set_ylabel("predicted ± σ")
            fig.suptitle(f"{field}: trained on {SUITES[train]}, tested on {SUITES[test]}", fontsize=10)
            plots.save_figure(fig, ctx.figures / f"pred_{train}_to_{test}_{field}.png")
        # the cross-suite comparison: r2 of Omega_m and sigma_8 per field and train -> test pair
        combos = list(results)
        fields = ctx.options["fields"]
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
        for ax, param in zip(axes, ("omega_m", "sigma_8")):
            width = 0.8 / len(combos)
            for c, combo in enumerate(combos):
                vals = [results[combo].get(f, {}).get(param, {}).get("r2", np.nan) for f in fields]
                errs = [results[combo].get(f, {}).get(param, {}).get("r2_err", np.nan) for f in fields]
                ax.bar(np.arange(len(fields)) + c * width, np.clip(vals, -1, 1), width, yerr=errs, label=combo)
            ax.set_xticks(np.arange(len(fields)) + 0.4 - width / 2, fields)
            ax.set_title(labels[param])
            ax.axhline(0, color="k", lw=0.6)
            ax.set_ylabel("r2 (clipped at -1)")
        axes[0].legend(fontsize=7)
        plots.save_figure(fig, ctx.figures / "cross_suite_r2.png")
        # example maps: both suites and fields, one simulation each
        fig, axes = plt.subplots(len(suites), 2, figsize=(6.4, 3.2 * len(suites)), squeeze=False)
        for r, (name, suite) in enumerate(suites.items()):
            for c, field in enumerate(("mtot", "p")):
                ax = axes[r, c]
                ax.axis("off")
                if field in suite.maps:
                    image = np.asarray(suite.maps[field][0], dtype=np.float64)
                    image = np.log10(np.maximum(image, image[image > 0].min() if (image > 0).any() else 1e-30))
                    ax.imshow(image, cmap="magma", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99.8))
                    ax.set_title(f"{SUITES[name]} log10 {field} (Ωm {suite.params[0, 0]:.2f}, "
                                 f"σ8 {suite.params[0, 1]:.2f})", fontsize=7)
        plots.save_figure(fig, ctx.figures / "example_maps.png")

    # -- applying a run to new maps -------------------------------------------------------------------------------
    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        """Every parameter (mean and recalibrated sigma) of every map in a CMD folder, from each trained network
        of the run whose input fields the folder has. Writes a CSV."""
        weights = sorted((Path(run_dir) / "checkpoints").glob("*.*/model.pt"))
        if not weights:
            raise DataFormatError(run_dir, "no trained network under checkpoints/ (is the run finished?)")
        suites = load_camels(data)
        rows = []
        for path in weights:
            meta = read_json(path.parent / "meta.json")
            net = cmd_cnn(len(FIELD_CHANNELS[meta["field"]]), meta["map_size"], meta["hidden"], len(PARAM_NAMES),
                          meta["dropout"])
            module = load_module(RegressionTask, path.parent, backbone=net, target_mean=np.zeros(6),
                                 target_std=np.ones(6))
            stats = tuple(np.array(s, dtype=np.float32) for s in meta["stats"])
            for name, suite in suites.items():
                if suite.map_size != meta["map_size"]:
                    raise DataFormatError(data, f"maps are {suite.map_size} px; the run's networks take "
                                                f"{meta['map_size']} px")
                if not has_inputs(suite, meta["field"]):
                    continue
                dataset = MapDataset(suite, np.arange(suite.n_sims), meta["field"], stats)
                maps = np.stack([np.asarray(dataset[i][0]) for i in range(len(dataset))])
                mu, sigma = predict_module(module, maps, lambda m, x: m.predict_physical(x), batch_size=256)
                sigma = sigma * np.array(meta["sigma_scale"])
                for i in range(len(dataset)):
                    rows.append([meta["suite"], meta["field"], name, dataset.map_index(i),
                                 *mu[i], *sigma[i]])
        out = Path(out)
        path = out if out.suffix == ".csv" else out / "camels_predictions.csv"
        header = ["trained_on", "field", "suite", "map", *PARAM_NAMES, *(f"{p}_sigma" for p in PARAM_NAMES)]
        return write_predictions({h: [row[j] for row in rows] for j, h in enumerate(header)}, path, ".6f")
