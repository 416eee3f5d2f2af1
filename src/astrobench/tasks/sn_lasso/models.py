"""Variable selection and the fits that follow it: LASSO with cross-validation (CV-minimum and one-standard-error
lambda), an OLS refit with bootstrap intervals, an errors-in-variables maximum-likelihood fit, stability
selection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LassoSelection:
    """LassoCV on standardised variables, read at two lambdas."""

    alphas: np.ndarray  # the lambda grid (descending)
    cv_mse: np.ndarray  # (n_alphas,) mean CV mean-squared error
    cv_se: np.ndarray  # (n_alphas,) its standard error over folds
    i_min: int
    i_1se: int
    coef_path: np.ndarray  # (n_alphas, P) coefficients on the standardised scale
    scale: np.ndarray  # (P,) standard deviation of each variable (to physical units)

    def selected(self, i: int, names: list[str]) -> list[str]:
        return [n for n, b in zip(names, self.coef_path[i]) if b != 0]

    def physical_coefficients(self, i: int, names: list[str]) -> dict[str, float]:
        return {n: float(b / s) for n, b, s in zip(names, self.coef_path[i], self.scale) if b != 0}


def lasso_cv(X: np.ndarray, y: np.ndarray, n_folds: int = 10, seed: int = 0, n_alphas: int = 100) -> LassoSelection:
    """scikit-learn's LassoCV on standardised X (shuffled K folds); the 1-SE lambda is the largest lambda whose
    CV error is within one standard error of the minimum (Hastie, Tibshirani & Friedman, ESL 7.10)."""
    from sklearn.linear_model import LassoCV, lasso_path
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    cv = LassoCV(alphas=n_alphas, cv=KFold(n_folds, shuffle=True, random_state=seed), max_iter=50000,
                 random_state=seed).fit(Xs, y)
    mse = cv.mse_path_.mean(axis=1)
    se = cv.mse_path_.std(axis=1, ddof=1) / np.sqrt(n_folds)
    i_min = int(np.argmin(mse))
    i_1se = int(np.flatnonzero(mse <= mse[i_min] + se[i_min])[0])  # alphas descend: the first is the largest
    _, coefs, _ = lasso_path(Xs, y - y.mean(), alphas=cv.alphas_, max_iter=50000)
    return LassoSelection(cv.alphas_, mse, se, i_min, i_1se, coefs.T, scaler.scale_)


def ols_bootstrap(X: np.ndarray, y: np.ndarray, n_boot: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients (intercept first) and their bootstrap draws (n_boot, 1 + P) over SNe."""
    A = np.column_stack([np.ones(len(y)), X])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    rng = np.random.default_rng(seed)
    draws = np.array([np.linalg.lstsq(A[idx], y[idx], rcond=None)[0]
                      for idx in rng.integers(0, len(y), size=(n_boot, len(y)))])
    return coef, draws


def eiv_fit(y: np.ndarray, x1: np.ndarray, c: np.ndarray, others: np.ndarray, errors: dict[str, np.ndarray]):
    """Errors-in-variables maximum likelihood for y = a0 - alpha x1_true + beta c_true + gamma . others + eps.

    The true x1 and c are latent, drawn from a Gaussian population (mean and covariance fitted); the observed
    (y, x1, c) of each SN are then jointly Gaussian with covariance B S B^T + diag(sigma_int^2, 0, 0) + C_i, where
    B maps (x1, c) to the three observables and C_i is the SN's measurement covariance (mBERR, x1ERR, cERR and
    their covariances). Integrating out the latent values is what removes the attenuation bias of OLS
    (Kelly 2007; March et al. 2011). Returns a dict with alpha, beta, gamma (array), sigma_int and a0.
    """
    from scipy.optimize import minimize

    n, k = len(y), others.shape[1]
    zeros = np.zeros(n)
    C = np.zeros((n, 3, 3))
    C[:, 0, 0] = errors["mBERR"] ** 2 + errors.get("MUERR_Z", zeros) ** 2
    C[:, 1, 1] = errors["x1ERR"] ** 2
    C[:, 2, 2] = errors["cERR"] ** 2
    C[:, 1, 2] = C[:, 2, 1] = errors.get("COV_x1_c", zeros)
    C[:, 0, 1] = C[:, 1, 0] = errors.get("COV_mB_x1", zeros)
    C[:, 0, 2] = C[:, 2, 0] = errors.get("COV_mB_c", zeros)
    obs = np.column_stack([y, x1, c])

    def unpack(theta):
        a0, alpha, beta = theta[:3]
        gamma = theta[3:3 + k]
        log_sigma, m1, m2, l11, l21, l22 = theta[3 + k:]
        L = np.array([[np.exp(l11), 0.0], [l21, np.exp(l22)]])
        return a0, alpha, beta, gamma, np.exp(log_sigma), np.array([m1, m2]), L @ L.T

    def nll(theta):
        a0, alpha, beta, gamma, sigma, m, S = unpack(theta)
        B = np.array([[-alpha, beta], [1.0, 0.0], [0.0, 1.0]])
        mean = np.column_stack([a0 - alpha * m[0] + beta * m[1] + others @ gamma, np.full(n, m[0]),
                                np.full(n, m[1])])
        cov = C + B @ S @ B.T
        cov[:, 0, 0] += sigma**2
        r = obs - mean
        sign, logdet = np.linalg.slogdet(cov)
        return 0.5 * np.sum(logdet + np.einsum("ni,ni->n", r, np.linalg.solve(cov, r[..., None])[..., 0]))

    # start from OLS and the sample moments
    A = np.column_stack([np.ones(n), x1, c, others])
    ols = np.linalg.lstsq(A, y, rcond=None)[0]
    resid = y - A @ ols
    S0 = np.cov(np.vstack([x1, c]))
    L0 = np.linalg.cholesky(S0)
    theta0 = np.concatenate([[ols[0], -ols[1], ols[2]], ols[3:], [np.log(max(resid.std(), 0.02))],
                             [x1.mean(), c.mean(), np.log(L0[0, 0]), L0[1, 0], np.log(L0[1, 1])]])
    res = minimize(nll, theta0, method="L-BFGS-B")
    a0, alpha, beta, gamma, sigma, _, _ = unpack(res.x)
    return {"a0": float(a0), "alpha": float(alpha), "beta": float(beta), "gamma": gamma, "sigma_int": float(sigma),
            "converged": bool(res.success)}


def stability_selection(X: np.ndarray, y: np.ndarray, alphas: np.ndarray, n_subsamples: int = 100,
                        threshold: float = 0.9, expected_false: float = 1.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """Meinshausen & Buehlmann (2010): LASSO on random half-samples along the lambda path; a variable's frequency
    is the largest, over the region of lambdas (from the largest down) where the union of the variables selected so
    far has on average at most q = sqrt(E[V] (2 threshold - 1) P) members, of the fraction of half-samples that
    select it. Then a variable with frequency >= ``threshold`` is "stable"
    and the expected number of falsely stable variables is at most ``expected_false`` (their Theorem 1).
    Returns ((P,) frequencies, q)."""
    from sklearn.linear_model import lasso_path
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n, p = X.shape
    selected = np.zeros((len(alphas), p))
    union_size = np.zeros(len(alphas))
    for _ in range(n_subsamples):
        idx = rng.choice(n, size=n // 2, replace=False)
        Xs = StandardScaler().fit_transform(X[idx])
        _, coefs, _ = lasso_path(Xs, y[idx] - y[idx].mean(), alphas=alphas, max_iter=20000)
        selected += coefs.T != 0
        # the union of the sets selected from the largest lambda down to each lambda (their q_Lambda)
        union_size += np.logical_or.accumulate(coefs.T != 0, axis=0).sum(axis=1)
    frequency = selected / n_subsamples
    q = int(np.sqrt(expected_false * (2 * threshold - 1) * p))
    region = union_size / n_subsamples <= q  # lambdas down to which on average at most q variables have entered
    return (frequency[region].max(axis=0) if region.any() else np.zeros(p)), q


def best_subset_press(X: np.ndarray, y: np.ndarray, max_size: int) -> tuple[int, ...]:
    """The subset of columns (up to ``max_size``) whose OLS fit has the smallest leave-one-out error, computed
    exactly from the hat matrix (PRESS = sum (e_i / (1 - h_ii))^2); every subset is tried."""
    from itertools import combinations

    n, p = X.shape
    best, best_press = (), float(np.sum((y - y.mean()) ** 2) * (n / (n - 1)) ** 2)
    for k in range(1, min(max_size, p) + 1):
        for subset in combinations(range(p), k):
            A = np.column_stack([np.ones(n), X[:, subset]])
            Q, _ = np.linalg.qr(A)
            h = np.einsum("ij,ij->i", Q, Q)
            e = y - Q @ (Q.T @ y)
            press = float(np.sum((e / (1 - h)) ** 2))
            if press < best_press:
                best, best_press = subset, press
    return best


def nested_cv_rmse(method: str, X: np.ndarray, y: np.ndarray, outer_folds: int = 5, inner_folds: int = 5,
                   seed: int = 0, screen: int = 15, max_subset: int = 6) -> np.ndarray:
    """Held-out rms error per outer fold of ``method``, whose own choices (lambda, l1 ratio, subset) are made by
    an inner cross-validation on the outer training part only.

    Methods: ``ols_all`` (every candidate), ``ridge``, ``elastic_net``, ``lasso_min``, ``lasso_1se``,
    ``adaptive_lasso`` (Zou 2006: LASSO on columns scaled by |ridge coefficient|), ``best_subset`` (the ``screen``
    candidates most correlated with y on the training part, then every subset up to ``max_subset`` by exact
    leave-one-out error; after Igarashi et al. 2018).
    """
    from sklearn.linear_model import ElasticNetCV, Lasso, LassoCV, LinearRegression, RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    inner = KFold(inner_folds, shuffle=True, random_state=seed + 1)
    errors = []
    for train, test in KFold(outer_folds, shuffle=True, random_state=seed).split(X):
        scaler = StandardScaler().fit(X[train])
        Xtr, Xte, ytr = scaler.transform(X[train]), scaler.transform(X[test]), y[train]
        if method == "ols_all":
            pred = LinearRegression().fit(Xtr, ytr).predict(Xte)
        elif method == "ridge":
            pred = RidgeCV(alphas=np.logspace(-3, 4, 60), cv=inner).fit(Xtr, ytr).predict(Xte)
        elif method == "elastic_net":
            pred = ElasticNetCV(l1_ratio=[0.1, 0.3, 0.5, 0.7, 0.9], cv=inner, max_iter=50000,
                                random_state=seed).fit(Xtr, ytr).predict(Xte)
        elif method == "lasso_min":
            pred = LassoCV(cv=inner, max_iter=50000, random_state=seed).fit(Xtr, ytr).predict(Xte)
        elif method == "lasso_1se":
            sel = lasso_cv(X[train], ytr, inner_folds, seed + 1)
            pred = Lasso(alpha=sel.alphas[sel.i_1se], max_iter=50000).fit(Xtr, ytr).predict(Xte)
        elif method == "adaptive_lasso":
            weights = np.abs(RidgeCV(alphas=np.logspace(-3, 4, 60), cv=inner).fit(Xtr, ytr).coef_) + 1e-8
            pred = LassoCV(cv=inner, max_iter=50000, random_state=seed).fit(Xtr * weights, ytr).predict(Xte * weights)
        elif method == "best_subset":
            corr = np.abs([np.corrcoef(Xtr[:, j], ytr)[0, 1] for j in range(Xtr.shape[1])])
            screened = np.argsort(np.nan_to_num(corr))[::-1][:screen]
            subset = screened[list(best_subset_press(Xtr[:, screened], ytr, max_subset))]
            pred = LinearRegression().fit(Xtr[:, subset], ytr).predict(Xte[:, subset]) if len(subset) else \
                np.full(len(test), ytr.mean())
        else:
            raise ValueError(f"unknown method {method!r}")
        errors.append(np.sqrt(np.mean((y[test] - pred) ** 2)))
    return np.array(errors)
