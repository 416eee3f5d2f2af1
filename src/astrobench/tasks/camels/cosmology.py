"""The cosmology tables of the simulator, computed once on an (Omega_m, sigma_8) grid over the CAMELS ranges and
shipped as ``cosmology_tables.npz``:

- the non-linear matter power spectrum P(k) at z = 0: halofit (Takahashi et al. 2012) through CAMB;
- the linear matter power spectrum at z = 0 (CAMB), the initial conditions of the N-body boxes;
- the halo mass function dn/dlnM of M200c at z = 0: Tinker et al. 2008 through colossus.

The simulator interpolates the logs bilinearly in (Omega_m, sigma_8) and linearly in log k or log M.
Fixed cosmology of every CAMELS simulation: Omega_b = 0.049, h = 0.6711, n_s = 0.9624, no neutrinos.

Rebuild (needs ``pip install camb``; about three minutes): ``python -m astrobench.tasks.camels.cosmology``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

OMEGA_B, HUBBLE_H, N_S = 0.049, 0.6711, 0.9624
OMEGA_M_GRID = np.round(np.arange(0.10, 0.501, 0.05), 3)
SIGMA_8_GRID = np.round(np.arange(0.60, 1.001, 0.10), 3)
K_MIN, K_MAX, N_K = 0.05, 60.0, 160  # h/Mpc: the 25 Mpc/h box's fundamental mode is 0.25, a 256-grid's Nyquist 32
LOG_M_MIN, LOG_M_MAX, N_M = 11.0, 15.5, 46  # log10 M200c [Msun/h]
TABLE = Path(__file__).with_name("cosmology_tables.npz")


def camb_power(omega_m: float, sigma_8: float, k: np.ndarray, linear: bool = False) -> np.ndarray:
    """Non-linear P(k) [(Mpc/h)^3] at z = 0 from CAMB's halofit, normalised to ``sigma_8`` (linear); with
    ``linear`` the linear P(k)."""
    import camb

    params = camb.CAMBparams()
    params.set_cosmology(H0=100 * HUBBLE_H, ombh2=OMEGA_B * HUBBLE_H**2, omch2=(omega_m - OMEGA_B) * HUBBLE_H**2,
                         mnu=0.0, omk=0.0)
    params.InitPower.set_params(ns=N_S, As=2e-9)
    params.WantCls, params.DoLensing = False, False  # matter power only (and no A_s sanity check for lensing)
    params.set_matter_power(redshifts=[0.0], kmax=2 * K_MAX)
    params.NonLinear = camb.model.NonLinear_none
    sigma_8_at_as = camb.get_results(params).get_sigma8_0()
    params.InitPower.set_params(ns=N_S, As=2e-9 * (sigma_8 / sigma_8_at_as) ** 2)  # sigma_8 scales as sqrt(A_s)
    params.NonLinear = camb.model.NonLinear_none if linear else camb.model.NonLinear_both
    params.NonLinearModel.set_params(halofit_version="takahashi")  # CAMB's default is HMcode-2020, not halofit
    k_camb, _, pk = camb.get_results(params).get_matter_power_spectrum(minkh=K_MIN, maxkh=K_MAX, npoints=N_K)
    return np.exp(np.interp(np.log(k), np.log(k_camb), np.log(pk[0])))


def halo_mass_function(omega_m: float, sigma_8: float, log_m: np.ndarray) -> np.ndarray:
    """Tinker et al. 2008 dn/dlnM [(Mpc/h)^-3] of M200c [Msun/h] at z = 0 (colossus)."""
    from colossus.cosmology import cosmology
    from colossus.lss import mass_function

    cosmology.setCosmology("camels", params=dict(flat=True, H0=100 * HUBBLE_H, Om0=omega_m, Ob0=OMEGA_B,
                                                 sigma8=sigma_8, ns=N_S), persistence="")
    return mass_function.massFunction(10.0**log_m, 0.0, mdef="200c", model="tinker08", q_out="dndlnM")


def build_table(path: Path = TABLE) -> Path:
    k = np.geomspace(K_MIN, K_MAX, N_K)
    log_m = np.linspace(LOG_M_MIN, LOG_M_MAX, N_M)
    grid = [(om, s8) for om in OMEGA_M_GRID for s8 in SIGMA_8_GRID]
    shape = (len(OMEGA_M_GRID), len(SIGMA_8_GRID))
    log_p = np.array([np.log(camb_power(om, s8, k)) for om, s8 in grid]).reshape(*shape, -1)
    log_p_lin = np.array([np.log(camb_power(om, s8, k, linear=True)) for om, s8 in grid]).reshape(*shape, -1)
    log_n = np.array([np.log(halo_mass_function(om, s8, log_m)) for om, s8 in grid]).reshape(*shape, -1)
    np.savez_compressed(path, k=k, omega_m=OMEGA_M_GRID, sigma_8=SIGMA_8_GRID, log_p=log_p, log_p_lin=log_p_lin,
                        log_m=log_m,
                        log_dndlnm=log_n)
    return path


@lru_cache(maxsize=1)
def _table() -> dict[str, np.ndarray]:
    with np.load(TABLE) as data:
        return {key: data[key] for key in data.files}


def _bilinear(key: str, omega_m: float, sigma_8: float) -> np.ndarray:
    """The tabulated row ``key`` at (omega_m, sigma_8), bilinear inside the grid (clamped at its edges)."""
    t = _table()
    om = float(np.clip(omega_m, t["omega_m"][0], t["omega_m"][-1]))
    s8 = float(np.clip(sigma_8, t["sigma_8"][0], t["sigma_8"][-1]))
    i = min(np.searchsorted(t["omega_m"], om, side="right") - 1, len(t["omega_m"]) - 2)
    j = min(np.searchsorted(t["sigma_8"], s8, side="right") - 1, len(t["sigma_8"]) - 2)
    u = (om - t["omega_m"][i]) / (t["omega_m"][i + 1] - t["omega_m"][i])
    v = (s8 - t["sigma_8"][j]) / (t["sigma_8"][j + 1] - t["sigma_8"][j])
    rows = t[key]
    return (1 - u) * (1 - v) * rows[i, j] + u * (1 - v) * rows[i + 1, j] + (1 - u) * v * rows[i, j + 1] \
        + u * v * rows[i + 1, j + 1]


def power_spectrum(omega_m: float, sigma_8: float, k: np.ndarray, linear: bool = False) -> np.ndarray:
    """Tabulated non-linear (or, with ``linear``, linear) P(k) [(Mpc/h)^3] at ``k`` [h/Mpc]; a power law beyond
    the table's k range."""
    lp = _bilinear("log_p_lin" if linear else "log_p", omega_m, sigma_8)
    log_k = np.log(_table()["k"])
    x = np.log(np.clip(np.asarray(k, dtype=float), 1e-8, None))
    out = np.interp(x, log_k, lp)
    hi = x > log_k[-1]  # extrapolate with the slope of the last decade
    if hi.any():
        slope = (lp[-1] - lp[-20]) / (log_k[-1] - log_k[-20])
        out[hi] = lp[-1] + slope * (x[hi] - log_k[-1])
    return np.exp(out)


def mass_function(omega_m: float, sigma_8: float, log_m: np.ndarray) -> np.ndarray:
    """Tabulated Tinker et al. 2008 dn/dlnM [(Mpc/h)^-3] at log10 M200c ``log_m`` [Msun/h] (inside the table)."""
    t = _table()
    return np.exp(np.interp(log_m, t["log_m"], _bilinear("log_dndlnm", omega_m, sigma_8)))


if __name__ == "__main__":
    print(build_table())
