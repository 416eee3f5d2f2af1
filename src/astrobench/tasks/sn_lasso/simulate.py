"""A Pantheon+-like Hubble-flow SN Ia table with known truth, written as CSV in the Pantheon+ column names.

Truth (docs/tasks/sn_lasso.md gives the sources):

- stretch x1 and colour c from the asymmetric Gaussians of Scolnic & Kessler 2016 (G10 low-z: x1 mean 0.436,
  sigma- 3.118, sigma+ 0.724; c mean -0.055, sigma- 0.023, sigma+ 0.150), x1 limited to [-3, 3], c to [-0.3, 0.3];
- host stellar mass log M* ~ N(10.0, 0.6) (Hubble-flow hosts), with massive hosts holding lower-stretch SNe
  (x1 shifted by -0.4 (log M* - 10), the known trend);
- the Tripp relation y = mB - mu = M - alpha x1 + beta c + step [log M* > 10] + eps, alpha = 0.14, beta = 3.1,
  step = -0.05 mag, intrinsic scatter 0.1 mag;
- measurement errors like Pantheon+'s Hubble flow: mBERR ~ 0.03, x1ERR ~ 0.1-0.3, cERR ~ 0.025-0.04 mag, each
  with a small x1-c covariance;
- spectral features of the kind Uemura et al. 2015 used, tied to the *true* stretch as in the literature (Si II
  5972 pseudo-equivalent width and the Si II line-depth ratio fall with stretch; Nugent et al. 1995, Hachinger et
  al. 2006), plus twelve other velocities, widths and ratios (Si II, Ca II, S II, Fe II, Mg II, O I, C II) that
  carry no magnitude information;
- redshifts uniform in volume between 0.023 and 0.15; other columns (MWEBV, PKMJD, FITPROB, NDOF) drawn with no
  effect on y.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrobench.core.io import ConfigError, atomic_path

SIMULATOR_VERSION = "1"
TRUTH = {"alpha": 0.14, "beta": 3.1, "mass_step": -0.05, "sigma_int": 0.10, "M": -19.25}
TRUE_VARIABLES = ("x1", "c", "mass_step")
# measured proxies of the true stretch: they carry information about y beyond the noisy x1, so selecting one is
# not a false discovery (reported separately as precision_informative)
STRETCH_PROXIES = ("spec_pew_si5972", "spec_r_si")
NULL_SPECTRAL = ("spec_v_si6355", "spec_pew_si6355", "spec_pew_ca_hk", "spec_pew_s", "spec_v_ca_ir", "spec_pew_fe4800",
                 "spec_pew_mg4481", "spec_v_s5640", "spec_pew_o7774", "spec_v_c6580", "spec_hv_ca_ratio",
                 "spec_pew_si4130")
SPECTRAL = STRETCH_PROXIES + NULL_SPECTRAL


def _asymmetric_gaussian(rng, mean, sigma_minus, sigma_plus, lo, hi, n):
    """Draws from a two-sided Gaussian (different widths left and right of the mode), cut to [lo, hi]."""
    out = np.empty(0)
    while len(out) < n:
        left = rng.uniform(size=2 * n) < sigma_minus / (sigma_minus + sigma_plus)
        draw = mean + np.abs(rng.normal(size=2 * n)) * np.where(left, -sigma_minus, sigma_plus)
        out = np.concatenate([out, draw[(draw >= lo) & (draw <= hi)]])
    return out[:n]


def simulate_sn_table(n: int = 450, seed: int = 0) -> dict[str, np.ndarray]:
    """Columns of ``n`` simulated Hubble-flow SNe (Pantheon+ names plus ``spec_*`` features)."""
    from astrobench.tasks.sn_lasso.data import fiducial_distance_modulus

    if n < 10:
        raise ConfigError(f"simulate at least 10 supernovae, got {n}")
    rng = np.random.default_rng(seed)
    z = (0.023**3 + rng.uniform(size=n) * (0.15**3 - 0.023**3)) ** (1 / 3)  # uniform in volume
    log_mass = rng.normal(10.0, 0.6, n)
    x1_true = np.clip(_asymmetric_gaussian(rng, 0.436, 3.118, 0.724, -3, 3, n) - 0.4 * (log_mass - 10), -3, 3)
    c_true = _asymmetric_gaussian(rng, -0.055, 0.023, 0.150, -0.3, 0.3, n)
    t = TRUTH
    y_true = (t["M"] - t["alpha"] * x1_true + t["beta"] * c_true + t["mass_step"] * (log_mass > 10)
              + rng.normal(0, t["sigma_int"], n))
    mb_err = rng.uniform(0.02, 0.05, n)
    x1_err = rng.uniform(0.08, 0.3, n)
    c_err = rng.uniform(0.025, 0.04, n)
    rho = rng.uniform(-0.2, 0.2, n)  # x1-c correlation of the light-curve fit
    cov_x1_c = rho * x1_err * c_err
    e1 = rng.normal(size=n)
    e2 = rho * e1 + np.sqrt(1 - rho**2) * rng.normal(size=n)
    cols = {
        "CID": np.array([f"sim{i:05d}" for i in range(n)]),
        "zHD": z, "IS_CALIBRATOR": np.zeros(n, dtype=int),
        "mB": y_true + fiducial_distance_modulus(z) + rng.normal(0, mb_err), "mBERR": mb_err,
        "x1": x1_true + x1_err * e1, "x1ERR": x1_err,
        "c": c_true + c_err * e2, "cERR": c_err, "COV_x1_c": cov_x1_c,
        "HOST_LOGMASS": log_mass + rng.normal(0, 0.1, n),
        "MWEBV": rng.exponential(0.04, n),
        "PKMJD": rng.uniform(50000, 59000, n),
        "FITPROB": rng.uniform(0.01, 1, n),
        "NDOF": rng.integers(5, 80, n),
        # spectral features: two follow the true stretch (with measurement noise), twelve carry nothing
        "spec_pew_si5972": 20 - 6 * x1_true + rng.normal(0, 4, n),
        "spec_r_si": 0.25 - 0.06 * x1_true + rng.normal(0, 0.04, n),
        "spec_v_si6355": rng.normal(11.0, 1.2, n),  # 1000 km/s
        "spec_pew_si6355": rng.normal(100, 20, n),
        "spec_pew_ca_hk": rng.normal(110, 30, n),
        "spec_pew_s": rng.normal(80, 15, n),
        "spec_v_ca_ir": rng.normal(13.0, 2.0, n),
        "spec_pew_fe4800": rng.normal(150, 30, n),
        "spec_pew_mg4481": rng.normal(70, 20, n),
        "spec_v_s5640": rng.normal(9.5, 1.0, n),
        "spec_pew_o7774": rng.normal(60, 20, n),
        "spec_v_c6580": rng.normal(11.5, 1.0, n),
        "spec_hv_ca_ratio": rng.uniform(0, 1, n),
        "spec_pew_si4130": rng.normal(15, 5, n),
    }
    return cols


def simulate(out: str | Path, n: int = 450, seed: int = 0) -> Path:
    """Write ``n`` simulated SNe as a CSV in the Pantheon+ column names; ``out`` is a folder or a ``.csv`` path."""
    from astropy.table import Table

    out = Path(out)
    path = out if out.suffix == ".csv" else out / "sn_lasso_simulated.csv"
    with atomic_path(path) as tmp:
        Table(simulate_sn_table(n, seed)).write(tmp, format="csv", overwrite=True)
    return path
