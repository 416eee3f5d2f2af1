"""Baryonic feedback for the camels simulator by baryonification (Schneider & Teyssier 2015, JCAP 12, 049;
Schneider et al. 2019, JCAP 03, 020): the particles around each halo of a gravity-only box are moved radially so
that the halo's mass profile changes from a dark-matter-only NFW profile to one of central galaxy + gas +
collisionless matter, with gas pushed out by feedback. Mass is conserved exactly (particles move, none are made).

Per halo of mass M = M200c [Msun/h] and radius R200c (x = r / R200c):

- dark-matter only: NFW with the Duffy et al. 2008 concentration, truncated as in Schneider et al. 2019,
  rho ~ 1 / (y (1 + y)^2) / (1 + (x / eps)^2)^2, y = c x, eps = 4;
- central galaxy: rho ~ exp(-(r / 2 R_h)^2) / r^2, R_h = 0.015 R200c, mass fraction f_cga = A (M1 / M)^eta_cga;
- gas: rho ~ 1 / ((1 + x / theta_co)^beta (1 + (x / theta_ej)^2)^((7 - beta) / 2)), theta_co = 0.1, with
  beta(M) = 3 (M / M_c)^mu / (1 + (M / M_c)^mu) (Giri & Schneider 2021): haloes far below M_c have lost their gas
  to beyond theta_ej R200c, haloes far above keep an NFW-like gas profile; mass fraction Omega_b / Omega_m - f_star;
- collisionless matter (dark matter and satellite galaxies): the NFW shape, fraction 1 - f_cga - f_gas
  (no adiabatic relaxation: it acts inside ~0.1 R200c, below the maps' 0.4 Mpc/h pixels);

all normalised inside r_out = max(eps, 1.5 theta_ej) R200c, so the total mass inside r_out is unchanged and the
particles beyond it do not move. A particle at r moves to r' with M_bcm(r') = M_dmo(r); the displacements of
overlapping haloes add. Stellar fractions f = N / ((M / M1)^-1.376 + (M / M1)^eta), N = 0.04,
M1 = 2.5e11 Msun/h, eta = 0.32 for all stars and 0.60 for the central galaxy (a Moster et al. 2013-like shape,
as in the public baryonification code of A. Schneider; the power law f ~ (M1 / M)^eta of Schneider et al. 2019
alone would give 1e11 Msun/h haloes 12 % of their mass in stars, far above abundance matching).

The four CAMELS feedback amplitudes act through M_c (where haloes start to lose gas), theta_ej (how far it goes)
and the stellar fraction, by a law per suite (``SUITE_LAWS``; docs/tasks/camels.md gives the published
suppression ranges they are set against).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from astrobench.tasks.camels.cosmology import OMEGA_B

RHO_CRIT = 2.775e11  # (Msun/h) / (Mpc/h)^3
TRUNCATION = 4.0  # eps: DMO profile truncation radius / R200c (Schneider et al. 2019)
THETA_CO = 0.1
R_H = 0.015  # central-galaxy half-light radius / R200c
STAR_N, STAR_M1, STAR_LOW, ETA_STAR, ETA_CGA = 0.04, 2.5e11, 1.376, 0.32, 0.60
N_RADII = 96


@dataclass(frozen=True)
class SuiteLaw:
    """How a suite's feedback amplitudes set the baryonification parameters:
    log10 M_c = log_mc + agn * log10 A_AGN1 - sn * log10 A_SN1, theta_ej = theta * A_AGN2^theta_agn2
    * A_AGN1^theta_agn1, stellar amplitude N = 0.04 A_SN2^-star_sn2."""

    log_mc: float
    agn: float
    sn: float
    mu: float
    theta: float
    theta_agn2: float
    theta_agn1: float = 0.1
    star_sn2: float = 0.2


SUITE_LAWS = {
    "tng": SuiteLaw(log_mc=13.2, agn=1.2, sn=0.6, mu=0.3, theta=3.0, theta_agn2=0.3),
    "simba": SuiteLaw(log_mc=13.6, agn=1.2, sn=0.2, mu=0.25, theta=4.0, theta_agn2=0.5),
}


@dataclass(frozen=True)
class BaryonParameters:
    """Baryonification parameters of one simulation: M_c [Msun/h], mu, theta_ej, stellar amplitude A."""

    m_c: float
    mu: float
    theta_ej: float
    star_n: float = STAR_N

    @property
    def reach(self) -> float:
        """r_out / R200c: the radius inside which particles move."""
        return max(TRUNCATION, 1.5 * self.theta_ej)


def suite_parameters(params: np.ndarray, suite: str) -> BaryonParameters:
    """Baryonification parameters of the CAMELS parameters ``params`` (Omega_m, sigma_8, A_SN1, A_AGN1, A_SN2,
    A_AGN2) of a ``suite`` ("tng" or "simba")."""
    law = SUITE_LAWS[suite]
    _, _, a_sn1, a_agn1, a_sn2, a_agn2 = (float(p) for p in params)
    log_mc = law.log_mc + law.agn * np.log10(a_agn1) - law.sn * np.log10(a_sn1)
    theta_ej = law.theta * a_agn2**law.theta_agn2 * a_agn1**law.theta_agn1
    return BaryonParameters(m_c=10.0**log_mc, mu=law.mu, theta_ej=theta_ej, star_n=STAR_N * a_sn2**-law.star_sn2)


def r200c(mass: np.ndarray) -> np.ndarray:
    """R200c [Mpc/h] of M200c [Msun/h]."""
    return (3 * np.asarray(mass, dtype=float) / (4 * np.pi * 200 * RHO_CRIT)) ** (1 / 3)


def concentration(mass: np.ndarray) -> np.ndarray:
    """c200c at z = 0, Duffy et al. 2008 (full sample): 5.71 (M / 2e12 Msun/h)^-0.084."""
    return 5.71 * (np.asarray(mass, dtype=float) / 2e12) ** -0.084


def _cumulative(x: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """M(<x) of densities rho(x) (..., R) on the grid x (R,), from x = 0 (rho x^3 taken as the first bin's)."""
    shell = 4 * np.pi * x**2 * rho
    steps = 0.5 * (shell[..., 1:] + shell[..., :-1]) * np.diff(x)
    first = shell[..., :1] * x[0] / 3.0
    return np.concatenate([first, first + np.cumsum(steps, axis=-1)], axis=-1)


def stellar_fractions(mass: np.ndarray, star_n: float = STAR_N) -> tuple[np.ndarray, np.ndarray]:
    """(f_star, f_cga): all stars and the central galaxy's, as fractions of haloes of M200c ``mass`` [Msun/h]."""
    m = np.asarray(mass, dtype=float) / STAR_M1
    return star_n / (m**-STAR_LOW + m**ETA_STAR), star_n / (m**-STAR_LOW + m**ETA_CGA)


def mass_profiles(mass: np.ndarray, omega_m: float, bp: BaryonParameters):
    """(x grid (R,) in R200c, M_dmo (H, R), M_bcm (H, R), M_gas (H, R)) [Msun/h] of haloes of M200c ``mass``,
    enclosed masses out to x = ``bp.reach``; M_bcm and M_dmo agree at the last radius."""
    mass = np.atleast_1d(np.asarray(mass, dtype=float))[:, None]
    x = np.geomspace(1e-3, bp.reach, N_RADII)
    c = concentration(mass)
    dmo = 1.0 / (c * x * (1 + c * x) ** 2) / (1 + (x / TRUNCATION) ** 2) ** 2
    m_dmo = _cumulative(x, dmo)
    m_dmo *= mass / np.array([np.interp(1.0, x, row) for row in m_dmo])[:, None]  # M_dmo(R200c) = M200c
    total = m_dmo[:, -1:]
    f_b = OMEGA_B / omega_m
    f_star, f_cga = stellar_fractions(mass, bp.star_n)
    f_gas = np.clip(f_b - f_star, 0.0, None)
    beta = 3.0 * (mass / bp.m_c) ** bp.mu / (1 + (mass / bp.m_c) ** bp.mu)
    gas = 1.0 / ((1 + x / THETA_CO) ** beta * (1 + (x / bp.theta_ej) ** 2) ** ((7 - beta) / 2))
    m_gas = _cumulative(x, gas)
    m_gas *= f_gas * total / m_gas[:, -1:]
    m_cga = f_cga * total * erf(x / (2 * R_H)) / erf(bp.reach / (2 * R_H))
    m_clm = (1.0 - f_gas - f_cga) * m_dmo
    return x, m_dmo, m_clm + m_gas + m_cga, m_gas


def displacement_tables(mass: np.ndarray, omega_m: float, bp: BaryonParameters):
    """(x grid (R,) [R200c], radial displacement d(x) (H, R) [R200c]) moving each halo's DMO profile to its
    baryonified one: a shell at x moves to x' with M_bcm(x') = M_dmo(x)."""
    x, m_dmo, m_bcm, _ = mass_profiles(mass, omega_m, bp)
    out = np.empty_like(m_dmo)
    for h in range(len(m_dmo)):
        target = np.maximum.accumulate(m_bcm[h])  # monotonic for the inversion
        out[h] = np.interp(m_dmo[h], target, x) - x
    out[:, -1] = 0.0
    return x, out


def baryonify(pos: np.ndarray, centres: np.ndarray, mass: np.ndarray, omega_m: float, bp: BaryonParameters,
              box: float) -> np.ndarray:
    """Particle positions (N, 3) [Mpc/h] after baryonification around the haloes at ``centres`` (H, 3) [Mpc/h]
    of M200c ``mass`` (H,) [Msun/h] in a periodic box of side ``box``."""
    from scipy.spatial import cKDTree

    if len(mass) == 0:
        return pos.copy()
    x, disp = displacement_tables(mass, omega_m, bp)
    radius = r200c(mass)
    from astrobench.tasks.camels.nbody import wrap

    tree = cKDTree(wrap(pos.astype(np.float64), box), boxsize=box)
    neighbours = tree.query_ball_point(wrap(np.asarray(centres, dtype=np.float64), box), radius * bp.reach)
    shift = np.zeros_like(pos, dtype=np.float64)
    for h, idx in enumerate(neighbours):
        if not idx:
            continue
        idx = np.asarray(idx)
        offset = pos[idx] - centres[h]
        offset -= box * np.round(offset / box)
        r = np.sqrt((offset**2).sum(1))
        d = np.interp(r / radius[h], x, disp[h], left=disp[h, 0], right=0.0) * radius[h]
        shift[idx] += offset * (d / np.maximum(r, 1e-6))[:, None]
    return wrap((pos + shift).astype(pos.dtype), box)


def bound_gas_fraction(mass: np.ndarray, omega_m: float, bp: BaryonParameters, x500: float = 0.65) -> np.ndarray:
    """Gas mass inside R500c (~0.65 R200c for c ~ 5) over (Omega_b / Omega_m) M500c: what feedback left in the
    halo, which sets its thermal pressure."""
    x, _, m_bcm, m_gas = mass_profiles(mass, omega_m, bp)
    gas_500 = np.array([np.interp(x500, x, row) for row in m_gas])
    total_500 = np.array([np.interp(x500, x, row) for row in m_bcm])
    return gas_500 / ((OMEGA_B / omega_m) * total_500)
