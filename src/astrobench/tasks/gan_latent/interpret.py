"""Brute-force interpretation of a latent space: how latent dimensions relate to physical factors.

Every function takes ``latents`` (n, n_latent) and ``factors`` (n, n_factor) - for a generator, the latent vectors
it was fed and the parameters re-measured on what it made. Scores follow their papers; disentanglement_lib
(Locatello et al. 2019) is not installable here (TensorFlow 1), so the few lines each takes are written out:

- ``mig`` (Chen et al. 2018): for each factor, the gap between the largest and second-largest mutual information
  with a latent dimension, over the factor's entropy; both discretised into equal-frequency bins.
- ``sap`` (Kumar et al. 2018): for each factor, the gap between the two best single-latent linear R^2.
- ``dci`` (Eastwood & Williams 2018): an importance matrix from gradient-boosted trees predicting each factor
  from all latents; disentanglement (each latent informs one factor), completeness (each factor lives in one
  latent) and informativeness (held-out R^2).

Factors are assumed independent by these scores; re-measured physical parameters are not (age and specific star
formation rate are anticorrelated in galaxies), which caps what any latent space can score.
"""

from __future__ import annotations

import numpy as np

N_BINS = 20  # the discretisation for MIG and the mutual-information matrix


def discretize(x: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Equal-frequency bin index of every value, per column. Tied values share a bin, so a column with a pile (a
    floor value, say) gets fewer bins than ``n_bins``."""
    x = np.asarray(x, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        edges = np.unique(np.quantile(x[:, j], np.linspace(0, 1, n_bins + 1)[1:-1]))
        out[:, j] = np.searchsorted(edges, x[:, j], side="right")
    return out


def entropy(bins: np.ndarray) -> float:
    """Entropy (nats) of a discrete variable given as integer labels."""
    p = np.bincount(bins) / len(bins)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information_matrix(latents: np.ndarray, factors: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """(n_latent, n_factor) mutual information in nats between discretised latents and factors."""
    from sklearn.metrics import mutual_info_score

    zl, fl = discretize(latents, n_bins), discretize(factors, n_bins)
    return np.array([[mutual_info_score(fl[:, k], zl[:, i]) for k in range(fl.shape[1])] for i in range(zl.shape[1])])


def mig(latents: np.ndarray, factors: np.ndarray, n_bins: int = N_BINS) -> tuple[float, np.ndarray]:
    """Mutual information gap: the mean over factors, and the value per factor."""
    mi = mutual_information_matrix(latents, factors, n_bins)
    if mi.shape[0] < 2:
        raise ValueError("MIG needs at least two latent dimensions")
    top = np.sort(mi, axis=0)[::-1]
    h = np.array([entropy(b) for b in discretize(factors, n_bins).T])
    per_factor = (top[0] - top[1]) / np.maximum(h, 1e-12)
    return float(per_factor.mean()), per_factor


def correlation_matrix(latents: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(n_latent, n_factor) Pearson correlation."""
    zl = (latents - latents.mean(0)) / (latents.std(0) + 1e-12)
    fl = (factors - factors.mean(0)) / (factors.std(0) + 1e-12)
    return zl.T @ fl / len(latents)


def sap(latents: np.ndarray, factors: np.ndarray) -> tuple[float, np.ndarray]:
    """Separated attribute predictability for continuous factors: the single-latent linear R^2 (a squared
    correlation) of every pair; per factor the gap between its best two latents; returns the mean and the gaps."""
    r2 = correlation_matrix(latents, factors) ** 2
    if r2.shape[0] < 2:
        raise ValueError("SAP needs at least two latent dimensions")
    top = np.sort(r2, axis=0)[::-1]
    gaps = top[0] - top[1]
    return float(gaps.mean()), gaps


def best_dim_r2(latents: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per factor: the linear R^2 of its best single latent dimension, and which dimension that is."""
    r2 = correlation_matrix(latents, factors) ** 2
    return r2.max(0), r2.argmax(0)


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, 29]).permutation(n)
    return order[: n // 2], order[n // 2:]


def linear_r2(latents: np.ndarray, factors: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per factor: held-out R^2 of a linear model on the whole latent vector (fitted on one half, scored on the
    other), i.e. how much of the factor one straight direction in latent space carries."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    fit_rows, test_rows = _halves(len(latents), seed)
    model = LinearRegression().fit(latents[fit_rows], factors[fit_rows])
    return r2_score(factors[test_rows], model.predict(latents[test_rows]), multioutput="raw_values")


def dci(latents: np.ndarray, factors: np.ndarray, seed: int = 0, max_fit: int = 5000) -> dict[str, object]:
    """DCI scores from gradient-boosted-tree importances (as disentanglement_lib computes them).

    Returns ``disentanglement``, ``completeness``, ``informativeness`` (mean held-out R^2) and the
    ``importance`` matrix (n_latent, n_factor), each column summing to 1. Trees are fitted on at most
    ``max_fit`` objects of one half and scored on the other half.
    """
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.metrics import r2_score

    n_latent, n_factor = latents.shape[1], factors.shape[1]
    fit_rows, test_rows = _halves(len(latents), seed)
    fit_rows = fit_rows[:max_fit]
    importance = np.zeros((n_latent, n_factor))
    informativeness = np.zeros(n_factor)
    for k in range(n_factor):
        model = GradientBoostingRegressor(n_estimators=100, max_depth=3, subsample=0.8, random_state=seed)
        model.fit(latents[fit_rows], factors[fit_rows, k])
        importance[:, k] = model.feature_importances_
        informativeness[k] = r2_score(factors[test_rows, k], model.predict(latents[test_rows]))

    def one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
        p = np.where(p.sum(0, keepdims=True) > 0, p, 1.0)  # a column without importance counts as spread evenly
        p = p / p.sum(0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log(p), 0.0).sum(0) / np.log(base)
        return 1 - h

    # disentanglement: per latent, over factors (rows of importance), weighted by the latent's total importance
    d_per_latent = one_minus_entropy(importance.T, n_factor) if n_factor > 1 else np.full(n_latent, np.nan)
    weight = importance.sum(1) / max(importance.sum(), 1e-12)
    completeness = one_minus_entropy(importance, n_latent) if n_latent > 1 else np.full(n_factor, np.nan)
    return {"disentanglement": float((weight * d_per_latent).sum()), "completeness": float(completeness.mean()),
            "informativeness": float(informativeness.mean()), "informativeness_per_factor": informativeness,
            "importance": importance}


def interpret(latents: np.ndarray, factors: np.ndarray, names: list[str], seed: int = 0,
              n_bins: int = N_BINS) -> dict[str, object]:
    """Every score of the ``interpret`` experiment, keyed as metrics.json stores them."""
    corr = correlation_matrix(latents, factors)
    mi = mutual_information_matrix(latents, factors, n_bins)
    mig_value, mig_per = mig(latents, factors, n_bins)
    sap_value, _ = sap(latents, factors)
    best_r2, best_dim = best_dim_r2(latents, factors)
    lin = linear_r2(latents, factors, seed)
    d = dci(latents, factors, seed)
    as_matrix = lambda m: {p: [float(v) for v in m[:, k]] for k, p in enumerate(names)}  # noqa: E731
    return {
        "n_samples": int(len(latents)), "latent_dim": int(latents.shape[1]),
        "best_dim_r2": {p: float(best_r2[k]) for k, p in enumerate(names)},
        "best_dim": {p: int(best_dim[k]) for k, p in enumerate(names)},
        "linear_r2": {p: float(lin[k]) for k, p in enumerate(names)},
        "mig": mig_value, "mig_by_param": {p: float(mig_per[k]) for k, p in enumerate(names)},
        "sap": sap_value,
        "dci_disentanglement": d["disentanglement"], "dci_completeness": d["completeness"],
        "dci_informativeness": d["informativeness"],
        "correlation_matrix": as_matrix(corr), "mi_matrix": as_matrix(mi),
        "dci_importance_matrix": as_matrix(d["importance"]),
    }
