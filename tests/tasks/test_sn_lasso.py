"""sn_lasso: the real file's preparation, the simulator's known answer, clear errors, a smoke run."""

import json

import numpy as np
import pytest

from astrobench.core.io import ConfigError, DataFormatError
from astrobench.runner import run
from astrobench.tasks.sn_lasso.data import load_sn_table, prepare_pantheon
from astrobench.tasks.sn_lasso.models import eiv_fit, lasso_cv, ols_bootstrap
from astrobench.tasks.sn_lasso.simulate import SPECTRAL, TRUTH, simulate, simulate_sn_table


@pytest.fixture(scope="module")
def pantheon(shared_data):
    path = shared_data / "pantheonplus" / "Pantheon+SH0ES.dat"
    assert path.is_file(), f"{path} is missing"
    return path


def test_pantheon_preparation_gives_the_documented_rows(pantheon):
    table = load_sn_table(pantheon)
    info = table.info
    assert info["n_rows"] == 1701 and info["n_calibrators"] == 77
    assert info["n_duplicates"] == 62 and info["n_sne"] == 434 == len(table)  # one row per CID
    assert len(set(table.extra["CID"])) == len(table)
    assert len(table.names) >= 30 and sum(n.startswith("noise_") for n in table.names) == 10
    assert ((table.extra["zHD"] > 0.023) & (table.extra["zHD"] < 0.15)).all()
    assert set(np.unique(table.column("mass_step"))) == {0.0, 1.0}
    assert 0.3 < np.std(table.y) < 0.36  # the raw scatter the issue quotes (about 0.33 mag)
    # calibrator removal on its own (the redshift cut would remove them too) and the duplicate rule
    from astrobench.tasks.sn_lasso.data import read_table

    cols = read_table(pantheon)
    wide = prepare_pantheon(cols, "pantheon", z_range=(0.0, 0.15))
    calibrators = set(np.char.strip(cols["CID"][cols["IS_CALIBRATOR"] == 1].astype(str)))
    assert calibrators and not calibrators & set(wide.extra["CID"])
    n = 12
    synth = {"CID": np.array([f"sn{i}" for i in range(11)] + ["sn0"]), "zHD": np.full(n, 0.05),
             "mB": np.full(n, 17.0), "mBERR": np.r_[np.full(11, 0.05), 0.02], "x1": np.linspace(-1, 1, n),
             "x1ERR": np.full(n, 0.1), "c": np.linspace(-0.1, 0.1, n), "cERR": np.full(n, 0.03),
             "IS_CALIBRATOR": np.zeros(n, dtype=int)}
    kept = prepare_pantheon(synth, "synthetic", n_noise=0)
    assert len(kept) == 11 and kept.info["n_duplicates"] == 1
    assert kept.errors["mBERR"][list(kept.extra["CID"]).index("sn0")] == 0.02  # the better light curve stays
    # an incomplete light curve never wins the duplicate rule: the complete one of the same SN stays
    synth["HOST_LOGMASS"] = np.r_[np.full(11, 10.2), -9.0]
    kept = prepare_pantheon(synth, "synthetic", n_noise=0)
    assert len(kept) == 11 and kept.info["n_missing_dropped"] == 1 and kept.info["n_duplicates"] == 0
    assert kept.errors["mBERR"][list(kept.extra["CID"]).index("sn0")] == 0.05


def test_eiv_recovers_the_simulated_tripp_coefficients():
    cols = simulate_sn_table(4000, seed=11)
    table = prepare_pantheon(cols, "sim", n_noise=0)
    step = table.column("mass_step")[:, None]
    fit = eiv_fit(table.y, table.column("x1"), table.column("c"), step, table.errors)
    assert fit["converged"]
    assert fit["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.01)
    assert fit["beta"] == pytest.approx(TRUTH["beta"], abs=0.1)
    assert fit["gamma"][0] == pytest.approx(TRUTH["mass_step"], abs=0.015)
    assert fit["sigma_int"] == pytest.approx(TRUTH["sigma_int"], abs=0.015)
    # OLS on the same data is biased low in beta by the colour errors: the reason for the EIV fit
    coef, _ = ols_bootstrap(np.column_stack([table.column("x1"), table.column("c"), step[:, 0]]), table.y, 2)
    assert coef[2] < fit["beta"] - 0.2


def test_lasso_selects_the_simulated_variables_and_no_noise():
    cols = simulate_sn_table(1500, seed=3)
    table = prepare_pantheon(cols, "sim", extra_physical=SPECTRAL)
    sel = lasso_cv(table.X, table.y, seed=0)
    chosen = sel.selected(sel.i_1se, table.names)
    assert {"x1", "c", "mass_step"} <= set(chosen)
    assert not any(n.startswith("noise_") for n in chosen)
    assert sel.alphas[sel.i_1se] >= sel.alphas[sel.i_min]


def test_tables_that_cannot_be_analysed_stop_clearly(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("y,a,b\n" + "".join(f"{i * 0.1},{i},{i % 3}\n" for i in range(40)))
    with pytest.raises(DataFormatError, match="no target column 'mag'"):
        load_sn_table(good, target="mag")
    text = tmp_path / "text.csv"
    text.write_text("y,a\n" + "".join(f"{i},{'abc' if i == 3 else i}\n" for i in range(40)))
    with pytest.raises(DataFormatError, match="column a must be numeric"):
        load_sn_table(text, target="y")
    few = tmp_path / "few.csv"
    few.write_text("y,a\n1,2\n2,3\n3,5\n4,4\n5,6\n")
    with pytest.raises(DataFormatError, match="fewer than the 10"):
        load_sn_table(few, target="y", min_rows=10)
    with pytest.raises(ConfigError, match="target"):
        load_sn_table(good)
    table = load_sn_table(good, target="y", n_noise=2)
    assert table.names == ["a", "b", "noise_0", "noise_1"]
    # -9 is a missing value by default, a real one when the sentinels are switched off
    sentinel = tmp_path / "sentinel.csv"
    sentinel.write_text("y,a\n" + "".join(f"{i},{-9 if i < 5 else i}\n" for i in range(40)))
    assert load_sn_table(sentinel, target="y").info["n_missing_dropped"] == 5
    assert len(load_sn_table(sentinel, target="y", missing=())) == 40
    # through the run command: more folds than rows, and a malformed option
    with pytest.raises(DataFormatError, match="fewer than the 50"):
        run("sn_lasso", data=good, out=tmp_path, name="folds", seed=0,
            overrides={"size": "smoke", "target": "y", "n_folds": 50})
    with pytest.raises(ConfigError, match="missing_values"):
        run("sn_lasso", data=good, out=tmp_path, name="sentinels", seed=0,
            overrides={"size": "smoke", "target": "y", "missing_values": "none"})


def test_smoke_run_on_simulated_and_generic_data(tmp_path):
    run_dir = run("sn_lasso", out=tmp_path, name="smoke", seed=0, overrides={"size": "smoke"})
    m = json.loads((run_dir / "metrics.json").read_text())["results"]
    lasso = m["lasso"]["lassocv"]
    assert lasso["lambda_1se"] >= lasso["lambda_min"] and lasso["cv_rmse_min"] > 0
    assert m["relaxed"]["ols"]["beta_lo"] <= m["relaxed"]["ols"]["beta"] <= m["relaxed"]["ols"]["beta_hi"]
    assert set(m["truth"]) == {"lasso_min", "lasso_1se", "stability"}
    for scores in m["truth"].values():
        assert scores["n_seeds"] == 2 and 0 <= scores["precision"] <= 1 and 0 <= scores["recall_x1_c"] <= 1
    assert {"lasso_cv_and_paths.png", "stability_frequencies.png", "predicted_and_residuals.png"} <= {
        p.name for p in (run_dir / "figures").glob("*.png")}
    csv_path = simulate(tmp_path / "sim.csv", n=60, seed=1)
    generic = run("sn_lasso", data=csv_path, out=tmp_path, name="generic", seed=0,
                  overrides={"size": "smoke", "target": "mB", "features": ["x1", "c", "zHD"]})
    g = json.loads((generic / "metrics.json").read_text())
    assert g["data"]["format"] == "generic" and "zHD" in g["results"]["lasso"]["lassocv"]["selected_1se"]


def test_best_subset_and_nested_cv_known_answers():
    from astrobench.tasks.sn_lasso.models import best_subset_press, nested_cv_rmse

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 40))
    y = 2.0 * X[:, 3] - 1.0 * X[:, 7] + rng.normal(0, 0.3, 60)
    assert best_subset_press(X[:, :10], y, max_size=2) == (3, 7)
    assert {3, 7} <= set(best_subset_press(X[:, :10], y, max_size=3))
    # with 40 candidates and 48 training rows per fold, OLS on everything overfits; the selection methods do not
    ols = nested_cv_rmse("ols_all", X, y, seed=0)
    for method in ("lasso_min", "best_subset", "adaptive_lasso"):
        assert nested_cv_rmse(method, X, y, seed=0).mean() < 0.8 * ols.mean()


def test_one_standard_error_rule_and_stability_selection():
    from astrobench.tasks.sn_lasso.models import stability_selection

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 20))
    y = 1.0 * X[:, 0] - 0.7 * X[:, 1] + rng.normal(0, 0.5, 300)
    sel = lasso_cv(X, y, n_folds=5, seed=0)
    # the 1-SE lambda: the largest lambda whose CV error is within one standard error of the minimum
    within = sel.cv_mse <= sel.cv_mse[sel.i_min] + sel.cv_se[sel.i_min]
    assert within[sel.i_1se] and not within[: sel.i_1se].any() and sel.i_1se <= sel.i_min
    # at a tiny lambda the physical coefficients are the OLS slopes
    coef, _ = ols_bootstrap(X, y, 2)
    tiny = sel.physical_coefficients(len(sel.alphas) - 1, [f"v{j}" for j in range(20)])
    assert tiny["v0"] == pytest.approx(coef[1], abs=0.02) and tiny["v1"] == pytest.approx(coef[2], abs=0.02)
    frequencies, q = stability_selection(X, y, sel.alphas, n_subsamples=40, seed=0)
    assert q == int(np.sqrt(0.8 * 20))
    assert frequencies[0] == 1.0 and frequencies[1] == 1.0 and frequencies[2:].max() < 0.9


def test_noise_column_names_may_not_clash(tmp_path):
    path = tmp_path / "clash.csv"
    path.write_text("y,noise_0\n" + "".join(f"{i},{i % 4}\n" for i in range(30)))
    with pytest.raises(ConfigError, match="clash"):
        load_sn_table(path, target="y")
    assert load_sn_table(path, target="y", n_noise=0).names == ["noise_0"]


def test_residual_panel_is_never_empty():
    import matplotlib.pyplot as plt

    from astrobench.tasks.sn_lasso.task import residual_panel

    rng = np.random.default_rng(0)
    residual, predicted = rng.normal(size=20), rng.normal(size=20)
    for redshift, label in ((rng.uniform(0, 1, 20), "zHD"), (None, "predicted y [mag] (no zHD column)")):
        fig, ax = plt.subplots()
        residual_panel(ax, residual, predicted, redshift)
        assert ax.get_xlabel() == label and len(ax.collections[0].get_offsets()) == 20
        plt.close(fig)
