"""gan_latent: disentanglement scores and control measures with known answers, the down-sampling, the WGAN-GP
family on a toy problem with a known relation and its resumption, and a smoke run with predict."""

from __future__ import annotations

import csv
import importlib
import json

import h5py
import numpy as np
import pytest
import torch

from astrobench.core.io import ConfigError
from astrobench.core.training import TrainConfig
from astrobench.tasks.gan_latent import control as C
from astrobench.tasks.gan_latent import data as D
from astrobench.tasks.gan_latent.models import GANGenerator, SpectrumWGAN
from astrobench.tasks.spectra.data import Prepared, read_spectra
from astrobench.tasks.spectra.models import SpectraBatch

Ip = importlib.import_module("astrobench.tasks.gan_latent.interpret")  # the package exports the function


# --- interpretation scores ------------------------------------------------------------------------------------

def _factors(n=4000, k=3, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, k))


def test_discretize_makes_equal_frequency_bins_and_keeps_ties_together():
    x = np.random.default_rng(1).normal(size=(2000, 2))
    bins = Ip.discretize(x, 20)
    for j in range(2):
        counts = np.bincount(bins[:, j])
        assert len(counts) == 20 and counts.min() >= 99 and counts.max() <= 101
    piled = np.r_[np.full(1000, -12.0), np.linspace(-11, -9, 1000)]  # a floor value: half the sample
    b = Ip.discretize(piled, 20)[:, 0]
    assert len(np.unique(b[:1000])) == 1 and len(np.unique(b)) == 11
    assert Ip.entropy(Ip.discretize(x[:, 0], 20)[:, 0]) == pytest.approx(np.log(20), abs=1e-3)


def test_aligned_latents_score_as_disentangled_and_rotated_ones_do_not():
    f = _factors(k=2)
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(len(f), 2))
    aligned = np.column_stack([f + 0.01 * rng.normal(size=f.shape), noise])
    rotated = np.column_stack([(f[:, 0] + f[:, 1]) / np.sqrt(2), (f[:, 0] - f[:, 1]) / np.sqrt(2), noise])  # 45 deg

    good = Ip.interpret(aligned, f, ["a", "b"])
    bad = Ip.interpret(rotated, f, ["a", "b"])
    assert good["mig"] > 0.8 and bad["mig"] < 0.1
    assert good["sap"] > 0.95 and bad["sap"] < 0.05
    assert good["dci_disentanglement"] > 0.9 and bad["dci_disentanglement"] < 0.3
    assert good["dci_completeness"] > 0.9 and bad["dci_completeness"] < 0.7
    for out in (good, bad):  # the whole latent vector carries every factor, linearly
        assert min(out["linear_r2"].values()) > 0.98 and out["dci_informativeness"] > 0.95
    assert good["best_dim"] == {"a": 0, "b": 1}
    assert min(good["best_dim_r2"].values()) > 0.98 and max(bad["best_dim_r2"].values()) < 0.6
    # MI of a factor with its own copy is about its entropy (20 equal bins: log 20); with pure noise about 0
    mi = np.array([good["mi_matrix"][p] for p in "ab"]).T
    assert np.diag(mi).min() > 0.8 * np.log(20) and mi[2:].max() < 0.07  # (bins - 1)^2 / 2n: the finite-sample bias


def test_scores_do_not_depend_on_the_order_of_latent_dimensions():
    f = _factors(3000, 2, seed=3)
    rng = np.random.default_rng(4)
    z = np.column_stack([f[:, 0] + 0.3 * f[:, 1], f[:, 1] ** 3, rng.normal(size=len(f))])
    a = Ip.interpret(z, f, ["a", "b"])
    b = Ip.interpret(z[:, [2, 0, 1]], f, ["a", "b"])
    assert a["dci_disentanglement"] == pytest.approx(b["dci_disentanglement"], abs=0.05)
    assert a["dci_completeness"] == pytest.approx(b["dci_completeness"], abs=0.05)
    assert b["best_dim"] == {"a": 1, "b": 2}  # the permuted columns
    with pytest.raises(ValueError, match="at least two latent"):
        Ip.mig(f[:, :1], f)


# --- control ------------------------------------------------------------------------------------------------

def test_sensitivities_and_leakage_have_known_answers():
    a = np.array([[1.0, 0.2, 0.0], [0.0, -2.0, 0.5], [0.1, 0.0, 1.0]])
    scale = np.array([1.0, 2.0, 0.5])
    s = C.intervention_sensitivity(lambda u: u @ a * scale, np.zeros((5, 3)), 0.3, 1.0, scale)
    assert np.allclose(s, a)
    # inputs with their own scale (InfoGAN codes: sd 1/sqrt 3): the slope per input sd
    s = C.intervention_sensitivity(lambda u: u @ a * scale, np.zeros((5, 3)), 0.1, 0.5, scale)
    assert np.allclose(s, 0.5 * a)
    truth = np.random.default_rng(0).normal(size=(500, 3)) * scale
    assert np.allclose(C.regression_sensitivity(truth, truth @ a, scale), np.diag(scale) @ a @ np.diag(1 / scale))
    per_input, overall = C.leakage(a)
    assert np.allclose(per_input, [0.2, 0.25, 0.1])
    assert overall == pytest.approx(0.8 / 4.0)
    assert C.leakage(np.diag([1.0, 3.0]))[1] == 0.0


def test_code_assignment_recovers_a_permutation():
    codes = np.random.default_rng(5).uniform(-1, 1, (1000, 3))
    measured = np.column_stack([codes[:, 2], -codes[:, 0] + 0.1 * codes[:, 1], codes[:, 1] ** 3])
    assert list(C.assign_codes(codes, measured)) == [2, 0, 1]


# --- data ---------------------------------------------------------------------------------------------------

def test_downsample_weights_by_inverse_variance_and_fills_gaps():
    wave = np.arange(10, dtype=float) + 4000
    flux = np.array([[1, 3, 5, 5, 2, 2, 9, 9, 1, 1]], float)
    ivar = np.array([[1, 3, 1, 1, 0, 0, 1, 1, 1, 1]], float)
    out = D.downsample(Prepared(wave, flux, ivar, np.ones(1), np.arange(1), "rest"), 2)
    assert np.allclose(out.wavelength_aa, [4000.5, 4002.5, 4004.5, 4006.5, 4008.5])
    assert np.allclose(out.ivar[0], [4, 2, 0, 2, 2])
    assert np.allclose(out.flux[0], [2.5, 5, 7, 9, 1])  # the empty bin interpolated between its neighbours
    assert D.downsample(Prepared(wave, flux, ivar, np.ones(1), np.arange(1), "rest"), 3).flux.shape == (1, 3)


@pytest.fixture(scope="module")
def sim_file(spectra_smoke_file):
    """480 spectra (the spectra tests' 120 bagpipes models four times over, fresh noise)."""
    return spectra_smoke_file


def test_parameters_follow_the_file(sim_file, tmp_path):
    sf = read_spectra(sim_file)
    assert D.available_parameters(sf) == list(D.ALL_PARAMETERS)
    p = D.parameter_table(sf, np.arange(len(sf)), D.available_parameters(sf))
    assert np.allclose(p[:, 0], np.log10(sf.age_yr)) and p[:, 3].min() >= D.LOG_SSFR_FLOOR
    # the school's real file has no dust or star-formation columns
    real = tmp_path / "real.hdf5"
    with h5py.File(sim_file, "r") as f, h5py.File(real, "w") as g:
        for k in ("z", "age", "metallicity", "smass", "wavelength", "spec", "specerr"):
            g.create_dataset(f"raw/{k}", data=f["raw"][k][()])
    assert D.available_parameters(read_spectra(real)) == ["log_age_yr", "log_metallicity"]


# --- the GANs -----------------------------------------------------------------------------------------------

def test_wgan_rejects_inconsistent_inputs():
    with pytest.raises(ValueError, match="only a cgan"):
        SpectrumWGAN("gan", 20, 4, n_cond=2)
    with pytest.raises(ValueError, match="n_codes"):
        SpectrumWGAN("infogan", 20, 4, n_codes=5)
    with pytest.raises(ValueError, match="no noise"):
        SpectrumWGAN("cgan", 20, 3, n_cond=3)


def test_conditional_wgan_learns_a_known_relation(tmp_path):
    """Toy spectra: a continuum whose slope is the condition, plus an independent line strength and noise.
    After a short training the cGAN's slope follows the condition it is given."""
    rng = np.random.default_rng(0)
    n, x = 1500, np.linspace(-1, 1, 24)
    slope, line = rng.uniform(-1, 1, n), rng.uniform(0, 1, n)
    clean = 1 + 0.5 * slope[:, None] * x + line[:, None] * np.exp(-0.5 * (x / 0.1) ** 2)
    ivar = np.full(clean.shape, 400.0)
    flux = (clean + rng.normal(0, 0.05, clean.shape)).astype(np.float32)
    cond = ((slope - slope.mean()) / slope.std())[:, None].astype(np.float32)
    batch = lambda s: SpectraBatch(flux[s], ivar[s].astype(np.float32), cond[s])  # noqa: E731
    torch.manual_seed(0)
    gan = GANGenerator("cgan", latent_dim=3, n_critic=2, lr=1e-3)
    cfg = TrainConfig(max_epochs=40, batch_size=64, seed=0, accelerator="cpu", devices=1, progress=False)
    gan.fit(batch(slice(0, 1200)), batch(slice(1200, None)), tmp_path / "cgan", cfg)
    assert len(gan.history_["epoch"]) == 40  # no early stopping for a GAN
    made = gan.sample(300, cond[1200:], seed=1)
    fitted_slope = np.polyfit(x, (made - 1).T, 1)[0] / 0.5
    assert np.corrcoef(fitted_slope, slope[1200:])[0, 1] ** 2 > 0.8
    assert made.shape == (300, 24) and np.isfinite(made).all()


class _InterruptError(RuntimeError):
    pass


class _StopsAfterTwoEpochs(SpectrumWGAN):
    def on_train_epoch_end(self):
        if self.current_epoch == 1:
            raise _InterruptError


def test_an_interrupted_gan_resumes_from_its_last_epoch(tmp_path):
    from astrobench.core.training import as_dataset, fit

    rng = np.random.default_rng(0)
    data = as_dataset(rng.normal(size=(256, 12)), np.full((256, 12), 0.1), np.zeros((256, 0)))
    cfg = TrainConfig(max_epochs=4, batch_size=64, seed=0, accelerator="cpu", devices=1, progress=False)
    with pytest.raises(_InterruptError):
        fit(_StopsAfterTwoEpochs("gan", 12, 3), data, data, tmp_path, cfg, select_best=False)
    assert (tmp_path / "last.ckpt").exists() and not (tmp_path / "model.pt").exists()
    result = fit(SpectrumWGAN("gan", 12, 3), data, data, tmp_path, cfg, resume=True, select_best=False)
    # only epochs 2 and 3 were trained again; the curve before them comes from the checkpoint
    assert result.resumed and result.history["epoch"][-2:] == [2, 3] and result.history["epoch"][0] == 0


# --- a run --------------------------------------------------------------------------------------------------

def test_smoke_run_and_predict(sim_file, tmp_path):
    from astrobench.registry import get_task
    from astrobench.runner import run

    run_dir = run("gan_latent", data=sim_file, out=tmp_path, name="smoke", seed=1,
                  overrides={"size": "smoke", "min_coverage": 0.5})
    res = json.loads((run_dir / "metrics.json").read_text())["results"]
    names = list(D.ALL_PARAMETERS)
    assert set(res["quality"]) == {"real_vs_real", "real_vs_degraded", "gan", "vae", "cgan", "infogan"}
    assert all(0 <= v["c2st_auc"] <= 1 for v in res["quality"].values())
    assert set(res["interpret"]) == {"gan", "infogan", "vae", "vae_encoder"}
    for entry in res["interpret"].values():
        assert 0 <= entry["mig"] <= 1 and 0 <= entry["sap"] <= 1
        assert 0 <= entry["dci_disentanglement"] <= 1 + 1e-9 and 0 <= entry["dci_completeness"] <= 1 + 1e-9
        assert set(entry["best_dim_r2"]) == set(names) and len(entry["correlation_matrix"]["log_age_yr"]) == 8
    assert res["interpret"]["gan"]["n_samples"] == 600
    for name in ("real_spectra", "cgan", "infogan"):
        assert set(names) <= set(res["control"][name]["leakage_by_param"])
        assert "r2_log_age_yr_err" in res["control"][name]
    codes = [res["control"]["infogan"][f"code_for_{p}"] for p in names]  # every input is a code by default
    assert len(set(codes)) == 4 and set(codes) <= set(range(8))
    answers = res["summary"]["answers"]
    r2_min = min(res["control"]["cgan"]["r2_log_age_yr"], res["control"]["cgan"]["r2_log_metallicity"])
    assert answers["cgan_control_target_met"] == (r2_min >= 0.9)
    # the two questions answered in words that quote this run's numbers
    assert f"mig {res['interpret']['gan']['mig']:.3f}" in answers["q1_can_a_gan_latent_space_be_interpreted"]
    assert f"log_age_yr {res['control']['cgan']['r2_log_age_yr']:.2f}" in answers["q2_can_one_be_designed_that_is"]
    for fig in ("correlation_heatmaps", "latent_traversal_gan", "latent_traversal_infogan", "cgan_grid",
                "control_sensitivity", "loss_cgan"):
        assert (run_dir / "figures" / f"{fig}.png").stat().st_size > 1000

    out = get_task("gan_latent").predict(run_dir, sim_file, tmp_path / "pred.csv")
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == len(read_spectra(sim_file)) and "log_metallicity_measured" in rows[0] and "vae_z7" in rows[0]


def test_a_cgan_without_age_and_metallicity_runs(sim_file, tmp_path):
    from astrobench.runner import run

    run_dir = run("gan_latent", data=sim_file, out=tmp_path, name="dust", seed=1,
                  overrides={"size": "smoke", "min_coverage": 0.5, "models": ["cgan"],
                             "parameters": ["dust_av_mag", "log_ssfr_yr"]})
    res = json.loads((run_dir / "metrics.json").read_text())["results"]
    assert set(res["control"]) == {"real_spectra", "cgan"} and "r2_dust_av_mag" in res["control"]["cgan"]
    assert "cgan_control_target_met" not in res["summary"]["answers"]  # the target names age and metallicity


def test_run_rejects_parameters_the_file_lacks(sim_file, tmp_path):
    from astrobench.runner import run

    with pytest.raises(ConfigError, match="not in this file"):
        run("gan_latent", data=sim_file, out=tmp_path, name="p",
            overrides={"size": "smoke", "parameters": ["log_age_yr", "stellar_mass"]})
    with pytest.raises(ConfigError, match="latent_dim 4 must be >= 5"):
        run("gan_latent", data=sim_file, out=tmp_path, name="l",
            overrides={"size": "smoke", "latent_dim": 4})
    with pytest.raises(ConfigError, match="n_codes 3 must lie between the number of parameters"):
        run("gan_latent", data=sim_file, out=tmp_path, name="c",
            overrides={"size": "smoke", "n_codes": 3, "models": ["infogan"]})
