"""cluster_mass: networks and estimators behave as specified; a smoke run connects every method."""

import csv
import json

import numpy as np
import pytest
import torch
from astropy.io import fits

from astrobench.cli import main
from astrobench.core.io import ConfigError
from astrobench.core.nets import d4_transform
from astrobench.runner import resolve_config, run
from astrobench.tasks.cluster_mass.models import ApertureMass, d4_cnn, n_parameters, ntampaka_cnn, radius_map
from astrobench.tasks.cluster_mass.simulate import r500_kpc
from astrobench.tasks.cluster_mass.task import METHODS


def test_d4cnn_is_invariant_and_the_plain_cnn_is_not():
    torch.manual_seed(0)
    counts = torch.poisson(torch.rand(4, 1, 32, 32) * 20)
    for net, invariant in ((d4_cnn().eval(), True), (ntampaka_cnn().eval(), False)):
        with torch.no_grad():
            ref = net(counts)
            worst = max((net(d4_transform(counts, g)) - ref).abs().max().item() for g in range(1, 8))
        if invariant:
            assert worst < 1e-5
        else:
            assert worst > 1e-4


def test_ntampaka_architecture_and_similar_parameter_counts():
    net = ntampaka_cnn()
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64] and all(c.kernel_size == (3, 3) for c in convs)
    linears = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == [200, 100, 20, 1]
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 2
    # the D4 network differs only in its convolutions: the same head, dropout and pooling, no batch norm
    d4 = d4_cnn()
    assert [m.out_features for m in d4.modules() if isinstance(m, torch.nn.Linear)] == linears
    assert sum(isinstance(m, torch.nn.Dropout) for m in d4.modules()) == 2
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d4.modules())
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 1)
    assert abs(n_parameters(d4_cnn()) / n_parameters(net) - 1) < 0.15


def test_aperture_mass_recovers_a_known_power_law():
    # discs whose counts follow log10 C = 3 + 1.5 (log M - 14) on a flat background: the fit must invert it
    rng = np.random.default_rng(0)
    log_m = rng.uniform(13.5, 15, 200)
    disc = radius_map(32) <= 6
    background = 2.0
    images = background + disc[None] * (10 ** (3 + 1.5 * (log_m - 14)) / disc.sum())[:, None, None]
    est = ApertureMass("total", pixel_kpc=10.0, background_per_pixel=background, redshift=0.05).fit(images, log_m)
    assert est.slope_ == pytest.approx(1 / 1.5, rel=1e-6)
    np.testing.assert_allclose(est.predict(images), log_m, atol=1e-8)


def test_core_excised_iteration_finds_the_mass():
    # self-similar clusters: surface brightness A(M) f(r / R500) with the annulus counts a power law of M; the
    # R500 iteration, started from the whole-field estimate, must settle on the true mass
    rng = np.random.default_rng(1)
    log_m = rng.uniform(13.5, 15, 150)
    pixel_kpc, size = 60.0, 96
    r500_px = r500_kpc(log_m) / pixel_kpc
    r = radius_map(size)[None] / r500_px[:, None, None]
    shape = 1 / (1 + (r / 0.2) ** 2) ** 1.5
    annulus = (((r >= 0.15) & (r <= 1)) * shape).sum((1, 2))
    images = shape * (10 ** (3 + 1.5 * (log_m - 14)) / annulus)[:, None, None]
    est = ApertureMass("core_excised", pixel_kpc, background_per_pixel=0.0, redshift=0.05).fit(images, log_m)
    assert est.slope_ == pytest.approx(1 / 1.5, rel=1e-6)
    error = np.abs(est.predict(images) - log_m)
    # pixels enter the annulus one at a time, so the fixed point is exact only to a pixel's worth of counts
    assert np.median(error) < 1e-3 and error.max() < 5e-3
    assert est.unconverged_ <= 3


@pytest.fixture(scope="module")
def cm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run("cluster_mass", out=out, name="smoke", seed=1, overrides={"size": "smoke"})


def test_smoke_run_reports_every_method(cm_run):
    m = json.loads((cm_run / "metrics.json").read_text())
    res = m["results"]["mass"]
    assert set(res) == set(METHODS)
    for method in METHODS:
        r = res[method]
        for key in ("scatter_dex", "bias_dex", "rot_std_dex", "scatter_pct"):
            assert np.isfinite(r[key]) and f"{key}_err" in r
        assert r["scatter_dex"] > 0 and r["rot_std_dex"] >= 0
        assert r["scatter_pct"] == pytest.approx(100 * (10 ** r["scatter_dex"] - 1), rel=0.05)
        assert len(r["scatter_pct_by_fold"]) == 2
    assert res["d4cnn"]["rot_std_dex"] < 1e-4  # exact invariance, even untrained
    assert res["lm_total"]["rot_std_dex"] < 1e-9  # a centred circular aperture does not care either
    for method in ("cnn", "cnn_aug", "d4cnn"):
        assert 0 < res[method]["saliency_core_to_outer_ratio"] < np.inf
    assert 0 <= res["lm_core_excised"]["unconverged_fraction"] <= 1
    assert "folds" in m["error_bars"]
    figures = {p.name for p in (cm_run / "figures").glob("*.png")}
    assert {"predicted_vs_true.png", "residual_vs_mass.png", "scatter_by_method.png", "sample_images.png",
            "saliency.png", "loss_cnn.png", "loss_d4cnn.png"} <= figures
    assert "Ntampaka" in (cm_run / "report.html").read_text()


def test_predict_writes_one_mass_per_image_and_method(cm_run, tmp_path):
    data = tmp_path / "new.fits"
    assert main(["simulate", "cluster_mass", "--out", str(data), "--n", "2", "--seed", "9",
                 "--set", "n_projections=2"]) == 0
    out = tmp_path / "pred.csv"
    assert main(["predict", str(cm_run), "--data", str(data), "--out", str(out)]) == 0
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert {"cnn_log_m500", "cnn_aug_log_m500", "d4cnn_log_m500"} <= set(rows[0])
    assert all(10 < float(r["d4cnn_log_m500"]) < 17 for r in rows)


def test_a_file_without_cluster_ids_uses_its_own_split(tmp_path):
    from astrobench.tasks.cluster_mass.simulate import simulate

    path = simulate(tmp_path / "sim.fits", n=12, seed=2, n_projections=2, image_size=32)
    with fits.open(path) as hdus:  # the school's real file has only log_M500 and the three flags
        table = hdus[2]
        keep = [c for c in table.columns if c.name in ("log_M500", "train", "validate", "test")]
        fits.HDUList([fits.PrimaryHDU(), hdus[1].copy(), fits.BinTableHDU.from_columns(keep)]).writeto(
            tmp_path / "school.fits")
    run_dir = run("cluster_mass", data=tmp_path / "school.fits", out=tmp_path, name="school", seed=0,
                  overrides={"size": "smoke", "methods": ["lm_total", "d4cnn"]})
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["data"]["source"] == "file" and m["data"]["has_cluster_id"] is False
    assert "bootstrap" in m["error_bars"] and len(m["data"]["folds"]) == 1
    assert m["data"]["pixel_arcsec"] == pytest.approx(16.79 * 60 / 32)  # read from the header
    assert set(m["results"]["mass"]) == {"lm_total", "d4cnn"}
    assert "scatter_dex_err" in m["results"]["mass"]["d4cnn"]


def test_option_errors():
    with pytest.raises(ConfigError, match="k_folds"):
        resolve_config("cluster_mass", overrides={"size": "smoke", "k_folds": 1})
    with pytest.raises(ConfigError, match="methods"):
        resolve_config("cluster_mass", overrides={"methods": ["cnn", "magic"]})
    with pytest.raises(ConfigError, match="image_size"):
        resolve_config("cluster_mass", overrides={"image_size": 60})
    assert resolve_config("cluster_mass", overrides={"size": "paper"})["options"]["n_projections"] == 24
