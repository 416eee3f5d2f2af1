"""spectra: simulator physics, the HDF5 loader and its errors, summary statistics with known answers, the
generators, and a smoke run with predict."""

from __future__ import annotations

import importlib
import json

import h5py
import numpy as np
import pytest

from astrobench.core.io import DataFormatError
from astrobench.tasks.spectra import data as D
from astrobench.tasks.spectra import measure as Me
from astrobench.tasks.spectra import models as Mo

sim = importlib.import_module("astrobench.tasks.spectra.simulate")


@pytest.fixture(scope="module")
def sim_file(spectra_sim_file):
    return spectra_sim_file


def _copy_with(src, dst, edit):
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        raw = g.create_group("raw")
        cols = {k: f["raw"][k][()] for k in f["raw"]}
        for k, v in edit(cols).items():
            raw.create_dataset(k, data=v)
    return dst


# --- simulator ------------------------------------------------------------------------------------------------

def test_population_follows_its_stated_relations():
    from astropy.cosmology import FlatLambdaCDM

    pop = sim.draw_population(20000, np.random.default_rng(0))
    p = sim.POPULATION
    assert sim.Z_RANGE[0] <= pop["z"].min() and pop["z"].max() <= sim.Z_RANGE[1]
    assert 0.08 < np.mean(pop["z"]) < 0.13  # SDSS main sample: mean z ~ 0.1
    # the stellar mass-metallicity relation: a normal around the stated line, truncated at the BC03 grid's edges;
    # in every mass bin the mean and spread match the truncated normal's (scipy) to 0.02 dex
    from scipy.stats import truncnorm

    m, log_z = pop["log_mass_target"], np.log10(pop["metallicity_zsun"])
    mu = p["log_z_at_105"] + p["log_z_slope"] * (m - 10.5)
    lo, hi = np.log10(p["metallicity_range_zsun"])
    sd = p["log_z_scatter"]
    expected = truncnorm((lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd)
    for a, b in ((9.5, 10.0), (10.0, 10.5), (10.5, 11.0), (11.0, 11.5)):
        s = (m > a) & (m < b)
        assert log_z[s].mean() == pytest.approx(expected.mean()[s].mean(), abs=0.02)
        assert log_z[s].std() == pytest.approx(np.sqrt(expected.var()[s].mean()), abs=0.02)
    assert np.polyfit(m, log_z, 1)[0] > 0.15  # metallicity rises with mass
    # quiescent fraction rises with mass; star formation starts after the Big Bang
    assert pop["quiescent"][pop["log_mass_target"] > 11].mean() > 0.7 > 0.3 > pop["quiescent"][
        pop["log_mass_target"] < 10].mean()
    assert np.all(pop["age_start_gyr"] < FlatLambdaCDM(H0=70, Om0=0.3).age(pop["z"]).value)
    assert np.all(pop["veldisp_kms"] >= sim.INSTRUMENT_SIGMA_KMS)


def test_simulated_file_has_the_school_format_and_sdss_like_noise(sim_file):
    with h5py.File(sim_file, "r") as f:
        raw = f["raw"]
        assert set(D.REQUIRED) <= set(raw)
        assert raw["spec"].shape == (120, len(sim.sdss_wavelength_grid())) == raw["specerr"].shape
        assert raw["age"].attrs["units"].startswith("yr")
        assert raw["metallicity"].attrs["units"] == "Z/Zsun"
        assert "air" in raw["wavelength"].attrs["units"]  # so the loader does not convert it again
        wave = raw["wavelength"][()]
    assert wave[0] == pytest.approx(3800, rel=1e-6) and wave[-1] < 9200
    assert np.allclose(np.diff(np.log10(wave)), 1e-4)
    sf = D.read_spectra(sim_file)
    assert np.all(sf.age_yr < 13.5e9) and np.all(sf.age_yr > 1e7)
    assert np.all((sf.smass_msun > 1e8) & (sf.smass_msun < 1e12))
    good = D.good_pixels(sf)
    assert 0.999 > good.mean() > 0.99  # a few bad pixels (0.3 % and short runs) flagged with specerr = 0
    red = (wave > 6000) & (wave < 6500)
    snr = np.nanmedian(np.where(good[:, red], sf.spec[:, red] / np.where(good[:, red], sf.specerr[:, red], 1), np.nan),
                       1)
    assert 5 < np.median(snr) < 30  # SDSS main-sample spectra: S/N of order 10 per pixel


def test_simulated_spectra_carry_the_physics(sim_file):
    """Known relations: H-alpha EW traces specific star formation, the 4000 A break traces age."""
    sf = D.read_spectra(sim_file)
    prep = D.prepare(sf, np.arange(len(sf)))
    stats = Me.summary_statistics(prep.wavelength_aa, prep.flux, prep.ivar)
    ssfr = np.log10(np.maximum(sf.extras["sfr_msun_yr"], 1e-6) / sf.smass_msun)
    star_forming = ssfr > -10.5
    assert np.median(stats["ew_halpha"][star_forming]) > 10 > np.median(stats["ew_halpha"][~star_forming])
    assert np.corrcoef(np.log10(sf.age_yr), stats["dn4000"])[0, 1] > 0.7
    assert np.corrcoef(stats["dn4000"], stats["color_gr"])[0, 1] > 0.6


# --- loader ---------------------------------------------------------------------------------------------------

def test_rest_frame_rebinning_puts_lines_at_rest_wavelength_and_normalises():
    wave = sim.sdss_wavelength_grid()
    z = np.array([0.05, 0.2])
    line = np.exp(-0.5 * ((wave[None, :] / (1 + z[:, None]) - 6563.0) / 3.0) ** 2)
    spec = (2.0 + 10 * line).astype(np.float32)
    err = np.full_like(spec, 0.1)
    err[0, 100:110] = 0  # bad pixels
    sf = D.SpectraFile("mem", z, np.full(2, 1e9), np.ones(2), np.full(2, 1e10), wave, spec, err)
    prep = D.prepare(sf, np.arange(2))
    grid = prep.wavelength_aa
    assert np.all(np.abs(grid[np.argmax(prep.flux, 1)] - 6563) < 3)
    window = (grid > 5300) & (grid < 5800)
    assert np.allclose(np.median(prep.flux[:, window], 1), 1.0, atol=1e-4)
    # two ~1e-4 source pixels per 2e-4 bin: ivar adds up, (0.1 / 2)^-2 per pixel -> ~800 per bin
    assert 500 < np.median(prep.ivar[prep.ivar > 0]) < 1300
    assert np.all(np.isfinite(prep.flux))


def test_vacuum_wavelengths_are_converted_to_air(sim_file, tmp_path):
    assert D.vacuum_to_air(np.array([6564.61]))[0] == pytest.approx(6562.80, abs=0.02)  # H-alpha, SDSS line list
    # a file without a units attribute is taken as SDSS vacuum wavelengths
    plain = D.read_spectra(_copy_with(sim_file, tmp_path / "plain.hdf5", lambda c: c))
    labelled = D.read_spectra(sim_file)
    assert np.allclose(plain.wavelength_aa, D.vacuum_to_air(labelled.wavelength_aa))


def test_quality_cuts_drop_bad_labels(sim_file, tmp_path):
    def edit(cols):
        cols["age"][0] = -1
        cols["smass"][1] = 1e13
        cols["metallicity"][2] = 0
        return cols

    sf = D.read_spectra(_copy_with(sim_file, tmp_path / "cut.hdf5", edit))
    keep = D.quality_mask(sf)
    assert not keep[:3].any() and keep[3:].all()
    assert D.quality_mask(sf, label_cuts=False)[:3].all()


@pytest.mark.parametrize("edit, message", [
    (lambda c: {k: v for k, v in c.items() if k != "specerr"}, "lacks specerr"),
    (lambda c: {**c, "spec": c["spec"][:, :-5]}, "raw/spec has shape"),
    (lambda c: {**c, "age": c["age"][:-1]}, "raw/age has shape"),
    (lambda c: {**c, "wavelength": c["wavelength"][::-1]}, "increasing"),
    (lambda c: {**c, "z": np.full(len(c["z"]), np.nan)}, "raw/z must be finite"),
    (lambda c: {**c, "metallicity": np.array([b"x"] * len(c["z"]))}, "must be numeric"),
])
def test_loader_rejects_broken_files_with_one_line(sim_file, tmp_path, edit, message):
    with pytest.raises(DataFormatError, match=message):
        D.read_spectra(_copy_with(sim_file, tmp_path / "bad.hdf5", edit))


def test_loader_rejects_non_hdf5_and_missing_group(tmp_path):
    text = tmp_path / "x.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(DataFormatError, match="not a readable HDF5"):
        D.read_spectra(text)
    with h5py.File(tmp_path / "g.hdf5", "w") as f:
        f.create_group("other")
    with pytest.raises(DataFormatError, match="no group 'raw'"):
        D.read_spectra(tmp_path / "g.hdf5")


# --- summary statistics ---------------------------------------------------------------------------------------

def test_statistics_known_answers():
    wave = D.model_grid("rest")
    flat_fnu = 1.0 / wave**2  # f_nu constant
    assert Me.dn4000(wave, flat_fnu[None])[0] == pytest.approx(1.0, abs=1e-9)
    assert Me.color_gr(wave, flat_fnu[None])[0] == pytest.approx(0.0, abs=1e-3)
    # a Gaussian H-alpha line of flux 50 (sigma 2 A) on a continuum of 2: EW = 25 A
    spec = 2.0 + 50 / (np.sqrt(2 * np.pi) * 2) * np.exp(-0.5 * ((wave - 6563) / 2) ** 2)
    assert Me.ew_halpha(wave, spec[None])[0] == pytest.approx(25.0, rel=0.02)
    # [O III] / H-beta = 3 when both are detected, NaN when H-beta is missing
    lines = lambda a, b: 1 + a * np.exp(-0.5 * ((wave - 5006.8) / 2) ** 2) + b * np.exp(  # noqa: E731
        -0.5 * ((wave - 4861.3) / 2) ** 2)
    flux = np.stack([lines(3, 1), lines(3, 0)])
    ratio = Me.line_ratio(wave, flux, np.full_like(flux, 1e4), "oiii_5007", "hbeta")
    assert ratio[0] == pytest.approx(np.log10(3), abs=0.01) and np.isnan(ratio[1])


# --- models ---------------------------------------------------------------------------------------------------

def test_chi2_and_noise_are_consistent():
    rng = np.random.default_rng(0)
    flux = np.ones((400, 300), np.float32)
    ivar = np.full_like(flux, 25.0)
    ivar[:, :10] = 0
    noisy = Mo.add_noise(flux, ivar, rng)
    assert np.mean(Mo.chi2_per_pixel(noisy, flux, ivar)) == pytest.approx(1.0, abs=0.02)
    assert np.std(noisy[:, 20:]) == pytest.approx(0.2, rel=0.03)


def test_conditional_pca_gauss_recovers_a_linear_relation():
    rng = np.random.default_rng(1)
    n, n_wave = 3000, 50
    cond = rng.standard_normal((n, 1)).astype(np.float32)
    pattern = np.sin(np.linspace(0, 3, n_wave))
    flux = (1 + 0.5 * cond * pattern + 0.05 * rng.standard_normal((n, n_wave))).astype(np.float32)
    basis = Mo.PCABasis(5).fit(flux)
    batch = Mo.SpectraBatch(flux, np.ones_like(flux), cond)
    gen = Mo.PCAGauss(basis, 3).fit(batch)
    c = np.full((2000, 1), 1.5, np.float32)
    assert np.allclose(gen.sample(2000, c, seed=0).mean(0), 1 + 0.75 * pattern, atol=0.01)
    free = Mo.PCAGauss(basis, 3).fit(Mo.SpectraBatch(flux, np.ones_like(flux), cond[:, :0]))
    draws = free.sample(4000, np.zeros((4000, 0), np.float32), seed=0)
    assert np.allclose(draws.std(0), basis.reconstruct(flux, 3).std(0), rtol=0.1)  # noiseless, like the basis


def test_vae_learns_and_reconstructs(tmp_path):
    from astrobench.core.training import TrainConfig

    rng = np.random.default_rng(2)
    n, n_wave = 600, 80
    amp = rng.uniform(0.5, 1.5, (n, 1))
    flux = (amp * np.linspace(0.5, 1.5, n_wave)[None, :] + 0.02 * rng.standard_normal((n, n_wave))).astype(np.float32)
    ivar = np.full_like(flux, 2500.0)
    batch = lambda idx: Mo.SpectraBatch(flux[idx], ivar[idx], np.zeros((len(idx), 0), np.float32))  # noqa: E731
    cfg = TrainConfig(max_epochs=40, batch_size=64, patience=40, accelerator="cpu", devices=1, progress=False)
    vae = Mo.VAEGenerator("vae", latent_dim=2, lr=3e-3).fit(batch(np.arange(500)), batch(np.arange(500, 600)),
                                                            tmp_path, cfg)
    assert vae.history_["val_loss"][-1] < 0.2 * vae.history_["val_loss"][0]
    rec = vae.reconstruct(batch(np.arange(500, 600)))
    assert np.mean(Mo.chi2_per_pixel(flux[500:], rec, ivar[500:])) < 10
    assert vae.sample(7, np.zeros((7, 0), np.float32), seed=0).shape == (7, n_wave)


# --- the task ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_file(spectra_smoke_file):
    return spectra_smoke_file


def test_smoke_run_and_predict(smoke_file, tmp_path):
    from astrobench.registry import get_task
    from astrobench.runner import resume, run

    run_dir = run("spectra", data=smoke_file, out=tmp_path, name="smoke", seed=1,
                  overrides={"size": "smoke", "generate_methods": ["vae_flow", "pca_gauss", "pca_flow", "vae"],
                             "conditional_methods": ["pca_flow", "vae_flow"]})
    m = json.loads((run_dir / "metrics.json").read_text())
    r = m["results"]
    assert m["data"]["source"] == "file" and m["data"]["n_used"] == 480
    assert {"real_vs_real", "real_vs_degraded", "pca_gauss", "vae"} <= set(r["generate"])
    for method in ("pca_gauss", "pca_flow", "vae", "vae_flow"):
        for key in ("c2st_auc", "c2st_auc_err", "nn_memorization", "nn_memorization_err", "w1_dn4000",
                    "w1_dn4000_err", "w1_ew_halpha", "w1_line_ratio_oiii_hbeta", "w1_color_gr"):
            assert np.isfinite(r["generate"][method][key]), (method, key)
    assert 0 <= r["generate"]["pca_gauss"]["c2st_auc"] <= 1
    assert r["reconstruct"]["pca"]["chi2"] > 0 and "vae" in r["reconstruct"]
    for method in ("real_spectra", "pca_flow", "vae_flow"):
        assert {"r2_z", "r2_metallicity", "r2_age", "r2_age_err", "r2_metallicity_validation"} <= set(
            r["conditional"][method])
    assert r["summary"]["best"]["method"] in ("pca_gauss", "pca_flow", "vae", "vae_flow")
    for fig in ("pca_explained_variance", "mean_and_bands", "summary_statistics", "bpt_diagram",
                "conditional_examples"):
        assert (run_dir / "figures" / f"{fig}.png").exists(), fig
    out = get_task("spectra").predict(run_dir, smoke_file, tmp_path / "pred.csv")
    lines = out.read_text().splitlines()
    assert len(lines) == 481 and lines[0].startswith("row,z_file,z_measured")

    # an interrupted run resumes from its checkpoints and ends with the same numbers
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "metrics.json").unlink()
    resumed = json.loads((resume(copy) / "metrics.json").read_text())["results"]
    assert resumed["generate"]["vae_flow"]["c2st_auc"] == r["generate"]["vae_flow"]["c2st_auc"]
    assert resumed["conditional"]["pca_flow"]["r2_age"] == r["conditional"]["pca_flow"]["r2_age"]


def test_run_explains_which_cut_removes_the_galaxies(smoke_file, sim_file, tmp_path):
    from astrobench.runner import run

    def log_metallicity(cols):
        return {**cols, "metallicity": np.log10(cols["metallicity"]) - 1.0}  # log values, all negative

    path = _copy_with(smoke_file, tmp_path / "logz.hdf5", log_metallicity)
    with pytest.raises(DataFormatError, match=r"metallicity > 0 .*: 480 fail"):
        run("spectra", data=path, out=tmp_path, name="logz", overrides={"size": "smoke"})
    with pytest.raises(DataFormatError, match="the file holds 120 galaxies; a run needs at least 200"):
        run("spectra", data=sim_file, out=tmp_path, name="few", overrides={"size": "smoke"})
