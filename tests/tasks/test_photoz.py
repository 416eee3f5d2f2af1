"""photoz: the simulator's physics and format, the loader and feature sets, the PDF metrics, a smoke run."""

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from astrobench.core import metrics as M
from astrobench.core.io import ConfigError, DataFormatError
from astrobench.physics import flat_lcdm, quiet_bagpipes
from astrobench.runner import run
from astrobench.tasks.photoz.data import (
    ERROR_COLUMNS,
    HELLO_UNIVERSE_FEATURES,
    asinh_magnitude,
    feature_matrix,
    hello_universe_rows,
    read_catalogue,
    split_indices,
)
from astrobench.tasks.photoz.models import KNNPDF, TREE_SEARCH, SearchBudget, fit_point

S = importlib.import_module("astrobench.tasks.photoz.simulate")
N_TEMPLATES = 120


@pytest.fixture(scope="module")
def templates():
    return S.template_photometry(N_TEMPLATES, seed=0)


@pytest.fixture(scope="module")
def catalogue_columns(templates):
    return S.simulate_catalogue(3000, seed=1, n_templates=N_TEMPLATES)


@pytest.fixture(scope="module")
def catalogue_path(catalogue_columns, tmp_path_factory):
    return S.write_catalogue(catalogue_columns, tmp_path_factory.mktemp("photoz") / "3dhst_master.phot.v4.1.cat")


def test_catalogue_file_has_the_3dhst_columns_and_conventions(catalogue_path):
    header = catalogue_path.read_text().splitlines()[0]
    assert header.split()[1:] == list(S.COLUMNS) and len(S.COLUMNS) == 38
    cat = read_catalogue(catalogue_path)
    assert len(cat) == 3000
    assert set(np.unique(cat["field"])) <= set(S.FIELDS)
    no_spec = cat["z_spec"] == -1
    assert no_spec.mean() == pytest.approx(S.PHOTOMETRIC_ONLY_FRACTION, abs=0.01)
    assert (cat["z_spec"][~no_spec] > 0).all() and (cat["z_spec"][~no_spec] < S.Z_RANGE[1]).all()
    # -99 in flux and error together, and only there; F140W is the band most often missing
    for band in S.BANDS:
        missing = cat[f"f_{band}"] == S.MISSING
        assert np.array_equal(missing, cat[f"e_{band}"] == S.MISSING)
        assert missing.mean() == pytest.approx(S.MISSING_FRACTION[band], abs=0.03)
        assert (cat[f"e_{band}"][~missing] > 0).all()
    assert np.array_equal(cat["faper_F140W"] == S.MISSING, cat["f_F140W"] == S.MISSING)
    # ids are unique within a field, as in the real catalogue
    for field in S.FIELDS:
        ids = cat["id"][cat["field"] == field]
        assert len(np.unique(ids)) == len(ids)


def test_band_weights_give_the_ab_flux_of_a_flat_spectrum():
    """L_nu = const (L_lambda = c / lambda^2): every band must return exactly that L_nu, wherever the IGM is clear."""
    wave = np.geomspace(500, 30000, 4000)
    l_lambda = S.C_AA_PER_S / wave**2  # L_nu = 1
    z_grid = np.array([0.0, 0.5, 1.0, 2.0])
    weights = S.band_weights(wave, z_grid)
    fluxes = weights @ l_lambda  # (n_z, n_band)
    assert fluxes == pytest.approx(np.ones_like(fluxes), rel=0.01)
    # the Lyman forest at z = 3.5 dims F606W (rest 1050-1600 A) but not F160W
    deep = S.band_weights(wave, np.array([3.5])) @ l_lambda
    assert deep[0, S.BANDS.index("F606W")] < 0.93 and deep[0, S.BANDS.index("F160W")] == pytest.approx(1, rel=0.01)


def test_redshifted_template_fluxes_match_bagpipes_own_photometry():
    """One model observed at z = 1 by bagpipes itself (its own redshifting, distance and IGM) against the
    simulator's rest-frame template x band weights x (1 + z) / (4 pi D_L^2): the same f_nu to 1 %."""
    bagpipes = quiet_bagpipes()
    comp = {"redshift": 1.0, "delayed": {"age": 2.0, "tau": 1.0, "massformed": 10.0, "metallicity": 1.0},
            "dust": {"type": "Calzetti", "Av": 0.5}, "nebular": {"logU": -3.0}}
    observed = bagpipes.model_galaxy(comp, filt_list=S.filter_paths(), phot_units="mujy").photometry  # microJy
    rest = S.rest_frame_templates({"age_gyr": [2.0], "tau_gyr": [1.0], "metallicity_zsun": [1.0], "av_mag": [0.5],
                                   "log_u": [-3.0]})
    weights = S.band_weights(rest["wavelength_aa"], np.array([1.0]))[0]
    d_l_cm = flat_lcdm()("d_l_mpc", np.array([1.0]))[0] * S.MPC_CM
    f_nu = weights @ rest["l_lambda"][0] * 2 / (4 * np.pi * d_l_cm**2)  # erg/s/cm^2/Hz
    assert f_nu / 1e-29 == pytest.approx(observed, rel=0.01)  # 1 microJy = 1e-29 erg/s/cm^2/Hz


def test_population_follows_volume_mass_functions_and_ages(templates):
    rng = np.random.default_rng(3)
    pop = S.draw_population(200_000, templates, rng)
    cosmo = flat_lcdm()
    # (z, log M) from dV/dz x Phi(M, z): per Tomczak bin, the count is the bin's volume times its number density,
    # and the masses follow that bin's double Schechter
    m = np.linspace(*S.LOG_MASS_RANGE, 2001)
    density = np.array([np.trapezoid(S.stellar_mass_function(m, row), m) for row in S.TOMCZAK14_SMF])
    expected, observed = [], []
    for b, row in enumerate(S.TOMCZAK14_SMF[1:-1], start=1):  # inner bins (the outer ones also take the ends)
        volume = np.diff(cosmo("volume_mpc3", np.array(row[:2])))[0]
        expected.append(volume * density[b])
        observed.append(np.sum(S.smf_bin(pop["z"]) == b))
    assert np.array(observed) / sum(observed) == pytest.approx(np.array(expected) / sum(expected), abs=0.006)
    row = S.TOMCZAK14_SMF[2]  # 0.75 < z < 1
    in_bin = pop["log_mass"][S.smf_bin(pop["z"]) == 2]
    for lo, hi in ((8.5, 9.5), (9.5, 10.5), (10.5, 11.5)):
        sel = (m >= lo) & (m <= hi)
        share = np.trapezoid(S.stellar_mass_function(m[sel], row), m[sel]) / density[2]
        assert np.mean((in_bin >= lo) & (in_bin < hi)) == pytest.approx(share, abs=0.01)
    # no galaxy is older than the Universe at its redshift
    assert (pop["age_gyr"] < cosmo("age_gyr", pop["z"])).all()
    # the mass scaling: F160W flux grows as the stellar mass at fixed template and redshift
    assert np.corrcoef(pop["log_mass"], np.log10(pop["flux_true"][:, -1]))[0, 1] > 0.3


def test_depth_and_size_relations_are_the_documented_ones():
    rng = np.random.default_rng(0)
    n = 4000
    pop = {"z": np.full(n, 1.0), "log_mass": np.full(n, 10.0), "flux_true": np.zeros((n, 5)),
           "log_ssfr_yr": np.full(n, -9.0), "av_mag": np.zeros(n)}
    cols = S.observe(pop, rng)
    # a source of zero flux: the aperture noise at the reference exposure count is the 5-sigma depth / 5
    ref = cols["nexp_f160w"] == S.REFERENCE_NEXP["F160W"]
    sigma = np.std(cols["faper_F160W"][ref])
    assert 25 - 2.5 * np.log10(5 * sigma) == pytest.approx(S.DEPTH_5SIGMA_AB["F160W"], abs=0.1)
    # van der Wel et al. 2014: median late-type R_e at 5e10 Msun and z = 0.25 is 10^0.86 kpc
    r = S.half_light_radius_kpc(np.full(n, np.log10(5e10)), np.full(n, 0.25), np.zeros(n, bool), rng)
    assert np.median(np.log10(r)) == pytest.approx(0.86, abs=0.02)
    assert np.std(np.log10(r)) == pytest.approx(0.16, abs=0.02)


def test_spectroscopic_sample_is_brighter_and_mostly_below_z_2(catalogue_columns):
    spec = catalogue_columns["z_spec"] > 0
    f160 = catalogue_columns["f_F160W"]
    mag = 25 - 2.5 * np.log10(np.clip(f160, 1e-6, None))
    assert np.median(mag[spec]) < np.median(mag[~spec])
    z = catalogue_columns["z_spec"][spec & (catalogue_columns["lmass"] > 9)]
    assert 0.7 < np.median(z) < 1.5 and np.mean(z > 2) < 0.3


def test_simulation_is_reproducible(templates):
    a = S.simulate_catalogue(300, seed=5, n_templates=N_TEMPLATES)
    b = S.simulate_catalogue(300, seed=5, n_templates=N_TEMPLATES)
    c = S.simulate_catalogue(300, seed=6, n_templates=N_TEMPLATES)
    assert all(np.array_equal(a[k], b[k]) for k in S.COLUMNS)
    assert not np.array_equal(a["f_F160W"], c["f_F160W"])


def test_hello_universe_preprocessing_matches_the_notebook(catalogue_path):
    cat = read_catalogue(catalogue_path)
    rows = hello_universe_rows(cat)
    assert ((cat["lmass"][rows] > 9) & (cat["z_spec"][rows] > 0)).all()
    assert len(rows) == np.sum((cat["lmass"] > 9) & (cat["z_spec"] > 0))
    X, names = feature_matrix(cat, rows, "hello_universe")
    assert names == list(HELLO_UNIVERSE_FEATURES) and X.shape == (len(rows), 29)
    assert set(np.unique(X[:, names.index("field")])) <= set(range(5))  # label-encoded, alphabetical
    aegis = cat["field"][rows] == "AEGIS"
    assert (X[aegis, names.index("field")] == 0).all()
    for col in ERROR_COLUMNS:  # -99 -> median over the cut sample with the -99s in it
        raw = cat[col][rows]
        j = names.index(col)
        assert (X[:, j] > -90).all()
        assert np.allclose(X[raw < -90, j], np.median(raw))
    missing_flux = cat["f_F140W"][rows] == -99  # fluxes are not imputed
    assert missing_flux.any() and (X[missing_flux, names.index("f_F140W")] == -99).all()
    train, val, test = split_indices(len(rows))
    assert len(np.intersect1d(train, test)) == 0 and len(np.intersect1d(val, test)) == 0
    assert len(train) + len(val) + len(test) == len(rows)
    assert len(train) / len(rows) == pytest.approx(0.7, abs=0.01)
    assert np.array_equal(split_indices(len(rows))[2], test)  # random_state 42: the same split every time


def test_colour_features_flag_missing_bands_and_use_asinh_magnitudes(catalogue_path):
    cat = read_catalogue(catalogue_path)
    rows = hello_universe_rows(cat)
    X, names = feature_matrix(cat, rows, "colors")
    missing = X[:, names.index("missing_F140W")] == 1
    assert missing.any()
    assert np.isnan(X[missing, names.index("mag_F140W")]).all()
    assert np.isnan(X[missing, names.index("F125W-F140W")]).all()
    both = ~missing & (X[:, names.index("missing_F125W")] == 0)
    assert np.isfinite(X[both, names.index("F125W-F140W")]).all()
    # asinh magnitudes: the AB magnitude for bright sources, finite through zero and negative fluxes
    assert asinh_magnitude(np.array([100.0]), 0.01)[0] == pytest.approx(25 - 2.5 * np.log10(100), abs=1e-4)
    assert np.isfinite(asinh_magnitude(np.array([-0.5, 0.0, 0.5]), 0.1)).all()


def test_loader_errors_name_the_problem(catalogue_path, tmp_path):
    lines = catalogue_path.read_text().splitlines()
    no_hash = tmp_path / "plain.cat"
    no_hash.write_text("\n".join([lines[0].lstrip("# ")] + lines[1:50]) + "\n")
    assert len(read_catalogue(no_hash)) == 49  # a header line without '#' reads the same
    header = lines[0].split()[1:]
    drop = header.index("lmass")
    cut = tmp_path / "cut.cat"
    cut.write_text("\n".join(["# " + " ".join(h for i, h in enumerate(header) if i != drop)]
                             + [" ".join(v for i, v in enumerate(r.split()) if i != drop) for r in lines[1:20]]))
    with pytest.raises(DataFormatError, match="missing column.*lmass"):
        read_catalogue(cut)
    text = tmp_path / "text.cat"
    row = lines[1].split()
    row[header.index("f_F125W")] = "bright"
    text.write_text("\n".join([lines[0], " ".join(row)] + lines[2:20]))
    with pytest.raises(DataFormatError, match="f_F125W must be numeric"):
        read_catalogue(text)
    with pytest.raises(DataFormatError, match="not found"):
        read_catalogue(tmp_path / "absent.cat")
    (tmp_path / "two").mkdir()
    for name in ("a.cat", "b.cat"):
        (tmp_path / "two" / name).write_text(lines[0])
    with pytest.raises(DataFormatError, match="exactly one .cat"):
        read_catalogue(tmp_path / "two")


def test_tree_search_is_the_notebooks():
    assert list(TREE_SEARCH["max_depth"]) == list(range(1, 20, 2))
    assert list(TREE_SEARCH["min_samples_split"]) == list(range(5, 100, 10))
    assert list(TREE_SEARCH["min_samples_leaf"]) == list(range(5, 100, 10))


def test_fit_point_caps_rows_and_learns_a_known_relation():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 3, (900, 2))
    y = X[:, 0] + 0.05 * rng.normal(size=900)
    model = fit_point("svr", X[:600], y[:600], seed=0, budget=SearchBudget(2, 2), max_rows=300)
    assert model.n_train == 300
    assert np.mean((model.predict(X[600:]) - y[600:]) ** 2) < 0.05
    tree = fit_point("tree_tuned", X[:600], y[:600], seed=0, budget=SearchBudget(2, 2, 5, 2))
    assert set(tree.best_params) == {"max_depth", "min_samples_split", "min_samples_leaf"}


def test_point_metrics_known_answers():
    from astrobench.tasks.photoz.task import point_metrics

    z = np.linspace(0.1, 3.0, 500)
    shifted = point_metrics(z, z + 0.1 * (1 + z))
    assert shifted["bias"] == pytest.approx(0.1) and shifted["sigma_nmad"] == pytest.approx(0, abs=1e-12)
    assert shifted["outlier_frac"] == 0 and shifted["mse"] == pytest.approx(np.mean((0.1 * (1 + z)) ** 2))
    assert point_metrics(z, z + 0.2 * (1 + z))["outlier_frac"] == 1
    rng = np.random.default_rng(0)
    noisy = point_metrics(np.full(20000, 1.0), 1.0 + 2 * 0.05 * rng.normal(size=20000))  # delta ~ N(0, 0.05)
    assert noisy["sigma_nmad"] == pytest.approx(0.05, rel=0.03) and noisy["outlier_frac"] < 0.01


def test_pdf_metrics_known_answers():
    rng = np.random.default_rng(1)
    grid = np.linspace(-6, 6, 1201)
    mu = rng.normal(size=4000)
    y = mu + rng.normal(size=4000)  # truth ~ N(mu, 1)
    from scipy.special import ndtr

    right = ndtr(grid[None, :] - mu[:, None])
    pit = M.pit_from_cdf(right, grid, y)
    assert M.pit_ks(pit) < 0.03 and M.coverage(pit) == pytest.approx(0.68, abs=0.02)
    # CRPS of N(mu, 1) at y (Gneiting & Raftery 2007): s (2 Phi(s) - 1) + 2 phi(s) - 1 / sqrt(pi), s = y - mu
    s = y - mu
    exact = s * (2 * ndtr(s) - 1) + 2 * np.exp(-s**2 / 2) / np.sqrt(2 * np.pi) - 1 / np.sqrt(np.pi)
    assert M.crps_from_cdf(right, grid, y) == pytest.approx(exact, abs=0.006)  # grid step 0.01
    point = (grid[None, :] >= mu[:, None]).astype(float)  # a point forecast: CRPS is the absolute error
    assert M.crps_from_cdf(point, grid, y) == pytest.approx(np.abs(y - mu), abs=0.02)
    # too wide: coverage far above 0.68; recalibration on other objects brings it back
    wide = ndtr((grid[None, :] - mu[:, None]) / 3)
    cal_pit, test_pit = M.pit_from_cdf(wide[:2000], grid, y[:2000]), M.pit_from_cdf(wide[2000:], grid, y[2000:])
    assert M.coverage(test_pit) > 0.9
    recal = M.PITRecalibration().fit(cal_pit)
    fixed = M.pit_from_cdf(recal(wide[2000:]), grid, y[2000:])
    assert M.coverage(fixed) == pytest.approx(0.68, abs=0.03) and M.pit_ks(fixed) < 0.04


def test_knn_pdf_is_a_cdf_centred_on_the_neighbours():
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(500, 3))
    y = 2 * X[:, 0]
    cdf = KNNPDF(k=10, bandwidth=0.02).fit(X, y).cdf_grid(X[:20])
    assert (np.diff(cdf, axis=1) >= -1e-12).all() and np.allclose(cdf[:, -1], 1, atol=1e-6)
    from astrobench.tasks.photoz.models import Z_PDF_GRID

    medians = np.array([np.interp(0.5, row, Z_PDF_GRID) for row in cdf])
    assert np.abs(medians - y[:20]).max() < 0.25


def test_smoke_run_keys_figures_and_predict(tmp_path):
    run_dir = run("photoz", out=tmp_path, name="smoke", seed=0, overrides={"size": "smoke", "n_templates": 60})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    res = metrics["results"]
    for features in ("hello_universe", "colors"):
        for method in ("tree_default", "tree_tuned", "random_forest", "gbm", "knn", "svr", "mlp"):
            entry = res["point"][features][method]
            for key in ("mse", "sigma_nmad", "outlier_frac", "bias"):
                assert np.isfinite(entry[key]) and np.isfinite(entry[f"{key}_err"])
            assert 0 <= entry["outlier_frac"] <= 1
    assert res["point"]["colors"]["svr"]["n_train"] == 300  # the svr cap of the smoke size
    ensemble = res["point"]["colors"]["ensemble"]
    ranked = sorted((m for m in res["point"]["colors"] if m != "ensemble"),
                    key=lambda m: res["point"]["colors"][m]["mse_validation"])
    assert ensemble["members"] == ranked[:3] and np.isfinite(ensemble["mse"])
    for method in ("quantile_gbm", "knn_pdf"):
        entry = res["pdf"][method]
        assert 0 <= entry["coverage_68"] <= 1 and 0 <= entry["pit_ks"] <= 1 and entry["crps"] > 0
    assert res["summary"]["best"]["method"] in res["point"][res["summary"]["best"]["features"]]
    assert "catalogue_z_peak" not in res  # the simulator's z_peak is a stand-in, never a result
    assert metrics["data"]["n_train"] + metrics["data"]["n_val"] + metrics["data"]["n_test"] == \
        metrics["data"]["n_after_cuts"]
    for name in ("zphot_vs_zspec_colors", "zphot_vs_zspec_hello_universe", "metrics_by_method", "learning_curves",
                 "permutation_importance", "pdf_pit"):
        assert (run_dir / "figures" / f"{name}.png").is_file()
    from astrobench.registry import get_task

    cat_path = metrics["data"]["path"]
    out = get_task("photoz").predict(run_dir, cat_path, tmp_path / "zphot.csv")
    lines = out.read_text().splitlines()
    assert len(lines) == len(read_catalogue(cat_path)) + 1
    header = lines[0].split(",")
    assert "z_phot_colors_gbm" in header
    # a catalogue of one field is encoded as in training (field codes, medians, softenings come from the run):
    # its galaxies get exactly the redshifts they got inside the whole catalogue
    text = Path(cat_path).read_text().splitlines()
    one_field = tmp_path / "goods_s.cat"
    one_field.write_text("\n".join([text[0]] + [r for r in text[1:] if r.split()[1] == "GOODS-S"]) + "\n")
    sub = get_task("photoz").predict(run_dir, one_field, tmp_path / "zphot_goods_s.csv").read_text().splitlines()
    whole = {tuple(r.split(",")[:2]): r for r in lines[1:]}
    assert len(sub) > 10 and all(whole[tuple(r.split(",")[:2])] == r for r in sub[1:])


def test_bad_options_stop_clearly(tmp_path):
    with pytest.raises(ConfigError, match="features"):
        run("photoz", out=tmp_path, overrides={"size": "smoke", "features": ["magnitudes"]})
    with pytest.raises(ConfigError, match="n_iter"):
        run("photoz", out=tmp_path, overrides={"size": "smoke", "n_iter": 50})
    with pytest.raises(ConfigError, match="learning_methods"):
        run("photoz", out=tmp_path, overrides={"size": "smoke", "methods": ["gbm"], "learning_methods": ["knn"]})


def test_the_answer_leads_with_the_best_estimate_against_the_tuned_tree():
    from astrobench.registry import get_task

    best = {"features": "colors", "method": "ensemble", "mse": 0.084, "mse_ratio_to_tree_tuned": 0.589,
            "mse_ratio_to_tree_tuned_err": 0.049}
    first = get_task("photoz").answers({"summary": {"best": best}}, "quick")[0]
    assert first == ("Best point estimate: ensemble on the colors features, test MSE 0.084, 0.589 ± 0.049 times the "
                     "tuned decision tree's (goal: at most 0.6).")
