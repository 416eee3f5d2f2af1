"""Experiments of the spectra task: generative models of SDSS galaxy spectra, free and conditioned on physical
properties, judged by a classifier two-sample test and physical summary statistics (docs/tasks/spectra.md).

``results.reconstruct.<method>``: held-out chi^2 per pixel of PCA (k = the VAE's latent size, and every k) and the
VAE. ``results.generate.<method>``: c2st_auc (with the controls real_vs_real and real_vs_degraded beside them),
w1_<statistic>, nn_memorization. ``results.conditional.<method>``: r2_z, r2_metallicity, r2_age between the
conditions and a regressor's re-measurement of the generated spectra, and how conditioning on stellar mass acts.
``results.summary``: the best unconditional model (chosen by its validation C2ST) against pca_gauss.
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
from astrobench.core.summary import GOAL, NOT_CONVERGED, Headline
from astrobench.core.task import Evaluation, RunContext, Simulation, Task
from astrobench.tasks.spectra import measure
from astrobench.tasks.spectra.data import FRAMES, Prepared, prepare, quality_mask, read_spectra, split_indices
from astrobench.tasks.spectra.models import (
    GENERATORS,
    ParameterRegressor,
    PCABasis,
    PCAFlow,
    PCAGauss,
    SpectraBatch,
    VAEGenerator,
    add_noise,
    chi2_per_pixel,
)
from astrobench.tasks.spectra.simulate import FILENAME, SIMULATOR_VERSION, physics_key
from astrobench.tasks.spectra.simulate import simulate as simulate_spectra

TARGET = GOAL  # a goal this benchmark sets itself
PORTILLO = ("Portillo et al. 2020 (AJ 160, 45): a 6-latent InfoVAE reconstructs SDSS spectra better than 6 PCA "
            "components")
CONDITIONS = ("z", "log_metallicity", "log_age_yr", "log_smass_msun")
MEASURED = ("z", "metallicity", "age")  # re-measured by the regressor (log10 for metallicity and age)
MIN_GALAXIES = 200  # after cuts: the test split's halves must hold the C2ST's minimum pool (20) each


def conditions(sf, rows: np.ndarray) -> np.ndarray:
    """(z, log10 metallicity, log10 age/yr, log10 smass/Msun) of the file rows."""
    return np.column_stack([sf.z[rows], np.log10(sf.metallicity[rows]), np.log10(sf.age_yr[rows]),
                            np.log10(sf.smass_msun[rows])])


def tilt(wave: np.ndarray):
    """The degraded control of the C2ST: real spectra (noise included) multiplied by (lambda / 5500 A)^alpha,
    alpha ~ U(0.5, 1.5): g - r off by 0.15-0.45 mag, the S/N of every pixel unchanged."""
    def degrade(flux: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        alpha = rng.uniform(0.5, 1.5, (len(flux), 1))
        return (flux * (wave[None, :] / 5500.0) ** alpha).astype(np.float32)
    return degrade


def spectra_simulation(n_galaxies: int, seed: int, n_jobs: int = 2, progress: bool = False) -> Simulation:
    """``n_galaxies`` simulated bagpipes spectra in the SDSS-like file, cached under the ``spectra`` task (every task
    built on these spectra shares one simulation)."""
    key = {"n": n_galaxies, "seed": seed, "physics": physics_key()}
    return Simulation(key, FILENAME, functools.partial(_write_spectra, key=key, n_jobs=n_jobs, progress=progress),
                      owner="spectra", version=SIMULATOR_VERSION)


def _write_spectra(folder: Path, key: dict[str, Any], n_jobs: int, progress: bool) -> Path:
    return simulate_spectra(folder / FILENAME, n=key["n"], seed=key["seed"], n_jobs=n_jobs, progress=progress)


def read_for_run(ctx: RunContext, path: Path):
    """The spectra file ``path`` and its prepared spectra for a run: at most ``max_galaxies`` of a user's file,
    the label and coverage cuts with one-line errors. Reads the options ``max_galaxies``, ``frame`` and
    ``min_coverage``."""
    opts = ctx.options
    n = None if ctx.data_info.get("source") == "simulated" else opts["max_galaxies"]
    sf = read_spectra(path, n=n)
    # the label cuts always apply to a run: its conditions are log10 of age, metallicity and mass
    keep = np.flatnonzero(quality_mask(sf, label_cuts=True))
    if len(sf) < MIN_GALAXIES:
        raise DataFormatError(sf.path, f"the file holds {len(sf)} galaxies; a run needs at least {MIN_GALAXIES}")
    if len(keep) < MIN_GALAXIES:
        with np.errstate(invalid="ignore"):
            failing = {"age > 0": int(np.sum(~(sf.age_yr > 0))),
                       "metallicity > 0 (a file with log metallicities must be converted: the conditions "
                       "take log10)": int(np.sum(~(sf.metallicity > 0))),
                       "1e8 < smass < 1e12": int(np.sum(~((sf.smass_msun > 1e8) & (sf.smass_msun < 1e12))))}
        why = "; ".join(f"{k}: {v} fail" for k, v in failing.items() if v)
        raise DataFormatError(sf.path, f"only {len(keep)} of {len(sf)} galaxies pass the quality cuts, at "
                                       f"least {MIN_GALAXIES} are needed "
                                       f"({why or 'the others lack a positive flux in 5300-5800 A'})")
    prep = prepare(sf, keep, opts["frame"])
    prep = prep.subset(prep.coverage >= opts["min_coverage"])
    if len(prep) < MIN_GALAXIES:
        raise DataFormatError(sf.path, f"only {len(prep)} galaxies cover >= {opts['min_coverage']:.0%} of the "
                                       f"{opts['frame']}-frame grid, at least {MIN_GALAXIES} are needed (lower "
                                       f"--set min_coverage=..., or galaxies beyond z ~ 0.3 lack the red end)")
    ctx.data_info.update(n_file=len(sf), n_after_cuts=len(keep), n_used=len(prep), frame=opts["frame"],
                         n_wave=len(prep.wavelength_aa), units=sf.units.get("metallicity", ""))
    return sf, prep


class SpectraData(NamedTuple):
    """A run's prepared spectra, its 70/10/20 split (positions in ``prep``), and the conditions of every spectrum:
    ``cond_raw`` (z, log Z, log age, log M*) and ``cond`` standardised with the training split's mean and std."""

    prep: Prepared
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    cond_raw: np.ndarray
    cond: np.ndarray

    def batch(self, idx: np.ndarray, conditional: bool) -> SpectraBatch:
        """The spectra ``idx`` with their conditions (none for an unconditional model)."""
        return SpectraBatch(self.prep.flux[idx], self.prep.ivar[idx], self.cond[idx] if conditional
                            else self.cond[idx, :0])


class HeldOut(NamedTuple):
    """The held-out real spectra a run compares with: row indices ``ref`` and ``other`` (two disjoint halves), and
    the conditions ``cond_raw`` (z, log Z, log age, log M*) of every row."""

    ref: np.ndarray
    other: np.ndarray
    cond_raw: np.ndarray


class SpectraTask(Task):
    name = "spectra"
    summary = "Generative models of SDSS galaxy spectra: PCA + Gaussian / flow, VAE; C2ST and physical statistics"
    simulator_version = SIMULATOR_VERSION
    n_unit = "galaxies (spectra)"
    bytes_per_object = 1.5e5  # 3 float32 spectra and their float64 noise draws
    count_options = ("n_galaxies",)
    min_objects = 260
    anchors = {
        "reconstruct.vae.chi2": {"value": "below reconstruct.pca.chi2 at the same k = 6", "source": PORTILLO},
        "summary.best.c2st_auc": {"value": "<= 0.7 and below pca_gauss", "source": TARGET},
        "conditional.*.r2_metallicity": {"value": ">= 0.7", "source": TARGET},
        "conditional.*.r2_age": {"value": ">= 0.7", "source": TARGET},
        "generate.*.nn_memorization": {"value": ">= 0.9", "source": TARGET},
    }
    question = ("Can a generative model of SDSS galaxy spectra (PCA, normalising flows, a VAE) produce spectra a "
                "classifier cannot tell from real ones, with the right physical statistics, and spectra of a chosen "
                "age and metallicity?")
    headlines = (
        Headline("reconstruct", "chi2", "reconstruction chi2 per pixel"),
        Headline("generate", "c2st_auc", "C2ST AUC (0.5: indistinguishable)",
                 controls=("real_vs_real", "real_vs_degraded")),
        Headline("generate", "nn_memorization", "nearest-neighbour memorisation ratio", better="",
                 controls=("real_vs_real", "real_vs_degraded")),
        Headline("conditional", "r2_metallicity", "metallicity control r2", better="higher",
                 controls=("real_spectra",)),
        Headline("conditional", "r2_age", "age control r2", better="higher", controls=("real_spectra",)),
    )
    quick_caveats = {f"{experiment}.{method}": NOT_CONVERGED for experiment, method in (
        ("reconstruct", "vae"), ("generate", "vae"), ("generate", "vae_flow"), ("conditional", "vae"),
        ("conditional", "vae_flow"))}
    figure_captions = {
        "mean_and_bands": ("Mean spectrum and spread", "Mean and 16-84% band of real and generated spectra."),
        "summary_statistics": ("Physical statistics", "Distributions of colour, Dn4000, H-alpha equivalent width and "
                               "[OIII]/H-beta for real and generated spectra."),
        "bpt_diagram": ("BPT diagram", "Emission-line ratios of real and generated spectra."),
        "conditional_examples": ("Conditional spectra", "Spectra generated for chosen ages and metallicities."),
        "pca_explained_variance": ("PCA explained variance", "Variance explained by the first k components."),
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(n_galaxies=200, vae_epochs=2, flow_epochs=2, patience=2, pca_max_components=20,
                          n_components=8),
            "quick": dict(n_galaxies=1500, vae_epochs=15, flow_epochs=25, patience=5, pca_max_components=40,
                          n_components=32),
            "full": dict(n_galaxies=10000, vae_epochs=150, flow_epochs=150, patience=15, pca_max_components=64,
                         n_components=32),
        }[size]  # n_components: PCA coefficients behind pca_gauss and pca_flow (12 lose the metallicity signal)
        return {
            **sizes,
            "frame": "rest",
            "min_coverage": 0.8,
            "latent_dim": 6,  # VAE latents (Portillo et al. 2020)
            "beta": 1.0,
            "batch_size": 128,
            "generate_methods": list(GENERATORS),
            "conditional_methods": list(GENERATORS),
            "n_jobs": 2,  # simulator processes
            "max_galaxies": None,  # --data: read only the file's first N galaxies (None: all)
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["frame"] not in FRAMES:
            raise bad_option(options, "frame", f"one of {FRAMES}")
        if options["n_galaxies"] < MIN_GALAXIES:
            raise bad_option(options, "n_galaxies", f"at least {MIN_GALAXIES}")
        for key in ("vae_epochs", "flow_epochs", "patience", "latent_dim", "batch_size", "n_jobs"):
            if not isinstance(options[key], int) or options[key] < 1:
                raise bad_option(options, key, "an integer >= 1")
        if not 1 <= options["n_components"] <= options["pca_max_components"]:
            raise bad_option(options, "n_components",
                             f"between 1 and pca_max_components ({options['pca_max_components']})")
        if options["max_galaxies"] is not None and (not isinstance(options["max_galaxies"], int)
                                                    or options["max_galaxies"] < MIN_GALAXIES):
            raise bad_option(options, "max_galaxies", f"None or an integer >= {MIN_GALAXIES}")
        if not 0 < options["min_coverage"] <= 1:
            raise bad_option(options, "min_coverage", "in (0, 1]")
        for key in ("generate_methods", "conditional_methods"):
            if set(options[key]) - set(GENERATORS):
                raise bad_option(options, key, f"a list from {list(GENERATORS)}")
        return options

    def simulate(self, out, n, seed=0, format=None, n_jobs: int = 2) -> Path:
        return simulate_spectra(out, n=n, seed=seed, format=format, n_jobs=n_jobs)

    # --- steps ------------------------------------------------------------------------------------------------

    def simulations(self, ctx: RunContext) -> dict[str, Simulation]:
        opts = ctx.options
        ctx.log(f"simulating {opts['n_galaxies']} bagpipes spectra (cached; ~0.05 s each on 2 cores the first time)")
        return {"data": spectra_simulation(opts["n_galaxies"], ctx.seed, opts["n_jobs"], ctx.progress)}

    def read(self, ctx: RunContext, paths: Mapping[str, Path]) -> SpectraData:
        sf, prep = read_for_run(ctx, paths["data"])
        train, val, test = split_indices(len(prep), ctx.seed)
        cond_raw = conditions(sf, prep.rows)
        c_mean, c_std = cond_raw[train].mean(0), cond_raw[train].std(0) + 1e-12
        ctx.data_info.update(n_train=len(train), n_val=len(val), n_test=len(test), split="70/10/20 random",
                             c2st_pool="test split halves: reference vs generated for the other half's conditions")
        ctx.log(f"{len(prep)} spectra on {len(prep.wavelength_aa)} {ctx.options['frame']}-frame bins; train "
                f"{len(train)}, validation {len(val)}, test {len(test)}")
        return SpectraData(prep, train, val, test, cond_raw, ((cond_raw - c_mean) / c_std).astype(np.float32))

    def fit(self, ctx: RunContext, data: SpectraData) -> dict[str, Any]:
        """{"basis": the PCA basis, "generate"|"conditional": {method: fitted generator}, "histories": {name:
        loss history}}; the conditional generators see the standardised conditions."""
        opts = ctx.options
        prep, train, val = data.prep, data.train, data.val
        basis = PCABasis(opts["pca_max_components"], ctx.seed).fit(prep.flux[train])
        write_pickle_atomic(ctx.run_dir / "checkpoints" / "pca.pkl", basis)
        models: dict[str, Any] = {"basis": basis, "histories": {}}
        for experiment, methods in (("generate", opts["generate_methods"]),
                                    ("conditional", opts["conditional_methods"])):
            conditional = experiment == "conditional"
            models[experiment] = {}
            vae = None
            for method in sorted(methods, key=GENERATORS.index):  # vae before vae_flow, which reuses it
                ctx.seed_model(experiment, method)
                model = self._generator(method, basis, opts)
                cfg = ctx.train_config(max_epochs=opts["flow_epochs" if method == "pca_flow" else "vae_epochs"],
                                       batch_size=opts["batch_size"])
                flow_cfg = ctx.train_config(max_epochs=opts["flow_epochs"], batch_size=opts["batch_size"])
                ckpt = ctx.checkpoint_dir(experiment, "vae" if method.startswith("vae") else method)
                if isinstance(model, VAEGenerator):
                    model.fit(data.batch(train, conditional), data.batch(val, conditional), ckpt, cfg, ctx.resume,
                              vae=vae if method == "vae_flow" else None, flow_cfg=flow_cfg)
                    vae = vae or (model if method == "vae" else None)
                else:
                    model.fit(data.batch(train, conditional), data.batch(val, conditional), ckpt_dir=ckpt, cfg=cfg,
                              resume=ctx.resume)
                for name, suffix in (("history_", ""), ("flow_history_", ".latent_flow")):
                    if getattr(model, name, None):
                        models["histories"][f"{experiment}.{method}{suffix}"] = getattr(model, name)
                models[experiment][method] = model
                ctx.log(f"{experiment:11s} {method:9s} fitted")
        return models

    def evaluate(self, ctx: RunContext, data: SpectraData, models: dict[str, Any]) -> Evaluation:
        """Held-out reconstruction chi^2; samples of every generator for the conditions (and noise) of the test
        split's second half (and of the validation split's, to choose the best model); their C2ST against the
        first half, physical statistics and re-measured conditions."""
        opts = ctx.options
        prep, train, val, test, cond_raw, cond = data
        # the held-out pools: C2ST reference vs the real spectra whose conditions and noise the generators copy
        ref, other = test[: len(test) // 2], test[len(test) // 2: 2 * (len(test) // 2)]
        val_ref, val_other = val[: len(val) // 2], val[len(val) // 2: 2 * (len(val) // 2)]
        results: dict[str, Any] = {"reconstruct": self._reconstruct_pca(models["basis"], prep, test,
                                                                        opts["latent_dim"])}
        samples: dict[str, dict[str, np.ndarray]] = {"generate": {}, "conditional": {}}
        for experiment in ("generate", "conditional"):
            conditional = experiment == "conditional"
            for method, model in models[experiment].items():
                if experiment == "generate" and method == "vae":
                    results["reconstruct"]["vae"] = self._chi2(prep, test, model.reconstruct(data.batch(test, False)))
                rng = np.random.default_rng([ctx.seed, 17])

                def draw(idx, seed, model=model, conditional=conditional, rng=rng):  # idx's conditions and noise
                    c = cond[idx] if conditional else cond[idx, :0]
                    return add_noise(model.sample(len(idx), c, seed), prep.ivar[idx], rng)

                samples[experiment][method] = {"test": draw(other, ctx.seed), "val": draw(val_other, ctx.seed + 1)}
        results["generate"] = self._generate_metrics(ctx, prep, train, ref, other, val_ref, samples["generate"])
        results["conditional"], regressor = self._conditional_metrics(ctx, prep, cond_raw, train, other, val_other,
                                                                      samples["conditional"])
        results["summary"] = self._summary(results["generate"])
        write_pickle_atomic(ctx.run_dir / "checkpoints" / "regressor.pkl",
                            {"regressor": regressor, "frame": opts["frame"], "k": opts["latent_dim"]})
        return Evaluation(results, {"held": HeldOut(ref, other, cond_raw), "samples": samples})

    def figures(self, ctx: RunContext, data: SpectraData, models: dict[str, Any], evaluation: Evaluation) -> None:
        self._figures(ctx, evaluation.results, data.prep, evaluation.outputs["held"], evaluation.outputs["samples"],
                      models["histories"])

    @staticmethod
    def _generator(method: str, basis: PCABasis, opts: dict[str, Any]):
        if method == "pca_gauss":
            return PCAGauss(basis, opts["n_components"])
        if method == "pca_flow":
            return PCAFlow(basis, opts["n_components"])
        return VAEGenerator(method, opts["latent_dim"], beta=opts["beta"])

    @staticmethod
    def _chi2(prep: Prepared, idx: np.ndarray, model_flux: np.ndarray, seed: int = 0) -> dict[str, float]:
        chi2 = chi2_per_pixel(prep.flux[idx], model_flux, prep.ivar[idx])
        return {**M.with_error("chi2", np.mean, chi2, seed=seed), "chi2_median": float(np.median(chi2))}

    def _reconstruct_pca(self, basis: PCABasis, prep: Prepared, test: np.ndarray, k: int) -> dict[str, Any]:
        """chi^2 per pixel of held-out spectra rebuilt from k PCA components, for k = the VAE's latent size and
        for every k up to the basis size; with the explained variance of the training spectra."""
        ks = sorted({1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, k} & set(range(1, basis.n_components + 1)))
        by_k = {f"k_{j}": float(np.mean(chi2_per_pixel(prep.flux[test], basis.reconstruct(prep.flux[test], j),
                                                         prep.ivar[test]))) for j in ks}
        evr = np.cumsum(basis.explained_variance_ratio)
        out = {"k": k, **self._chi2(prep, test, basis.reconstruct(prep.flux[test], k)), "chi2_by_k": by_k,
               "explained_variance_by_k": {f"k_{j}": float(evr[j - 1]) for j in ks}}
        return {"pca": out}

    def _generate_metrics(self, ctx, prep, train, ref, other, val_ref, samples) -> dict[str, Any]:
        from sklearn.neighbors import NearestNeighbors

        wave = prep.wavelength_aa
        generated = {m: s["test"] for m, s in samples.items()}
        ctx.log(f"C2ST: {len(ref)} reference vs {len(other)} per sample, {len(generated)} generators + 2 controls")
        c2st = M.c2st_with_controls(prep.flux[ref], prep.flux[other], generated, tilt(wave), seed=ctx.seed)
        # the validation C2ST chooses the best model; a pool below the test's minimum (smoke sizes) chooses none
        c2st_val = {m: M.c2st_auc(prep.flux[val_ref], s["val"], seed=ctx.seed)["c2st_auc"]
                    for m, s in samples.items()} if len(val_ref) >= M.C2ST_MIN_SAMPLES else {}
        out: dict[str, Any] = {name: dict(c2st[name]) for name in ("real_vs_real", "real_vs_degraded")}
        stats_ref = measure.summary_statistics(wave, prep.flux[ref], prep.ivar[ref]) if prep.frame == "rest" else None
        neighbours = NearestNeighbors(n_neighbors=1).fit(prep.flux[train])
        d_real = neighbours.kneighbors(prep.flux[other])[0][:, 0]
        compare = {"real_vs_real": (prep.flux[other], prep.ivar[other])}
        compare.update({m: (g, prep.ivar[other]) for m, g in generated.items()})
        for name, (flux, ivar) in compare.items():
            entry = out.setdefault(name, {})
            if name in generated:
                entry.update(c2st[name])
                if name in c2st_val:
                    entry["c2st_auc_validation"] = c2st_val[name]
                # generated[i] carries other[i]'s noise: resampling the pairs together is the bootstrap
                entry.update(M.with_error("nn_memorization", lambda a, b: np.median(a) / np.median(b),
                                          neighbours.kneighbors(flux)[0][:, 0], d_real, seed=ctx.seed))
            if stats_ref is not None:
                stats = measure.summary_statistics(wave, flux, ivar)
                for stat in measure.STATISTICS:  # reference and compared samples are independent and equally large
                    entry.update(M.with_error(f"w1_{stat}", lambda a, b, st=stat: measure.wasserstein(a, b, st),
                                              stats_ref[stat], stats[stat], seed=ctx.seed))
                entry["detected_fraction_oiii_hbeta"] = float(np.isfinite(stats["line_ratio_oiii_hbeta"]).mean())
            if name in generated:
                ctx.log(f"generate {name:9s} c2st_auc {entry['c2st_auc']:.3f} (validation "
                        f"{entry.get('c2st_auc_validation', np.nan):.3f})  nn_memorization "
                        f"{entry['nn_memorization']:.3f}")
        ctx.log(f"C2ST controls: real_vs_real {out['real_vs_real']['c2st_auc']:.3f}, real_vs_degraded "
                f"{out['real_vs_degraded']['c2st_auc']:.3f}")
        return out

    def _conditional_metrics(self, ctx, prep, cond_raw, train, other, val_other, samples):
        """Re-measure z, log metallicity and log age of the generated spectra with a regressor trained on the real
        training spectra; R^2 against the conditions they were generated for (test, and ``_validation`` for the
        validation galaxies). The regressor's R^2 on the real spectra of the same galaxies is the reference: what
        the measurement itself allows at this noise."""
        regressor = ParameterRegressor(ctx.seed).fit(prep.flux[train], cond_raw[train, :3])
        truth = cond_raw[other]
        out: dict[str, Any] = {}
        wave = prep.wavelength_aa
        pools = {"real_spectra": (prep.flux[other], prep.flux[val_other]),
                 **{m: (s["test"], s["val"]) for m, s in samples.items()}}
        for name, (flux, flux_val) in pools.items():
            measured, measured_val = regressor.predict(flux), regressor.predict(flux_val)
            entry: dict[str, Any] = {}
            for j, param in enumerate(MEASURED):
                entry.update(M.with_error(f"r2_{param}", M.r2, truth[:, j], measured[:, j], seed=ctx.seed))
                entry[f"r2_{param}_validation"] = M.r2(cond_raw[val_other, j], measured_val[:, j])
            if prep.frame == "rest":
                # stellar mass is not measurable from a normalised spectrum; how does conditioning on it act?
                from scipy.stats import spearmanr

                stats = measure.summary_statistics(wave, flux, prep.ivar[other])
                for stat in ("dn4000", "ew_halpha"):
                    ok = np.isfinite(stats[stat])
                    entry[f"smass_spearman_{stat}"] = float(spearmanr(truth[ok, 3], stats[stat][ok]).statistic)
            out[name] = entry
            ctx.log(f"conditional {name:12s} r2 z {entry['r2_z']:.3f}  metallicity {entry['r2_metallicity']:.3f}  "
                    f"age {entry['r2_age']:.3f}")
        return out, regressor

    @staticmethod
    def _summary(generate: dict[str, Any]) -> dict[str, Any]:
        methods = [m for m in generate if "c2st_auc_validation" in generate[m]]
        if not methods:
            return {"best": {"method": None, "chosen_by": f"none: fewer than {M.C2ST_MIN_SAMPLES} validation spectra "
                                                          "per C2ST pool"}}
        best = min(methods, key=lambda m: generate[m]["c2st_auc_validation"])
        entry = {"method": best, "c2st_auc": generate[best]["c2st_auc"],
                 "c2st_auc_err": generate[best]["c2st_auc_err"], "chosen_by": "validation c2st_auc"}
        if "pca_gauss" in generate:
            entry["c2st_auc_pca_gauss"] = generate["pca_gauss"]["c2st_auc"]
            entry["below_pca_gauss"] = bool(entry["c2st_auc"] < generate["pca_gauss"]["c2st_auc"])
        return {"best": entry}

    # --- figures ----------------------------------------------------------------------------------------------

    def _figures(self, ctx, results, prep, held, samples, histories) -> None:
        """Every figure: the loss curves, PCA's explained variance and held-out chi^2, mean and 16-84 % bands of
        real and generated spectra, conditional examples, and (rest frame) the summary statistics and BPT diagram.
        ``held``: the held-out real spectra (``ref``, ``other`` row indices) and ``cond_raw`` their conditions."""
        for name, history in histories.items():
            plots.loss_curves(history, name, ctx.figures / f"loss_{name}.png")
        self._pca_figure(ctx, results)
        self._bands_figure(ctx, results, prep, held.ref, samples["generate"])
        if samples["conditional"]:
            self._conditional_figure(ctx, prep, held.other, held.cond_raw, samples["conditional"])
        if prep.frame == "rest":
            self._statistics_figures(ctx, results, prep, held, samples["generate"])

    @staticmethod
    def _pca_figure(ctx, results) -> None:
        plt = plots.plt
        rec = results["reconstruct"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        ks = [int(k.removeprefix("k_")) for k in rec["pca"]["chi2_by_k"]]
        axes[0].plot(ks, list(rec["pca"]["explained_variance_by_k"].values()), "o-")
        axes[0].set_xlabel("PCA components k")
        axes[0].set_ylabel("explained variance (training spectra)")
        axes[1].plot(ks, list(rec["pca"]["chi2_by_k"].values()), "o-", label="PCA")
        if "vae" in rec:
            axes[1].plot([rec["pca"]["k"]], [rec["vae"]["chi2"]], "r*", ms=12, label=f"VAE ({rec['pca']['k']} latents)")
        axes[1].axhline(1, color="k", lw=0.7, ls=":")
        axes[1].set_xlabel("PCA components k / latent dimensions")
        axes[1].set_ylabel("held-out chi^2 per pixel")
        axes[1].set_yscale("log")
        axes[1].legend(fontsize=8)
        for ax in axes:
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "pca_explained_variance.png")

    @staticmethod
    def _bands_figure(ctx, results, prep, ref, gen) -> None:
        """Mean and 16-84 % bands, real (reference) vs each generator."""
        plt = plots.plt
        wave = prep.wavelength_aa
        unit = "rest" if prep.frame == "rest" else "observed"
        fig, axes = plt.subplots(len(gen), 1, figsize=(10, 2.4 * len(gen)), squeeze=False, sharex=True)
        for ax, (method, s) in zip(axes[:, 0], gen.items()):
            for flux, label, color in ((prep.flux[ref], "real (held out)", "k"), (s["test"], method, "C1")):
                lo, mid, hi = np.percentile(flux, [16, 50, 84], axis=0)
                ax.fill_between(wave, lo, hi, color=color, alpha=0.25, lw=0)
                ax.plot(wave, flux.mean(0), color=color, lw=0.7, label=f"{label}: mean, 16-84 %")
            ax.set_ylim(0, np.percentile(prep.flux[ref], 99.5) * 1.1)
            ax.set_ylabel("normalised flux")
            r = results["generate"][method]
            ax.set_title(f"{method}: c2st_auc {r['c2st_auc']:.3f}", fontsize=8)
            ax.legend(fontsize=7, loc="upper right")
        axes[-1, 0].set_xlabel(f"wavelength ({unit} frame, A)")
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "mean_and_bands.png")

    @staticmethod
    def _conditional_figure(ctx, prep, other, cond_raw, cond_gen) -> None:
        """Real vs generated spectra for the same conditions."""
        plt = plots.plt
        wave = prep.wavelength_aa
        unit = "rest" if prep.frame == "rest" else "observed"
        picks = np.argsort(cond_raw[other, 2])[np.linspace(0, len(other) - 1, 4).astype(int)]
        fig, axes = plt.subplots(len(picks), 1, figsize=(10, 2.3 * len(picks)), sharex=True)
        for ax, i in zip(np.atleast_1d(axes), picks):
            ax.plot(wave, prep.flux[other][i], color="k", lw=0.6, label="real")
            for j, (method, s) in enumerate(cond_gen.items()):
                ax.plot(wave, s["test"][i] + 0.6 * (j + 1), lw=0.6, color=f"C{j}",
                        label=f"{method} (+{0.6 * (j + 1):.1f})")
            z, lz, la, lm = cond_raw[other][i]
            ax.set_title(f"z {z:.3f}, Z {10**lz:.2f} Zsun, age {10**la / 1e9:.1f} Gyr, M* 10^{lm:.1f} Msun",
                         fontsize=8)
            ax.set_ylabel("normalised flux")
        np.atleast_1d(axes)[0].legend(fontsize=6, ncol=5, loc="upper right")
        np.atleast_1d(axes)[-1].set_xlabel(f"wavelength ({unit} frame, A)")
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "conditional_examples.png")

    @staticmethod
    def _statistics_figures(ctx, results, prep, held, gen) -> None:
        """The histograms of measure.STATISTICS and the BPT diagram, real vs generated (rest frame only)."""
        plt = plots.plt
        wave, ref, other = prep.wavelength_aa, held.ref, held.other
        stats_real = measure.summary_statistics(wave, prep.flux[ref], prep.ivar[ref])
        stats_gen = {m: measure.summary_statistics(wave, s["test"], prep.ivar[other]) for m, s in gen.items()}
        ranges = {**measure.RANGES, "ew_halpha": (-10.0, 150.0)}  # the histogram zooms on the bulk of EWs
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.3))
        for ax, stat in zip(axes, measure.STATISTICS):
            bins = np.linspace(*ranges[stat], 40)
            ax.hist(np.clip(stats_real[stat], *ranges[stat]), bins, color="k", histtype="stepfilled", alpha=0.25,
                    density=True, label="real (held out)")
            for j, (method, st) in enumerate(stats_gen.items()):
                w1 = results["generate"][method].get(f"w1_{stat}", np.nan)
                ax.hist(np.clip(st[stat], *ranges[stat]), bins, histtype="step", density=True, color=f"C{j}",
                        label=f"{method} (W1 {w1:.3g})")
            ax.set_xlabel(stat)
            ax.legend(fontsize=6)
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "summary_statistics.png")

        fig, axes = plt.subplots(1, len(stats_gen) + 1, figsize=(3.4 * (len(stats_gen) + 1), 3.4), sharey=True)
        x_demarc = np.linspace(-1.5, 0.0, 50)
        for ax, (label, st) in zip(axes, {"real (held out)": stats_real, **stats_gen}.items()):
            ax.scatter(st["line_ratio_nii_halpha"], st["line_ratio_oiii_hbeta"], s=3, alpha=0.5, rasterized=True)
            ax.plot(x_demarc, 0.61 / (x_demarc - 0.05) + 1.3, "k--", lw=0.8)  # Kauffmann et al. 2003
            ax.set_xlim(-1.5, 0.5)
            ax.set_ylim(-1.2, 1.2)
            ax.set_xlabel("log [N II] 6584 / H-alpha")
            ax.set_title(label, fontsize=8)
        axes[0].set_ylabel("log [O III] 5007 / H-beta")
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "bpt_diagram.png")

    # --- prediction -------------------------------------------------------------------------------------------

    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        """For every spectrum of an ``sdss_galaxy_spec.hdf5``-format file: z, metallicity and age re-measured by
        the run's regressor, and the chi^2 per pixel of its PCA reconstruction (k = the VAE's latent size), a
        simple outlier score (CSV)."""
        run_dir = Path(run_dir)
        if read_run_config(run_dir)["task"] != self.name:
            raise ConfigError(f"{run_dir} is not a spectra run")
        paths = [run_dir / "checkpoints" / name for name in ("regressor.pkl", "pca.pkl")]
        if not all(p.exists() for p in paths):
            raise DataFormatError(run_dir, "no fitted regressor or PCA under checkpoints/ (is the run finished?)")
        with open(paths[0], "rb") as f:
            saved = pickle.load(f)
        with open(paths[1], "rb") as f:
            basis = pickle.load(f)
        sf = read_spectra(data)
        rows = np.flatnonzero(quality_mask(sf, label_cuts=False))
        prep = prepare(sf, rows, saved["frame"])
        measured = saved["regressor"].predict(prep.flux)
        chi2 = chi2_per_pixel(prep.flux, basis.reconstruct(prep.flux, saved["k"]), prep.ivar)
        columns = {"row": rows, "z_file": sf.z[rows], "z_measured": measured[:, 0],
                   "metallicity_measured": 10 ** measured[:, 1], "age_yr_measured": 10 ** measured[:, 2],
                   "pca_chi2_per_pixel": chi2, "coverage": prep.coverage}
        return write_predictions(columns, out, {"z_file": ".5f", "z_measured": ".5f", "metallicity_measured": ".4g",
                                                "age_yr_measured": ".4g", "pca_chi2_per_pixel": ".4g",
                                                "coverage": ".3f"})
