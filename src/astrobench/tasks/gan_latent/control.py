"""Does an input of a generator control one physical parameter, and only that one?

Sensitivities are measured by intervention: the same latent draws, one input moved by +-delta, the generated
spectra re-measured; ``S[j, k]`` is the change of parameter k per unit change of input j, both in units of the
training set's standard deviations. For real spectra no intervention is possible; there the sensitivity is the
multiple linear regression of the re-measured on the true parameters: the measurement's own cross-talk
(degeneracies such as age-metallicity), the floor a generator is judged against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def leakage(sensitivity: np.ndarray) -> tuple[np.ndarray, float]:
    """Per input j: sum_{k != j} |S[j, k]| / |S[j, j]| (0 when input j moves only its own parameter); and the
    overall off-diagonal leakage sum_{j != k} |S[j, k]| / sum_j |S[j, j]|."""
    s = np.abs(np.asarray(sensitivity, dtype=float))
    diag = np.diag(s)
    off = s.sum(1) - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        per_input = off / diag
    return per_input, float(off.sum() / max(diag.sum(), 1e-12))


def intervention_sensitivity(measure: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, delta: float,
                             input_scale: np.ndarray | float, param_scale: np.ndarray) -> np.ndarray:
    """``S[j, k]`` = (measure(inputs + delta e_j) - measure(inputs - delta e_j))[k] / (2 delta), averaged over the
    rows of ``inputs``; inputs in units of ``input_scale`` and parameters in units of ``param_scale``.

    ``measure`` maps an input matrix (n, n_in) to re-measured parameters (n, n_param), with everything else (the
    noise draws) held fixed inside it."""
    n_in = inputs.shape[1]
    rows = []
    for j in range(n_in):
        step = np.zeros(n_in)
        step[j] = delta
        diff = measure(inputs + step) - measure(inputs - step)
        rows.append(diff.mean(0) / param_scale / (2 * delta / np.broadcast_to(input_scale, (n_in,))[j]))
    return np.array(rows)


def regression_sensitivity(truth: np.ndarray, measured: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``S[j, k]``: the coefficient of true parameter j in a multiple linear regression of measured parameter k
    on all true parameters, both in units of ``scale``."""
    x = np.column_stack([np.ones(len(truth)), truth / scale])
    coef, *_ = np.linalg.lstsq(x, measured / scale, rcond=None)
    return coef[1:]


def assign_codes(codes: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """For each parameter, the code that explains most of it, one code per parameter (the Hungarian assignment
    on squared correlations); returns code index per parameter."""
    from scipy.optimize import linear_sum_assignment

    from astrobench.tasks.gan_latent.interpret import correlation_matrix

    r2 = correlation_matrix(codes, measured) ** 2  # (n_codes, n_params)
    code_idx, param_idx = linear_sum_assignment(-r2)
    out = np.full(measured.shape[1], -1)
    out[param_idx] = code_idx
    return out


def squared_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1] ** 2)
