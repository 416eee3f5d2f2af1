"""Experiments of the gan_latent task: can a GAN's latent space be interpreted, and can one be designed that is?
(docs/tasks/gan_latent.md)

``results.quality.<model>``: C2ST AUC of generated vs held-out real spectra, beside the controls real_vs_real and
real_vs_degraded. ``results.interpret.<model>`` (gan, infogan, vae: brute force on generated spectra; vae_encoder:
the encoder's means of real spectra against their true parameters): correlation and mutual-information matrices,
best_dim_r2, linear_r2, mig, sap, dci_*. ``results.control.<model>`` (cgan, infogan; real_spectra the
measurement's own reference): R^2 between input and re-measured parameter, and the off-diagonal leakage.
``results.summary.answers``: the numbers behind the two questions.
"""

from __future__ import annotations

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
from astrobench.core.training import load_module, predict_module
from astrobench.tasks.gan_latent import control as C
from astrobench.tasks.gan_latent.data import LABELS, available_parameters, downsample, parameter_table
from astrobench.tasks.gan_latent.interpret import interpret
from astrobench.tasks.gan_latent.models import GANS, MODELS, GANGenerator
from astrobench.tasks.spectra import (
    FRAMES,
    MIN_GALAXIES,
    SIMULATOR_VERSION,
    ParameterRegressor,
    SpectraBatch,
    SpectrumVAE,
    VAEGenerator,
    add_noise,
    prepare,
    quality_mask,
    read_for_run,
    read_spectra,
    spectra_simulation,
    split_indices,
    tilt,
)
from astrobench.tasks.spectra import simulate as simulate_spectra

TARGET = GOAL  # a goal this benchmark sets itself
INTERPRETED = ("gan", "infogan", "vae")  # brute force on generated spectra; vae_encoder is added when vae runs
CONTROLLED = ("cgan", "infogan")
DELTA = 0.5  # intervention half-step in standard deviations: of the training parameters (cgan), of the codes (infogan)


class GanData(NamedTuple):
    """A run's spectra (down-sampled): parameter ``names``, wavelengths ``wave`` [A], ``flux`` and ``ivar``
    (n, pixels), ``params`` (n, p) in physical units and ``cond`` standardised by the training split's mean and
    ``p_std``; the 70/10/20 split."""

    names: list[str]
    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    params: np.ndarray
    cond: np.ndarray
    p_std: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def batch(self, idx: np.ndarray, conditional: bool) -> SpectraBatch:
        """The spectra ``idx`` with their standardised parameters as conditions (none when not ``conditional``)."""
        return SpectraBatch(self.flux[idx], self.ivar[idx], self.cond[idx] if conditional else self.cond[idx, :0])

    @property
    def ref(self) -> np.ndarray:
        """The first half of the test rows: the real reference of every two-sample test."""
        return self.test[: len(self.test) // 2]

    @property
    def other(self) -> np.ndarray:
        """The second half of the test rows: the held-out galaxies whose noise and parameters the evaluation uses."""
        return self.test[len(self.test) // 2: 2 * (len(self.test) // 2)]


class GanLatentTask(Task):
    name = "gan_latent"
    summary = "Interpreting GAN latent spaces of galaxy spectra: WGAN-GP, VAE, conditional GAN, InfoGAN; MIG/SAP/DCI"
    n_unit = "galaxies (spectra)"
    bytes_per_object = 1.5e5  # 3 float32 spectra and their float64 noise draws
    count_options = ("n_galaxies",)
    min_objects = 260
    simulator_version = SIMULATOR_VERSION  # the spectra task's simulator: its files are this task's data
    anchors = {
        "control.cgan.r2_log_age_yr": {"value": ">= 0.9", "source": TARGET},
        "control.cgan.r2_log_metallicity": {"value": ">= 0.9", "source": TARGET},
        "interpret.infogan.mig": {"value": "above interpret.gan.mig (or an account of why not)", "source": TARGET},
        "interpret.*.mig": {"value": "0 (entangled) to 1 (each factor in one latent)",
                            "source": "Chen et al. 2018 (NeurIPS), MIG"},
        "interpret.*.dci_disentanglement": {"value": "0 to 1", "source": "Eastwood & Williams 2018 (ICLR), DCI"},
    }
    question = ("Can the latent space of a GAN trained on galaxy spectra be interpreted, and can one be designed "
                "(a conditional GAN, an InfoGAN) whose inputs control age and metallicity?")
    headlines = (
        Headline("quality", "c2st_auc", "C2ST AUC (0.5: indistinguishable)",
                 controls=("real_vs_real", "real_vs_degraded")),
        Headline("interpret", "mig", "MIG (Chen et al. 2018)", better="higher"),
        Headline("interpret", "dci_disentanglement", "DCI disentanglement", better="higher"),
        Headline("control", "r2_log_age_yr", "age control r2", better="higher", controls=("real_spectra",)),
        Headline("control", "r2_log_metallicity", "metallicity control r2", better="higher",
                 controls=("real_spectra",)),
    )
    quick_caveats = {"quality.gan": NOT_CONVERGED, "quality.vae": NOT_CONVERGED}
    figure_captions = {
        "latent_traversal_*": ("Latent traversal", "Spectra generated while one latent coordinate moves and the "
                               "others stay fixed."),
        "correlation_heatmaps": ("Latents against physical parameters", "Correlation of each latent coordinate with "
                                 "each parameter, per model."),
        "control_sensitivity": ("Control", "How each conditioning input moves each measured parameter."),
        "cgan_grid": ("Conditional GAN grid", "Spectra generated on a grid of age and metallicity."),
        "loss_*gan": ("Training curve", "Generator and critic losses per epoch."),
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(n_galaxies=200, gan_epochs=2, vae_epochs=2, patience=2, n_interpret=600),
            "quick": dict(n_galaxies=1500, gan_epochs=30, vae_epochs=30, patience=5, n_interpret=10000),
            "full": dict(n_galaxies=10000, gan_epochs=150, vae_epochs=150, patience=15, n_interpret=10000),
        }[size]
        return {
            **sizes,
            "frame": "rest",
            "min_coverage": 0.8,
            "downsample": 4,  # bins averaged: 1388 rest-frame bins of 138 km/s -> 347
            "parameters": None,  # None: every parameter the file has (data.ALL_PARAMETERS)
            "latent_dim": 8,  # inputs of every model: gan noise; infogan codes + noise; cgan parameters + noise
            "models": list(MODELS),
            "gan_lr": 5e-4,
            "n_critic": 2,
            "n_codes": None,  # infogan codes; None: every input is a code (with 4 of 8 the physics went to the noise)
            "info_weight": 5.0,
            "beta": 1.0,
            "batch_size": 64,
            "n_bins": 20,  # equal-frequency bins of MIG and the mutual-information matrix
            "n_jobs": 2,
            "max_galaxies": None,
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["frame"] not in FRAMES:
            raise bad_option(options, "frame", f"one of {FRAMES}")
        if options["n_galaxies"] < MIN_GALAXIES:
            raise bad_option(options, "n_galaxies", f"at least {MIN_GALAXIES}")
        for key in ("gan_epochs", "vae_epochs", "patience", "batch_size", "n_jobs", "downsample", "n_critic"):
            if not isinstance(options[key], int) or options[key] < 1:
                raise bad_option(options, key, "an integer >= 1")
        if not isinstance(options["latent_dim"], int) or options["latent_dim"] < 3:
            raise bad_option(options, "latent_dim", "an integer >= 3")
        if not isinstance(options["n_interpret"], int) or options["n_interpret"] < 200:
            raise bad_option(options, "n_interpret", "an integer >= 200")
        if not isinstance(options["n_bins"], int) or options["n_bins"] < 2:
            raise bad_option(options, "n_bins", "an integer >= 2")
        if not options["models"] or set(options["models"]) - set(MODELS):
            raise bad_option(options, "models", f"a non-empty list from {list(MODELS)}")
        if options["parameters"] is not None and (not isinstance(options["parameters"], list)
                                                  or len(options["parameters"]) < 2):
            raise bad_option(options, "parameters", "None or a list of at least two parameter names")
        if options["max_galaxies"] is not None and (not isinstance(options["max_galaxies"], int)
                                                    or options["max_galaxies"] < MIN_GALAXIES):
            raise bad_option(options, "max_galaxies", f"None or an integer >= {MIN_GALAXIES}")
        if not 0 < options["min_coverage"] <= 1:
            raise bad_option(options, "min_coverage", "in (0, 1]")
        for key in ("gan_lr", "info_weight", "beta"):
            if not options[key] > 0:
                raise bad_option(options, key, "> 0")
        if options["n_codes"] is not None and (not isinstance(options["n_codes"], int) or options["n_codes"] < 1):
            raise bad_option(options, "n_codes", "None or an integer >= 1")
        return options

    def simulate(self, out, n, seed=0, format=None, n_jobs: int = 2) -> Path:
        """The ``spectra`` task's simulator: an ``sdss_galaxy_spec.hdf5`` with dust and star-formation columns."""
        return simulate_spectra(out, n=n, seed=seed, format=format, n_jobs=n_jobs)

    # --- experiments ------------------------------------------------------------------------------------------

    def _parameters(self, sf, opts) -> list[str]:
        have = available_parameters(sf)
        names = opts["parameters"] or have
        missing = [p for p in names if p not in have]
        if missing:
            raise ConfigError(f"parameters {missing} are not in this file (it allows {have})")
        n_in = len(names) + 1
        if "cgan" in opts["models"] and opts["latent_dim"] < n_in:
            raise ConfigError(f"latent_dim {opts['latent_dim']} must be >= {n_in}: the cgan needs one input per "
                              f"parameter ({len(names)}) plus at least one noise input")
        if "infogan" in opts["models"] and not len(names) <= self._n_codes(opts) <= opts["latent_dim"]:
            raise ConfigError(f"n_codes {self._n_codes(opts)} must lie between the number of parameters "
                              f"({len(names)}: each is matched to a code) and latent_dim ({opts['latent_dim']})")
        return list(names)

    @staticmethod
    def _n_codes(opts) -> int:
        return opts["latent_dim"] if opts["n_codes"] is None else opts["n_codes"]

    # --- steps ------------------------------------------------------------------------------------------------

    def simulations(self, ctx: RunContext) -> dict[str, Simulation]:
        opts = ctx.options
        ctx.log(f"simulating {opts['n_galaxies']} bagpipes spectra (cached; shared with the spectra task)")
        return {"data": spectra_simulation(opts["n_galaxies"], ctx.seed, opts["n_jobs"], ctx.progress)}

    def read(self, ctx: RunContext, paths: Mapping[str, Path]) -> GanData:
        opts = ctx.options
        sf, prep = read_for_run(ctx, paths["data"])
        names = self._parameters(sf, opts)
        spec = downsample(prep, opts["downsample"])
        params = parameter_table(sf, prep.rows, names)
        train, val, test = split_indices(len(prep), ctx.seed)
        p_mean, p_std = params[train].mean(0), params[train].std(0) + 1e-12
        ctx.data_info.update(n_train=len(train), n_val=len(val), n_test=len(test), split="70/10/20 random",
                             n_pixels=len(spec.wavelength_aa), parameters=names, downsample=opts["downsample"])
        ctx.log(f"{len(prep)} spectra on {len(spec.wavelength_aa)} pixels (x{opts['downsample']} down-sampled); "
                f"parameters {', '.join(names)}; train {len(train)}, validation {len(val)}, test {len(test)}")
        return GanData(names, spec.wavelength_aa, spec.flux, spec.ivar, params,
                       ((params - p_mean) / p_std).astype(np.float32), p_std, train, val, test)

    def fit(self, ctx: RunContext, data: GanData) -> dict[str, Any]:
        """{"regressor": the parameter measurement (trained on real training spectra), "models": {name: fitted
        generative model}}."""
        opts = ctx.options
        train, val = data.train, data.val
        regressor = ParameterRegressor(ctx.seed, n_components=min(64, len(train) - 1, len(data.wave))).fit(
            data.flux[train], data.params[train])
        write_pickle_atomic(ctx.run_dir / "checkpoints" / "regressor.pkl",
                            {"regressor": regressor, "parameters": data.names, "downsample": opts["downsample"],
                             "frame": opts["frame"], "latent_dim": opts["latent_dim"]})
        models = {}
        for name in sorted(opts["models"], key=MODELS.index):
            ctx.seed_model("model", name)
            conditional = name == "cgan"
            if name == "vae":
                model = VAEGenerator("vae", opts["latent_dim"], beta=opts["beta"])
                epochs = opts["vae_epochs"]
            else:
                model = GANGenerator(name, opts["latent_dim"], n_codes=self._n_codes(opts) if name == "infogan" else 0,
                                     n_critic=opts["n_critic"], lr=opts["gan_lr"], info_weight=opts["info_weight"])
                epochs = opts["gan_epochs"]
            model.fit(data.batch(train, conditional), data.batch(val, conditional), ctx.checkpoint_dir("model", name),
                      ctx.train_config(max_epochs=epochs, batch_size=opts["batch_size"]), ctx.resume)
            models[name] = model
            ctx.log(f"{name:8s} fitted ({len(model.history_['epoch'])} epochs)")
        return {"regressor": regressor, "models": models}

    def evaluate(self, ctx: RunContext, data: GanData, models: dict[str, Any]) -> Evaluation:
        """Quality (C2ST), interpretability of the latent spaces and control through conditions or codes, each with
        the parameters re-measured by the regressor; ``summary.answers`` says what they mean."""
        measure, generators = models["regressor"].predict, models["models"]
        results: dict[str, Any] = {}
        results["quality"] = self._quality(ctx, generators, data.cond, data.flux, data.ivar, data.wave, data.ref,
                                           data.other)
        results["interpret"], latent_samples = self._interpret(ctx, generators, data.names, measure, data.flux,
                                                               data.params, data.test)
        results["control"] = self._control(ctx, generators, data, measure)
        results["summary"] = self._summary(results, data.names)
        return Evaluation(results, {"latent_samples": latent_samples})

    def figures(self, ctx: RunContext, data: GanData, models: dict[str, Any], evaluation: Evaluation) -> None:
        generators = models["models"]
        self._figures(ctx, evaluation.results, generators, data, models["regressor"].predict,
                      {name: model.history_ for name, model in generators.items()},
                      evaluation.outputs["latent_samples"])

    def _quality(self, ctx, models, cond, flux, ivar, wave, ref, other) -> dict[str, Any]:
        """C2ST of each model's spectra (with the noise of the ``other`` galaxies; the cgan for their parameters)
        against the reference half of the test split."""
        rng = np.random.default_rng([ctx.seed, 17])
        generated = {}
        for name, model in models.items():
            c = cond[other] if name == "cgan" else cond[other, :0]
            generated[name] = add_noise(model.sample(len(other), c, ctx.seed), ivar[other], rng)
        ctx.log(f"C2ST: {len(ref)} reference vs {len(other)} spectra per model, {len(generated)} models + 2 controls")
        out = M.c2st_with_controls(flux[ref], flux[other], generated, tilt(wave), seed=ctx.seed)
        for name, entry in out.items():
            ctx.log(f"quality {name:16s} c2st_auc {entry['c2st_auc']:.3f} +- {entry['c2st_auc_err']:.3f}")
        return out

    def _latents(self, name, model, n, seed) -> tuple[np.ndarray, np.ndarray]:
        """``n`` latent draws of an unconditional model and the noiseless spectra made from them."""
        if name == "vae":
            z = np.random.default_rng([seed, 31]).standard_normal((n, model.latent_dim)).astype(np.float32)
        else:
            z = model.draw_inputs(n, seed)
        return z, model.decode(z, np.zeros((n, 0), np.float32))

    def _interpret(self, ctx, models, names, measure, flux, params, test):
        out, samples = {}, {}
        for name in INTERPRETED:
            if name not in models:
                continue
            z, spectra = self._latents(name, models[name], ctx.options["n_interpret"], ctx.seed)
            measured = measure(spectra)
            samples[name] = (z, measured)
            out[name] = interpret(z, measured, names, seed=ctx.seed, n_bins=ctx.options["n_bins"])
            out[name]["factors"] = "parameters re-measured on the generated spectra"
        if "vae" in models:
            vae = models["vae"]
            z = vae.encode(SpectraBatch(flux[test], np.ones_like(flux[test]), np.zeros((len(test), 0), np.float32)))
            samples["vae_encoder"] = (z, params[test])
            out["vae_encoder"] = interpret(z, params[test], names, seed=ctx.seed, n_bins=ctx.options["n_bins"])
            out["vae_encoder"]["factors"] = "true parameters of the real test spectra (encoder means as latents)"
        for name, entry in out.items():
            ctx.log(f"interpret {name:11s} mig {entry['mig']:.3f}  sap {entry['sap']:.3f}  dci D "
                    f"{entry['dci_disentanglement']:.3f} C {entry['dci_completeness']:.3f}  best_dim_r2 "
                    + " ".join(f"{v:.2f}" for v in entry["best_dim_r2"].values()))
        return out, samples

    def _control(self, ctx, models, data: GanData, measure) -> dict[str, Any]:
        """How well each parameter can be set: the measurement's own reference on real spectra, the cgan through its
        conditions, the infogan through its matched codes; R^2 and the off-diagonal leakage of each."""
        out: dict[str, Any] = {"real_spectra": self._control_real(ctx, data, measure)}
        if "cgan" in models:
            out["cgan"] = self._control_cgan(ctx, models["cgan"], data, measure)
        if "infogan" in models:
            out["infogan"] = self._control_infogan(ctx, models["infogan"], data, measure)
        for name, entry in out.items():
            ctx.log(f"control {name:12s} " + "  ".join(f"r2 {p} {entry[f'r2_{p}']:.3f}" for p in data.names)
                    + f"  leakage {entry['offdiag_leakage']:.2f}")
        return out

    def _control_real(self, ctx, data: GanData, measure) -> dict[str, Any]:
        truth, measured = data.params[data.other], measure(data.flux[data.other])
        entry = {}
        for j, p in enumerate(data.names):
            entry.update(M.with_error(f"r2_{p}", M.r2, truth[:, j], measured[:, j], seed=ctx.seed))
        s = C.regression_sensitivity(truth, measured, data.p_std)
        entry.update(self._leakage_entry(s, data.names, "regression of re-measured on true parameters (real spectra)"))
        entry["r2_definition"] = "1 - SSE/SST of the re-measured against the true parameter"
        return entry

    def _control_cgan(self, ctx, gan, data: GanData, measure) -> dict[str, Any]:
        seed, names, cond, other = ctx.seed, data.names, data.cond, data.other
        truth = data.params[other]
        inputs = gan.draw_inputs(len(other), seed)
        rng = np.random.default_rng([seed, 37])
        generated = gan.decode(inputs, cond[other])
        measured = measure(generated)
        noisy = measure(add_noise(generated, data.ivar[other], rng))
        entry = {}
        for j, p in enumerate(names):
            entry.update(M.with_error(f"r2_{p}", M.r2, truth[:, j], measured[:, j], seed=seed))
            entry[f"r2_{p}_with_noise"] = M.r2(truth[:, j], noisy[:, j])
        s = C.intervention_sensitivity(lambda c: measure(gan.decode(inputs, c.astype(np.float32))), cond[other],
                                       DELTA, 1.0, data.p_std)
        entry.update(self._leakage_entry(s, names, f"intervention: one condition moved by +-{DELTA} sd"))
        entry["r2_definition"] = "1 - SSE/SST of the re-measured parameter against the condition"
        return entry

    def _control_infogan(self, ctx, gan, data: GanData, measure) -> dict[str, Any]:
        seed, names = ctx.seed, data.names
        n_codes = gan.module_.n_codes
        inputs = gan.draw_inputs(ctx.options["n_interpret"], seed + 1)
        measured = measure(gan.decode(inputs, np.zeros((len(inputs), 0), np.float32)))
        codes = inputs[:, :n_codes]
        assigned = C.assign_codes(codes, measured)
        entry = {f"code_for_{p}": int(assigned[j]) for j, p in enumerate(names)}
        entry["r2_definition"] = ("squared correlation of the matched code with the re-measured parameter (codes "
                                  "have no physical scale)")
        for j, p in enumerate(names):
            entry.update(M.with_error(f"r2_{p}", C.squared_correlation, codes[:, assigned[j]], measured[:, j],
                                      seed=seed))
        # intervention on codes inside (-0.5, 0.5), so +-0.5 x (code sd) stays in the prior's support;
        # sensitivity rows of the codes matched to the parameters
        base = inputs[:2000].copy()
        base[:, :n_codes] *= 0.5
        code_sd = 1 / np.sqrt(3)

        def measure_codes(c):
            x = base.copy()
            x[:, :n_codes] = c
            return measure(gan.decode(x, np.zeros((len(x), 0), np.float32)))

        s_codes = C.intervention_sensitivity(measure_codes, base[:, :n_codes], DELTA * code_sd, code_sd, data.p_std)
        entry.update(self._leakage_entry(s_codes[assigned], names,
                                         f"intervention: one code moved by +-{DELTA} sd; codes matched to "
                                         "parameters by the Hungarian assignment on R^2"))
        return entry

    @staticmethod
    def _leakage_entry(s: np.ndarray, names: list[str], how: str) -> dict[str, Any]:
        per_input, overall = C.leakage(s)
        return {"sensitivity_matrix": {p: [float(v) for v in s[j]] for j, p in enumerate(names)},
                "leakage_by_param": {p: float(per_input[j]) for j, p in enumerate(names)},
                "offdiag_leakage": overall, "sensitivity": how}

    @staticmethod
    def _summary(results, names) -> dict[str, Any]:
        interp, control = results["interpret"], results["control"]
        answers: dict[str, Any] = {}
        if "gan" in interp:
            answers["gan_best_dim_r2_mean"] = float(np.mean(list(interp["gan"]["best_dim_r2"].values())))
            answers["gan_linear_r2_mean"] = float(np.mean(list(interp["gan"]["linear_r2"].values())))
        if "gan" in interp and "infogan" in interp:
            answers["infogan_mig_minus_gan_mig"] = interp["infogan"]["mig"] - interp["gan"]["mig"]
            answers["infogan_mig_above_gan"] = bool(interp["infogan"]["mig"] > interp["gan"]["mig"])
        key = [p for p in ("log_age_yr", "log_metallicity") if p in names]
        if "cgan" in control and key:
            answers["cgan_control_r2_min_age_metallicity"] = min(control["cgan"][f"r2_{p}"] for p in key)
            answers["cgan_control_target_met"] = bool(answers["cgan_control_r2_min_age_metallicity"] >= 0.9)
        return {"answers": {**answers, **GanLatentTask._in_words(interp, control, names)}}

    @staticmethod
    def _in_words(interp, control, names) -> dict[str, str]:
        """The hack's two questions answered in sentences built from this run's numbers."""
        words = {}
        if "gan" in interp:
            g = interp["gan"]
            best = max(names, key=lambda p: g["best_dim_r2"][p])
            if min(g["best_dim_r2"].values()) >= 0.8:
                verdict = "Yes, dimension by dimension"
            elif min(g["linear_r2"].values()) >= 0.8:
                verdict = "Through directions, not single dimensions"
            else:
                verdict = "Only partly"
            words["q1_can_a_gan_latent_space_be_interpreted"] = (
                f"{verdict}. The best single latent dimension of the GAN explains R^2 "
                f"{min(g['best_dim_r2'].values()):.2f}-{max(g['best_dim_r2'].values()):.2f} of a re-measured "
                f"parameter (most: {best}, dimension {g['best_dim'][best]}); a linear direction in the whole latent "
                f"space explains {min(g['linear_r2'].values()):.2f}-{max(g['linear_r2'].values()):.2f}. The parameters "
                f"are spread over dimensions: mig {g['mig']:.3f}, dci_disentanglement {g['dci_disentanglement']:.2f}.")
        parts = []
        if "cgan" in control:
            c, ref = control["cgan"], control["real_spectra"]
            parts.append("the cGAN's conditions control the re-measured parameters with R^2 "
                         + ", ".join(f"{p} {c[f'r2_{p}']:.2f}" for p in names)
                         + " (real spectra measured by the same regressor: "
                         + ", ".join(f"{ref[f'r2_{p}']:.2f}" for p in names)
                         + f"), with off-diagonal leakage {c['offdiag_leakage']:.2f} against the measurement's own "
                         f"{ref['offdiag_leakage']:.2f}")
        if "infogan" in interp and "gan" in interp:
            i, g = interp["infogan"], interp["gan"]
            parts.append(f"InfoGAN codes give mig {i['mig']:.3f} against the GAN's {g['mig']:.3f} "
                         f"({'higher' if i['mig'] > g['mig'] else 'not higher'})")
        if parts:
            words["q2_can_one_be_designed_that_is"] = "By design: " + "; ".join(parts) + "."
        return words

    # --- figures ----------------------------------------------------------------------------------------------

    def _figures(self, ctx, results, models, data: GanData, measure, histories, latent_samples) -> None:
        names, wave, p_std = data.names, data.wave, data.p_std
        plt = plots.plt
        for name, history in histories.items():
            plots.loss_curves(history, f"{name} ({'critic W1 estimate' if name in GANS else 'loss per pixel'})",
                              ctx.figures / f"loss_{name}.png")
        labels = [LABELS[p] for p in names]

        # correlation and mutual information, latent dimensions x parameters, one column per model
        interp = results["interpret"]
        if interp:
            fig, axes = plt.subplots(2, len(interp), figsize=(2.2 + 1.1 * len(names) * len(interp), 7.5),
                                     squeeze=False)
            for col, (name, entry) in enumerate(interp.items()):
                for row, (key, cmap, vmin, vmax) in enumerate((("correlation_matrix", "RdBu_r", -1, 1),
                                                               ("mi_matrix", "viridis", 0, None))):
                    m = np.array([entry[key][p] for p in names]).T
                    ax = axes[row, col]
                    ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax if vmax else max(m.max(), 1e-3), aspect="auto")
                    for (i, k), v in np.ndenumerate(m):
                        ax.text(k, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
                    ax.set_xticks(range(len(names)), labels, rotation=35, ha="right", fontsize=7)
                    ax.set_yticks(range(m.shape[0]))
                    ax.set_ylabel("latent dimension" + (" (codes first)" if name == "infogan" else ""))
                    ax.set_title(f"{name}: {'correlation' if row == 0 else 'MI (nats)'}\nmig {entry['mig']:.2f}, "
                                 f"dci D {entry['dci_disentanglement']:.2f}", fontsize=8)
            fig.tight_layout()
            plots.save_figure(fig, ctx.figures / "correlation_heatmaps.png")

        for name in INTERPRETED:
            if name in models:
                self._traversal(ctx, name, models[name], interp[name], names, measure, wave, p_std)
        if "cgan" in models and {"log_age_yr", "log_metallicity"} <= set(names):
            self._cgan_grid(ctx, models["cgan"], data)
        self._control_figure(ctx, results["control"], names)

    def _traversal(self, ctx, name, model, entry, names, measure, wave, p_std) -> None:
        """Each parameter's best latent dimension swept (others fixed): one draw's spectra, and the re-measured
        parameters averaged over 200 draws."""
        plt = plots.plt
        dims = list(dict.fromkeys(entry["best_dim"][p] for p in names))
        n_codes = model.module_.n_codes if name == "infogan" else 0
        base, _ = self._latents(name, model, 200, ctx.seed + 5)
        fig, axes = plt.subplots(len(dims), 2, figsize=(12, 2.6 * len(dims)), squeeze=False,
                                 gridspec_kw={"width_ratios": [2.2, 1]})
        colors = plt.cm.viridis(np.linspace(0, 1, 9))
        empty = np.zeros((len(base), 0), np.float32)
        for row, d in enumerate(dims):
            span = (-1.0, 1.0) if d < n_codes else (-2.0, 2.0)  # codes ~ U(-1, 1), noise ~ N(0, 1)
            values = np.linspace(*span, len(colors))
            means = []
            for v, color in zip(values, colors):
                z = base.copy()
                z[:, d] = v
                spectra = model.decode(z, empty)
                means.append(measure(spectra).mean(0))
                axes[row, 0].plot(wave, spectra[0], color=color, lw=0.6)
            means = (np.array(means) - np.array(means)[len(values) // 2]) / p_std
            for k, p in enumerate(names):
                axes[row, 1].plot(values, means[:, k], "o-", ms=3, label=LABELS[p])
            best_for = [p for p in names if entry["best_dim"][p] == d]
            axes[row, 0].set_title(f"{name}: latent {d} swept {span[0]:+.0f} to {span[1]:+.0f} (best dimension for "
                                   f"{', '.join(best_for)})", fontsize=8)
            axes[row, 0].set_ylabel("normalised flux")
            axes[row, 1].set_ylabel("change of re-measured\nparameter (training sd)", fontsize=8)
            axes[row, 1].axhline(0, color="k", lw=0.5)
            axes[row, 1].grid(alpha=0.3)
        axes[0, 1].legend(fontsize=7)
        axes[-1, 0].set_xlabel("rest wavelength (A)")
        axes[-1, 1].set_xlabel("latent value")
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / f"latent_traversal_{name}.png")

    def _cgan_grid(self, ctx, gan, data: GanData) -> None:
        """A 3 x 3 grid of ages x metallicities: the held-out galaxy nearest each grid point (simulated or real)
        beside the cGAN's spectrum for that galaxy's parameters."""
        names, wave, flux, params, cond, p_std, other = (data.names, data.wave, data.flux, data.params, data.cond,
                                                         data.p_std, data.other)
        plt = plots.plt
        ia, iz = names.index("log_age_yr"), names.index("log_metallicity")
        qs = (0.15, 0.5, 0.85)
        ages, metals = np.quantile(params[other, ia], qs), np.quantile(params[other, iz], qs)
        fig, axes = plt.subplots(3, 3, figsize=(14, 8), sharex=True, sharey=True)
        rng = np.random.default_rng([ctx.seed, 41])
        inputs = gan.draw_inputs(1, ctx.seed)
        for r, a in enumerate(ages[::-1]):
            for c, zm in enumerate(metals):
                dist = ((params[other, ia] - a) / p_std[ia]) ** 2 + ((params[other, iz] - zm) / p_std[iz]) ** 2
                i = other[np.argmin(dist + 1e-9 * rng.random(len(dist)))]
                made = gan.decode(inputs, cond[i:i + 1])[0]
                ax = axes[r, c]
                ax.plot(wave, flux[i], color="0.5", lw=0.6, label="held-out galaxy")
                ax.plot(wave, made, color="C3", lw=0.8, label="cGAN, same parameters")
                ax.set_title(", ".join(f"{LABELS[p].split(' (')[0]} {params[i, k]:.2f}" for k, p in enumerate(names)),
                             fontsize=7)
        for ax in axes[-1]:
            ax.set_xlabel("rest wavelength (A)")
        for ax in axes[:, 0]:
            ax.set_ylabel("normalised flux")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle("rows: age (old to young); columns: metallicity (low to high)", fontsize=9)
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "cgan_grid.png")

    def _control_figure(self, ctx, control, names) -> None:
        plt = plots.plt
        if not control:
            return
        fig, axes = plt.subplots(1, len(control), figsize=(3.3 * len(control), 3.3), squeeze=False)
        labels = [LABELS[p].split(" (")[0] for p in names]
        for ax, (name, entry) in zip(axes[0], control.items()):
            s = np.array([entry["sensitivity_matrix"][p] for p in names])
            lim = max(np.abs(s).max(), 1e-3)
            ax.imshow(s, cmap="RdBu_r", vmin=-lim, vmax=lim)
            for (j, k), v in np.ndenumerate(s):
                ax.text(k, j, f"{v:.2f}", ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(names)), labels, rotation=35, ha="right", fontsize=7)
            ax.set_yticks(range(len(names)), labels, fontsize=7)
            ax.set_xlabel("re-measured parameter")
            ax.set_ylabel("input moved" if name != "real_spectra" else "true parameter")
            ax.set_title(f"{name}: leakage {entry['offdiag_leakage']:.2f}", fontsize=8)
        fig.tight_layout()
        plots.save_figure(fig, ctx.figures / "control_sensitivity.png")

    # --- prediction -------------------------------------------------------------------------------------------

    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        """For every spectrum of an ``sdss_galaxy_spec.hdf5``-format file: the parameters the run's regressor
        measures, and the VAE encoder's latent means (when the run trained a vae) (CSV)."""
        run_dir = Path(run_dir)
        if read_run_config(run_dir)["task"] != self.name:
            raise ConfigError(f"{run_dir} is not a gan_latent run")
        path = run_dir / "checkpoints" / "regressor.pkl"
        if not path.exists():
            raise DataFormatError(run_dir, "no fitted regressor under checkpoints/ (is the run finished?)")
        with open(path, "rb") as f:
            saved = pickle.load(f)
        sf = read_spectra(data)
        rows = np.flatnonzero(quality_mask(sf, label_cuts=False))
        if not len(rows):
            raise DataFormatError(sf.path, "no spectrum has a positive flux in the normalisation window 5300-5800 A")
        spec = downsample(prepare(sf, rows, saved["frame"]), saved["downsample"])
        measured = saved["regressor"].predict(spec.flux)
        vae_path = run_dir / "checkpoints" / "model.vae" / "model.pt"
        latents = None
        if vae_path.exists():
            vae = load_module(SpectrumVAE, vae_path.parent)  # architecture and weights from its checkpoint
            if vae.hparams.n_wave != spec.flux.shape[1]:
                raise DataFormatError(data, f"{spec.flux.shape[1]} pixels after the run's down-sampling; its VAE "
                                            f"takes {vae.hparams.n_wave}")
            latents = predict_module(vae, spec.flux, lambda m, t: m.encode(t, t[:, :0])[0])
        columns = {"row": rows, **{f"{p}_measured": measured[:, j] for j, p in enumerate(saved["parameters"])}}
        if latents is not None:
            columns.update({f"vae_z{j}": latents[:, j] for j in range(latents.shape[1])})
        return write_predictions(columns, out, ".4f")
