import numpy as np
import pytest

from astrobench.core import metrics as M


def test_sigma68_and_rel_err_known_answers():
    x = np.random.default_rng(0).normal(0, 2.0, 200_000)
    assert M.sigma68(x) == pytest.approx(2.0, rel=0.01)
    y_true = np.full(200_000, 10.0)
    assert M.rel_err_sigma68(y_true, y_true - x) == pytest.approx(0.2, rel=0.01)


def test_basic_metrics():
    assert M.accuracy(np.array([1, 2, 2]), np.array([1, 2, 1])) == pytest.approx(2 / 3)
    assert M.rmse(np.zeros(4), np.array([1, -1, 1, -1])) == 1.0
    assert M.bias(np.zeros(3), np.array([1, 2, 3])) == 2.0
    assert M.r2(np.array([1.0, 2, 3]), np.array([1.0, 2, 3])) == 1.0


def test_grouped_bootstrap_resamples_whole_groups():
    """40 groups of 15 identical rows: the error of the mean is that of 40 values, not of 600."""
    rng = np.random.default_rng(1)
    x = np.repeat(rng.normal(size=40), 15)
    groups = np.repeat(np.arange(40), 15)
    _, err_grouped = M.bootstrap(np.mean, x, n_boot=400, groups=groups)
    _, err_rows = M.bootstrap(np.mean, x, n_boot=400)
    assert err_grouped == pytest.approx(x[::15].std(ddof=1) / np.sqrt(40), rel=0.2)
    assert err_grouped > 3 * err_rows
    assert np.isnan(M.bootstrap(np.mean, x[:15], groups=groups[:15])[1])  # one group: no error bar
    assert np.isnan(M.r2(np.ones(5), np.arange(5.0)))  # r2 undefined without spread in the truth


def test_bootstrap_error_matches_standard_error_of_mean():
    x = np.random.default_rng(1).normal(0, 1, 2000)
    value, err = M.bootstrap(np.mean, x, n_boot=400)
    assert value == pytest.approx(x.mean())
    assert err == pytest.approx(1 / np.sqrt(2000), rel=0.15)


def test_c2st_separates_and_does_not_separate():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(600, 10)), rng.normal(size=(600, 10))
    shifted = rng.normal(size=(600, 10)) + 1.0
    same = M.c2st_auc(a, b, seed=0)
    diff = M.c2st_auc(a, shifted, seed=0)
    assert abs(same["c2st_auc"] - 0.5) < 0.08
    assert diff["c2st_auc"] > 0.95
    assert 0 < same["c2st_auc_err"] < 0.05


def test_c2st_with_controls_reports_both_controls():
    rng = np.random.default_rng(0)
    ref, other = rng.normal(size=(300, 5)), rng.normal(size=(300, 5))
    out = M.c2st_with_controls(ref, other, {"model": other + 0.05}, degrade=lambda x, r: x * 3, seed=0)
    assert set(out) == {"real_vs_real", "real_vs_degraded", "model"}
    assert out["real_vs_degraded"]["c2st_auc"] > 0.9
    assert out["real_vs_real"]["c2st_auc"] < 0.65


def test_image_c2st_sees_texture_that_real_rings_share():
    """The image C2ST: real vs real is chance; rings thickened by one pixel are caught."""
    from scipy.ndimage import binary_dilation

    from astrobench.tasks.rings import simulate_ring_images

    a, _ = simulate_ring_images(800, "single", seed=1)
    b, _ = simulate_ring_images(800, "single", seed=2)
    a, b = a / 255.0, b / 255.0
    cross = np.zeros((1, 3, 3), bool)
    cross[0, 1, :] = cross[0, :, 1] = True
    thick = binary_dilation(b > 0.5, structure=cross).astype(float)
    assert abs(M.c2st_auc(a, b, seed=0)["c2st_auc"] - 0.5) < 0.1
    assert M.c2st_auc(a, thick, seed=0)["c2st_auc"] > 0.85
