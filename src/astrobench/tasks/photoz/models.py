"""Point and probabilistic redshift estimators (scikit-learn), each tuned by cross-validation on the training split.

Every estimator is a scikit-learn pipeline, so a tuned model is one object that can be pickled into the run
folder and applied to a new catalogue (``astrobench predict``). Inputs may hold NaN (the ``colors`` set marks a
missing band so): trees and histogram gradient boosting split on it natively, the others see it median-imputed.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import loguniform

POINT_METHODS = ("tree_default", "tree_tuned", "random_forest", "gbm", "knn", "svr", "mlp")
PDF_METHODS = ("quantile_gbm", "knn_pdf")

# the Hello Universe notebook's search: RandomizedSearchCV, 100 draws, sklearn's default 5-fold CV
TREE_SEARCH = {"max_depth": np.arange(1, 20, 2), "min_samples_split": np.arange(5, 105, 10),
               "min_samples_leaf": np.arange(5, 105, 10)}
SEARCH_SPACES: dict[str, dict[str, Any]] = {
    "random_forest": {"model__max_depth": [None, 12, 18, 25], "model__min_samples_leaf": [1, 2, 4, 8],
                      "model__max_features": [0.3, 0.5, 0.7, 1.0]},
    "gbm": {"model__learning_rate": loguniform(0.02, 0.2), "model__max_leaf_nodes": [15, 31, 63, 127],
            "model__min_samples_leaf": [5, 10, 20, 40], "model__l2_regularization": loguniform(1e-3, 3.0)},
    "knn": {"model__n_neighbors": [3, 5, 7, 10, 15, 20, 30, 50], "model__weights": ["uniform", "distance"],
            "model__p": [1, 2]},
    "svr": {"model__C": loguniform(0.3, 300), "model__gamma": loguniform(3e-3, 0.3),
            "model__epsilon": [0.005, 0.01, 0.03, 0.1]},
    "mlp": {"model__hidden_layer_sizes": [(64, 64), (128, 128), (256, 128), (128, 128, 64)],
            "model__alpha": loguniform(1e-6, 1e-2), "model__learning_rate_init": loguniform(3e-4, 3e-3)},
}
# quantile levels of the quantile-regression PDF (a CDF is interpolated between them)
QUANTILES = (0.02, 0.05, 0.1, 0.16, 0.25, 0.35, 0.5, 0.65, 0.75, 0.84, 0.9, 0.95, 0.98)


def _pipeline(model, impute: bool, scale: bool):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = []
    if impute:
        steps.append(("impute", SimpleImputer(strategy="median", keep_empty_features=True)))
    if scale:
        steps.append(("scale", StandardScaler()))
    return Pipeline([*steps, ("model", model)])


def make_estimator(method: str, seed: int, n_jobs: int = 1):
    """The untuned estimator (a Pipeline) of a point method."""
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.neural_network import MLPRegressor
    from sklearn.svm import SVR
    from sklearn.tree import DecisionTreeRegressor

    if method in ("tree_default", "tree_tuned"):
        return _pipeline(DecisionTreeRegressor(random_state=seed), impute=False, scale=False)
    if method == "random_forest":
        return _pipeline(RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=n_jobs), False, False)
    if method == "gbm":
        return _pipeline(HistGradientBoostingRegressor(max_iter=2000, early_stopping=True, validation_fraction=0.1,
                                                       n_iter_no_change=30, random_state=seed), False, False)
    if method == "knn":
        return _pipeline(KNeighborsRegressor(), impute=True, scale=True)
    if method == "svr":
        return _pipeline(SVR(kernel="rbf", cache_size=1000), impute=True, scale=True)
    if method == "mlp":
        return _pipeline(MLPRegressor(max_iter=500, early_stopping=True, n_iter_no_change=20, random_state=seed),
                         impute=True, scale=True)
    raise ValueError(f"unknown point method {method!r}; known: {', '.join(POINT_METHODS)}")


@dataclass
class FittedPoint:
    """A tuned and refitted point estimator with what its tuning found."""

    method: str
    estimator: Any
    best_params: dict[str, Any] = field(default_factory=dict)
    cv_mse: float = float("nan")
    n_train: int = 0
    seconds: float = 0.0

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.clip(self.estimator.predict(X), 0.0, None)  # a redshift is not negative


@dataclass(frozen=True)
class SearchBudget:
    """The randomised searches' budget: ``n_iter`` draws x ``cv_folds`` folds over ``SEARCH_SPACES``, and for
    ``tree_tuned`` the notebook's own search, ``tree_n_iter`` draws x ``tree_cv_folds`` folds over ``TREE_SEARCH``."""

    n_iter: int = 10
    cv_folds: int = 3
    tree_n_iter: int = 100
    tree_cv_folds: int = 5


def fit_point(method: str, X: np.ndarray, y: np.ndarray, seed: int, budget: SearchBudget = SearchBudget(),
              max_rows: int | None = None, n_jobs: int = 1) -> FittedPoint:
    """Tune ``method`` by randomised search (negative MSE) within ``budget`` on ``(X, y)`` only, refit on all of it.

    ``max_rows`` caps the rows a method trains on (SVR: its cost grows faster than quadratically), a random subset
    drawn with ``seed``."""
    from sklearn.model_selection import KFold, RandomizedSearchCV

    start = time.perf_counter()
    if max_rows is not None and len(y) > max_rows:
        keep = np.random.default_rng(seed).choice(len(y), max_rows, replace=False)
        X, y = X[keep], y[keep]
    estimator = make_estimator(method, seed, n_jobs=n_jobs if method == "random_forest" else 1)
    if method == "tree_default":
        estimator.fit(X, y)
        return FittedPoint(method, estimator, n_train=len(y), seconds=time.perf_counter() - start)
    if method == "tree_tuned":
        space = {f"model__{k}": v for k, v in TREE_SEARCH.items()}
        draws, folds = budget.tree_n_iter, budget.tree_cv_folds
    else:
        space, draws, folds = SEARCH_SPACES[method], budget.n_iter, budget.cv_folds
    search = RandomizedSearchCV(estimator, space, n_iter=draws, scoring="neg_mean_squared_error",
                                cv=KFold(folds, shuffle=True, random_state=seed), random_state=seed,
                                n_jobs=1 if method == "random_forest" else n_jobs, refit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP convergence notices inside the search
        search.fit(X, y)
    params = {k.removeprefix("model__"): _plain(v) for k, v in search.best_params_.items()}
    return FittedPoint(method, search.best_estimator_, params, float(-search.best_score_), len(y),
                       time.perf_counter() - start)


def _plain(value):
    """JSON-friendly hyperparameter values (numpy scalars and tuples)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


# --- probabilistic redshifts --------------------------------------------------------------------------------

Z_PDF_GRID = np.linspace(0.0, 7.0, 1401)  # where CDFs are evaluated (CRPS integral, figures); real z_spec reach ~6


class QuantileGBM:
    """One histogram gradient-boosting model per quantile level (pinball loss), with the hyperparameters of the
    tuned point ``gbm``; quantiles that cross are sorted. ``cdf(X, z)`` interpolates linearly between the
    quantiles and extends the outermost intervals linearly to 0 at z = 0 and to 1 at ``Z_PDF_GRID[-1]`` (z = 7)."""

    def __init__(self, params: dict[str, Any] | None = None, quantiles=QUANTILES, seed: int = 0):
        self.params = dict(params or {})
        self.quantiles = np.asarray(quantiles)
        self.seed = seed

    def fit(self, X, y):
        from sklearn.ensemble import HistGradientBoostingRegressor

        self.models_ = []
        for q in self.quantiles:
            model = HistGradientBoostingRegressor(loss="quantile", quantile=float(q), max_iter=2000,
                                                  early_stopping=True, validation_fraction=0.1, n_iter_no_change=30,
                                                  random_state=self.seed, **self.params)
            self.models_.append(model.fit(X, y))
        return self

    def predict_quantiles(self, X) -> np.ndarray:
        q = np.column_stack([m.predict(X) for m in self.models_])
        return np.sort(np.clip(q, 0.0, Z_PDF_GRID[-1]), axis=1)

    def cdf_grid(self, X) -> np.ndarray:
        """CDF of each object on ``Z_PDF_GRID`` (n, n_grid)."""
        qz = self.predict_quantiles(X)
        levels = np.r_[0.0, self.quantiles, 1.0]
        out = np.empty((len(qz), len(Z_PDF_GRID)))
        for i, row in enumerate(qz):
            knots = np.r_[0.0, row, Z_PDF_GRID[-1]]
            knots = np.maximum.accumulate(knots + np.arange(len(knots)) * 1e-9)  # strictly increasing
            out[i] = np.interp(Z_PDF_GRID, knots, levels)
        return out


class KNNPDF:
    """Redshift PDF from the spectroscopic redshifts of the k nearest training galaxies in standardised feature
    space (median-imputed), each smoothed by a Gaussian of width ``bandwidth`` (1 + z): the empirical method of
    e.g. Beck et al. (2016) in its simplest form. ``k`` and ``bandwidth`` are tuned on the training split by the
    CRPS of a held-out fold."""

    def __init__(self, k: int = 30, bandwidth: float = 0.02):
        self.k = k
        self.bandwidth = bandwidth

    def fit(self, X, y):
        from sklearn.impute import SimpleImputer
        from sklearn.neighbors import NearestNeighbors
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.transform_ = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
        self.neighbours_ = NearestNeighbors(n_neighbors=self.k).fit(self.transform_.fit_transform(X))
        self.y_ = np.asarray(y, dtype=float)
        return self

    def cdf_grid(self, X) -> np.ndarray:
        from scipy.special import ndtr

        _, idx = self.neighbours_.kneighbors(self.transform_.transform(X))
        zn = self.y_[idx]  # (n, k)
        width = self.bandwidth * (1 + zn)
        out = np.empty((len(zn), len(Z_PDF_GRID)))
        rows = max(1, int(2e7 // (self.k * len(Z_PDF_GRID))))  # (rows, k, grid) blocks of at most 160 MB
        for start in range(0, len(zn), rows):
            block = slice(start, start + rows)
            out[block] = ndtr((Z_PDF_GRID[None, None, :] - zn[block, :, None]) / width[block, :, None]).mean(axis=1)
        return out


def tune_knn_pdf(X, y, seed: int, ks=(10, 20, 40, 80), bandwidths=(0.01, 0.03, 0.06)) -> KNNPDF:
    """Pick k and bandwidth by CRPS on a held-out fifth of the training split, refit on all of it."""
    from astrobench.core.metrics import crps_from_cdf

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    hold, fit_rows = order[: len(y) // 5], order[len(y) // 5:]
    best, best_score = None, np.inf
    for k in ks:
        k = min(k, len(fit_rows))
        for h in bandwidths:
            model = KNNPDF(k, h).fit(X[fit_rows], y[fit_rows])
            score = crps_from_cdf(model.cdf_grid(X[hold]), Z_PDF_GRID, y[hold]).mean()
            if score < best_score:
                best, best_score = (k, h), score
    return KNNPDF(*best).fit(X, y)
