"""Metrics shared by the tasks, with bootstrap error bars, and the one classifier two-sample test."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

N_BOOT = 200  # bootstrap resamples behind every ``_err``


def bootstrap(stat: Callable[..., float], *arrays: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
              groups: np.ndarray | None = None) -> tuple[float, float]:
    """``stat(*arrays)`` and its bootstrap standard error over objects (rows of the arrays).

    With ``groups`` (a label per row) whole groups are resampled: rows of one group (the maps of one simulation,
    say) are correlated, and resampling them one by one would understate the error."""
    value = float(stat(*arrays))
    n = len(arrays[0])
    members = None if groups is None else [np.flatnonzero(groups == g) for g in np.unique(groups)]
    n_units = n if members is None else len(members)
    if n_units < 2:
        return value, float("nan")
    rng = np.random.default_rng(seed)
    draws = []
    for pick in rng.integers(0, n_units, size=(n_boot, n_units)):
        idx = pick if members is None else np.concatenate([members[p] for p in pick])
        draws.append(stat(*(a[idx] for a in arrays)))
    return value, float(np.std(draws, ddof=1))


def with_error(name: str, stat: Callable[..., float], *arrays: np.ndarray, seed: int = 0) -> dict[str, float]:
    """``{name: value, name_err: bootstrap error}``, the layout every metrics.json leaf group uses."""
    value, err = bootstrap(stat, *arrays, seed=seed)
    return {name: value, f"{name}_err": err}


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of objects whose predicted label equals the true one; ``y_true`` and ``y_pred`` (N,)."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def expected_calibration_error(probabilities: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017): the mean |accuracy - confidence| over equal-width
    confidence bins, weighted by the fraction of objects in each. ``probabilities`` (N, K), ``y_true`` (N,)."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(total)


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean square of (true - predicted), in the units of ``y``; ``y_true`` and ``y_pred`` of equal shape."""
    return float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2)))


def bias(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean of (predicted - true)."""
    return float(np.mean(np.asarray(y_pred) - np.asarray(y_true)))


def sigma68(x: np.ndarray) -> float:
    """Half-width of the central 68 % of ``x`` (robust sigma)."""
    lo, hi = np.percentile(x, [16, 84])
    return float((hi - lo) / 2)


def rel_err_sigma68(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Half-width of the central 68 % of (true - predicted) / true."""
    y_true = np.asarray(y_true, dtype=float)
    return sigma68((y_true - np.asarray(y_pred)) / y_true)


def sigma_nmad(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Normalised median absolute deviation 1.4826 * median(|d - median(d)|) of d = pred - true."""
    d = np.asarray(y_pred) - np.asarray(y_true)
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """1 - SS_res / SS_tot; NaN where the true values do not vary (a test set of one simulation, say)."""
    y_true = np.asarray(y_true, dtype=float)
    if np.ptp(y_true) == 0:
        return float("nan")
    return float(1 - np.sum((y_true - y_pred) ** 2) / np.sum((y_true - y_true.mean()) ** 2))


# --- photometric redshifts: statistics of delta = (z_phot - z_spec) / (1 + z_spec) (e.g. Brammer et al. 2008) ---

OUTLIER_DELTA = 0.15  # |delta| above which a photometric redshift is an outlier


def redshift_delta(z_spec: np.ndarray, z_phot: np.ndarray) -> np.ndarray:
    """(z_phot - z_spec) / (1 + z_spec), dimensionless, per galaxy."""
    return (np.asarray(z_phot) - z_spec) / (1 + z_spec)


REDSHIFT_POINT_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mse": lambda t, p: np.mean((p - t) ** 2),  # of z itself
    "sigma_nmad": lambda t, p: 1.4826 * np.median(np.abs(redshift_delta(t, p) - np.median(redshift_delta(t, p)))),
    "outlier_frac": lambda t, p: np.mean(np.abs(redshift_delta(t, p)) > OUTLIER_DELTA),
    "bias": lambda t, p: np.median(redshift_delta(t, p)),
}
"""Point-estimate metrics ``fn(z_spec, z_phot)`` of photometric redshifts; sigma_nmad, outlier_frac and bias are of
delta."""


# --- classifier two-sample test (Lopez-Paz & Oquab 2017; as in the sbibm benchmark) -------------------

def _c2st_scores_vectors(x_train, y_train, x_test, seed: int) -> np.ndarray:
    """Vectors: standardised features -> 2-layer MLP (256, 256), 100 Adam epochs (sbibm's choice, wider)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(256, 256), alpha=1e-3, max_iter=100,
                                                        early_stopping=False, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train.reshape(len(x_train), -1), y_train)
    return clf.predict_proba(x_test.reshape(len(x_test), -1))[:, 1]


C2ST_IMAGE_EPOCHS = 30
C2ST_MIN_SAMPLES = 20


def _c2st_scores_images(x_train, y_train, x_test, seed: int) -> np.ndarray:
    """Images (N, H, W) or (N, C, H, W): a small CNN (ConvNet 16-32-64), AdamW, 30 epochs, early stopping on a
    fifth of the training part; images see local texture that a pixel MLP misses."""
    import tempfile

    import torch

    from astrobench.core.nets import ConvNet
    from astrobench.core.training import (
        ClassificationTask,
        TrainConfig,
        as_dataset,
        fit,
        predict_batches,
    )

    if x_train.ndim == 3:
        x_train, x_test = x_train[:, None], x_test[:, None]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_train))
    n_val = max(2, len(order) // 5)
    val, train = order[:n_val], order[n_val:]
    torch.manual_seed(seed)
    module = ClassificationTask(ConvNet(x_train.shape[1], 2, x_train.shape[-1], (16, 32, 64)), lr=1e-3)
    cfg = TrainConfig(max_epochs=C2ST_IMAGE_EPOCHS, batch_size=64, patience=6, seed=seed, accelerator="cpu",
                      devices=1, progress=False)
    as_set = lambda idx: as_dataset(x_train[idx], y_train[idx], dtypes=(torch.float32, torch.long))  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        fit(module, as_set(train), as_set(val), tmp, cfg)
    return predict_batches(lambda t: torch.softmax(module(t), dim=1), x_test.astype(np.float32))[:, 1]


def c2st_auc(sample_a: np.ndarray, sample_b: np.ndarray, seed: int = 0, test_fraction: float = 0.5) -> dict[str, float]:
    """Classifier two-sample test: ROC AUC of telling ``sample_a`` from ``sample_b`` on held-out objects.

    Both samples are cut to the same size. The classifier is fixed by the data's shape (vectors: an MLP;
    images, i.e. 3-D or 4-D arrays: a small CNN) and trained on ``1 - test_fraction`` of each sample; it is
    scored on the rest. 0.5 means indistinguishable, 1 means fully separable. ``c2st_auc_err`` is the
    bootstrap error over the held-out objects.
    """
    from sklearn.metrics import roc_auc_score

    n = min(len(sample_a), len(sample_b))
    if n < C2ST_MIN_SAMPLES:
        raise ValueError(f"C2ST needs at least {C2ST_MIN_SAMPLES} objects per sample, got {n}")
    a = np.asarray(sample_a[:n], dtype=np.float32)
    b = np.asarray(sample_b[:n], dtype=np.float32)
    rng = np.random.default_rng(seed)
    n_test = int(round(test_fraction * n))
    ia, ib = rng.permutation(n), rng.permutation(n)
    x_train = np.concatenate([a[ia[n_test:]], b[ib[n_test:]]])
    y_train = np.r_[np.zeros(n - n_test), np.ones(n - n_test)].astype(np.int64)
    x_test = np.concatenate([a[ia[:n_test]], b[ib[:n_test]]])
    y_test = np.r_[np.zeros(n_test), np.ones(n_test)]
    scorer = _c2st_scores_images if a.ndim >= 3 else _c2st_scores_vectors
    score = scorer(x_train, y_train, x_test, seed)

    def auc(y, s):
        return roc_auc_score(y, s) if 0 < y.sum() < len(y) else 0.5

    value, err = bootstrap(auc, y_test, score, seed=seed)
    return {"c2st_auc": value, "c2st_auc_err": err}


def c2st_with_controls(reference: np.ndarray, other_real: np.ndarray, generated: dict[str, np.ndarray],
                       degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray],
                       seed: int = 0) -> dict[str, dict[str, float]]:
    """C2ST of each generated sample against ``reference``, beside the two controls.

    ``reference`` and ``other_real`` are disjoint real samples the generators never saw, of equal size;
    ``generated[name]`` is made for the labels of ``other_real``. Controls: ``real_vs_real`` (reference vs
    other_real; should be about 0.5) and ``real_vs_degraded`` (reference vs ``degrade(other_real)``; should be
    >= 0.9, or the classifier is too weak to judge the generators).
    """
    rng = np.random.default_rng(seed)
    out = {"real_vs_real": c2st_auc(reference, other_real, seed),
           "real_vs_degraded": c2st_auc(reference, degrade(other_real, rng), seed)}
    for name, sample in generated.items():
        out[name] = c2st_auc(reference, sample, seed)
    return out


# --- probabilistic predictions: CDFs on a grid -------------------------------------------------------------

def pit_from_cdf(cdf: np.ndarray, grid: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Probability integral transform F_i(y_i) of each object's CDF ``cdf[i]`` (tabulated on ``grid``)."""
    return np.array([np.interp(v, grid, row) for row, v in zip(cdf, np.asarray(y, dtype=float))])


def crps_from_cdf(cdf: np.ndarray, grid: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Continuous ranked probability score of each object, int (F(x) - 1[x >= y])^2 dx over ``grid`` (in the units
    of ``y``; lower is better; equals the absolute error for a point forecast)."""
    step = (grid[None, :] >= np.asarray(y, dtype=float)[:, None]).astype(float)
    return np.trapezoid((cdf - step) ** 2, grid, axis=1)


def pit_ks(pit: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of PIT values from the uniform distribution (0: perfectly calibrated)."""
    from scipy.stats import kstest

    return float(kstest(np.asarray(pit), "uniform").statistic)


def coverage(pit: np.ndarray, level: float = 0.68) -> float:
    """Fraction of objects inside their central ``level`` interval (PIT within (1 -+ level) / 2)."""
    pit = np.asarray(pit)
    lo, hi = (1 - level) / 2, (1 + level) / 2
    return float(np.mean((pit >= lo) & (pit <= hi)))


class PITRecalibration:
    """Recalibrates predicted CDFs by the empirical CDF of PIT values on held-out data (Kuleshov et al. 2018):
    F'(z) = R(F(z)) with R(u) = fraction of calibration objects with PIT <= u. Fit it on a validation split,
    never on the objects it is scored on."""

    def fit(self, pit: np.ndarray) -> PITRecalibration:
        """Store the sorted PIT values (N,) of the calibration objects; returns self."""
        self.sorted_ = np.sort(np.asarray(pit, dtype=float))
        return self

    def __call__(self, u: np.ndarray) -> np.ndarray:
        """The recalibrated value R(u) of CDF values ``u`` in [0, 1] (any shape; the result has the same)."""
        # the empirical CDF, linearly interpolated between its steps (0 at u = 0, 1 at u = 1)
        n = len(self.sorted_)
        return np.interp(u, np.r_[0.0, self.sorted_, 1.0], np.r_[0.0, (np.arange(n) + 0.5) / n, 1.0])
