"""A 3D-HST-like photometric catalogue with spectroscopic redshifts, made with real stellar-population physics.

The path (docs/tasks/photoz.md gives every number and its source):

1. **Templates, rest frame, once.** ``n_templates`` bagpipes model galaxies (BC03 stellar populations with a
   delayed-tau star-formation history, Calzetti dust, Cloudy nebular emission) drawn from broad priors, computed at
   z = 0 as luminosity densities L_lambda [erg/s/A].
2. **Many redshifts cheaply.** Each template's photometry through the five HST filter curves of astro-sedpy (ACS
   F606W, F814W; WFC3/IR F125W, F140W, F160W) on a redshift grid, with the Inoue (2014) IGM transmission that
   bagpipes ships: one matrix product, ``(templates x wavelengths) @ (wavelengths x redshifts*bands)``.
3. **A population.** Redshift and stellar mass from dV/dz x Phi(M, z), the comoving volume (FlatLambdaCDM
   H0 = 70, Om0 = 0.3, the 3D-HST convention) times the double-Schechter stellar mass functions of Tomczak et al.
   (2014) per redshift bin; a template whose age fits in the age of the Universe at that redshift, scaled to the
   galaxy's mass.
4. **A spectroscopic selection.** A galaxy gets a spectroscopic redshift with a probability that falls with its
   F814W magnitude and drops in the optical "redshift desert" 1.5 < z < 2.5; the other catalogue rows are
   photometric-only (``z_spec = -1``), as in the real file.
5. **Observation.** Sky-limited noise from 5-sigma depths scaled by the exposure count, aperture-to-total
   corrections from the galaxy's size (van der Wel et al. 2014 size-mass relation, HST PSF), -99 where a galaxy
   lies outside a band's footprint, and the other catalogue columns filled plausibly.

The output is the real catalogue format (``3dhst_master.phot.v4.1.cat`` column names and order, fluxes with AB
zero point 25, i.e. m_AB = 25 - 2.5 log10 f, and -99 for missing), so the Hello Universe preprocessing runs on it
unchanged.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from astrobench.core.io import ConfigError, atomic_path, cache_dir, config_key
from astrobench.core.parallel import executor
from astrobench.physics import flat_lcdm, quiet_bagpipes

SIMULATOR_VERSION = "1"

BANDS = ("F606W", "F814W", "F125W", "F140W", "F160W")
SEDPY_FILTERS = ("acs_wfc_f606w", "acs_wfc_f814w", "wfc3_ir_f125w", "wfc3_ir_f140w", "wfc3_ir_f160w")
COLUMNS = ("id", "field", "ra", "dec", "x", "y", "z_spec", "z_peak", "faper_F140W", "eaper_F140W", "faper_F160W",
           "eaper_F160W", "f_F606W", "e_F606W", "f_F814W", "e_F814W", "f_F125W", "e_F125W", "f_F140W", "e_F140W",
           "f_F160W", "e_F160W", "tot_cor", "kron_radius", "a_image", "b_image", "flux_radius", "fwhm_image", "flags",
           "f140w_flag", "star_flag", "use_phot", "near_star", "nexp_f125w", "nexp_f140w", "nexp_f160w", "lmass",
           "Av")
MISSING = -99.0
AB_ZERO_POINT = 25.0  # catalogue flux f: m_AB = 25 - 2.5 log10 f
F_NU_TO_CATALOGUE = 10 ** (0.4 * (48.6 + AB_ZERO_POINT))  # f_nu [erg/s/cm^2/Hz] -> catalogue flux
C_AA_PER_S = 2.99792458e18
MPC_CM = 3.0856775814913673e24
PIXEL_ARCSEC = 0.06  # 3D-HST mosaics
APERTURE_RADIUS_ARCSEC = 0.35  # the 0.7" diameter photometry aperture
PSF_FWHM_ARCSEC = 0.18  # WFC3/IR F160W

# Objects per field in the v4.1 master catalogue: UDS (last id) and GOODS-N (its FAST file) seen, the other three
# from memory; together they add up to the catalogue's 207,967 rows
FIELDS = {"AEGIS": 41200, "COSMOS": 33879, "GOODS-N": 38279, "GOODS-S": 50507, "UDS": 44102}
FIELD_CENTRES_DEG = {"AEGIS": (214.83, 52.83), "COSMOS": (150.12, 2.28), "GOODS-N": (189.23, 62.24),
                     "GOODS-S": (53.12, -27.81), "UDS": (34.40, -5.20)}

# 5-sigma point-source depths [AB] in the 0.7" aperture at the reference exposure count: our estimates (Skelton et
# al. 2014 Table 3 was not at hand; CANDELS quotes F160W 5-sigma 27.0 wide / 27.7 deep in larger apertures)
DEPTH_5SIGMA_AB = {"F606W": 26.9, "F814W": 26.6, "F125W": 26.4, "F140W": 25.7, "F160W": 26.2}
REFERENCE_NEXP = {"F606W": 4, "F814W": 4, "F125W": 4, "F140W": 4, "F160W": 4}
# fraction of galaxies outside each band's footprint (-99); F140W comes from the 3D-HST grism pointings only
MISSING_FRACTION = {"F606W": 0.06, "F814W": 0.06, "F125W": 0.02, "F140W": 0.20, "F160W": 0.0}

# Tomczak et al. 2014 (ZFOURGE/CANDELS), Table 2, all galaxies: double-Schechter fits per redshift bin,
# (z_lo, z_hi, log M*, alpha_1, log Phi*_1, alpha_2, log Phi*_2), Phi* in Mpc^-3 dex^-1 (h = 0.7, Chabrier IMF),
# as transcribed in public code (docs/notes/photoz_literature.md), not read from the paper's PDF
TOMCZAK14_SMF = (
    (0.20, 0.50, 10.78, -0.98, -2.54, -1.90, -4.29),
    (0.50, 0.75, 10.70, -0.39, -2.55, -1.53, -3.15),
    (0.75, 1.00, 10.66, -0.37, -2.56, -1.61, -3.39),
    (1.00, 1.25, 10.54, 0.30, -2.72, -1.45, -3.17),
    (1.25, 1.50, 10.61, -0.12, -2.78, -1.56, -3.43),
    (1.50, 2.00, 10.74, 0.04, -3.05, -1.49, -3.38),
    (2.00, 2.50, 10.69, 1.03, -3.80, -1.33, -3.26),
    (2.50, 3.00, 10.74, 1.62, -4.54, -1.57, -3.69),
)
LOG_MASS_RANGE = (8.5, 12.0)
Z_RANGE = (0.02, 3.5)

# spectroscopic success (targets chosen and redshifts measured in the optical): logistic in F814W magnitude, 50 %
# at SPEC_MAG50, times an efficiency per redshift range: the "redshift desert" 1.5 < z < 2.5 where no strong line
# falls in the optical, and Lyman-alpha surveys beyond. Our choices, see docs/tasks/photoz.md.
SPEC_BAND = "F814W"
SPEC_MAG50 = 24.0
SPEC_MAG_WIDTH = 0.4
SPEC_Z_EFFICIENCY = ((1.5, 1.0), (2.5, 0.3), (np.inf, 0.6))  # (up to z, efficiency)
# rows without a spectroscopic redshift (z_spec = -1); in the real file most rows have none, here they are a
# minority so that the catalogue's size goes into the sample the methods see
PHOTOMETRIC_ONLY_FRACTION = 0.15

TEMPLATE_PRIORS = {  # drawn independently per template
    "age_gyr": (0.03, 13.0),  # log-uniform: a library to pick from (AGE_FRACTION sets the galaxies' ages)
    "tau_gyr": (0.05, 10.0),  # log-uniform, delayed-tau SFR(t) ~ t exp(-t / tau)
    "metallicity_zsun": (0.2, 2.5),  # log-uniform
    "av_mean_mag": 0.5,  # Calzetti A_V ~ exponential with this mean, cut at 3
    "log_u": (-3.5, -2.0),  # nebular ionisation parameter, uniform
}
AGE_FRACTION = (0.02, 0.98)  # a galaxy's age over the age of the Universe at its redshift: uniform in this range
AGE_MATCH = 20  # a galaxy picks one of this many templates around its age
Z_GRID = np.round(np.arange(0.0, Z_RANGE[1] + 0.1, 0.01), 4)


def physics_key() -> dict:
    """Every physical constant of the simulator, hashed into the cache keys so that an edit here never reuses a
    catalogue simulated with the old values."""
    return {"depths": DEPTH_5SIGMA_AB, "nexp": REFERENCE_NEXP, "missing": MISSING_FRACTION, "smf": TOMCZAK14_SMF,
            "mass_range": LOG_MASS_RANGE, "z_range": Z_RANGE, "spec": [SPEC_BAND, SPEC_MAG50, SPEC_MAG_WIDTH,
                                                                          [list(e) for e in SPEC_Z_EFFICIENCY]],
            "photometric_only": PHOTOMETRIC_ONLY_FRACTION, "priors": TEMPLATE_PRIORS, "age": [AGE_FRACTION, AGE_MATCH]}


def filter_paths() -> list[str]:
    """The astro-sedpy filter curves (two columns: wavelength [A], transmission) of the five catalogue bands."""
    import sedpy

    folder = Path(sedpy.__file__).parent / "data" / "filters"
    paths = [folder / f"{name}.par" for name in SEDPY_FILTERS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"astro-sedpy lacks the filter curves {missing}; reinstall astro-sedpy")
    return [str(p) for p in paths]


def draw_template_parameters(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    p = TEMPLATE_PRIORS
    loguniform = lambda lo, hi: np.exp(rng.uniform(np.log(lo), np.log(hi), n))  # noqa: E731
    return {"age_gyr": loguniform(*p["age_gyr"]), "tau_gyr": loguniform(*p["tau_gyr"]),
            "metallicity_zsun": loguniform(*p["metallicity_zsun"]),
            "av_mag": np.minimum(rng.exponential(p["av_mean_mag"], n), 3.0), "log_u": rng.uniform(*p["log_u"], n)}


TEMPLATES_PER_CHUNK = 50  # bagpipes models per Dask task


def rest_frame_templates(params: dict[str, np.ndarray], progress: bool = False,
                         n_jobs: int = 1) -> dict[str, np.ndarray]:
    """bagpipes luminosity densities at z = 0 for each parameter set, in chunks of TEMPLATES_PER_CHUNK on ``n_jobs``
    Dask workers (``core.parallel.executor``; a template depends on its parameters only).

    Returns ``wavelength_aa`` (rest frame, bagpipes' photometric sampling), ``l_lambda`` (n, n_wave) in erg/s/A
    for 10^10 Msun formed, ``log_mstar`` (living stellar mass) and ``log_ssfr_yr`` (specific SFR over the last
    100 Myr)."""
    from rich.progress import track

    n = len(params["age_gyr"])
    chunks = [{k: v[a : a + TEMPLATES_PER_CHUNK] for k, v in params.items()} for a in range(0, n, TEMPLATES_PER_CHUNK)]
    with executor(n_jobs, n_chunks=len(chunks)) as pool:
        parts = list(track(pool.map(_template_chunk, chunks), total=len(chunks), transient=True,
                           description="photoz: bagpipes templates", disable=not progress))
    return {"wavelength_aa": parts[0]["wavelength_aa"],
            **{k: np.concatenate([p[k] for p in parts]) for k in ("l_lambda", "log_mstar", "log_ssfr_yr")}}


def _template_chunk(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`rest_frame_templates` of one chunk, in one process: one bagpipes model updated per template."""
    bagpipes = quiet_bagpipes()
    n = len(params["age_gyr"])

    def components(i):
        return {"redshift": 0.0,
                "delayed": {"age": float(params["age_gyr"][i]), "tau": float(params["tau_gyr"][i]),
                            "massformed": 10.0, "metallicity": float(params["metallicity_zsun"][i])},
                "dust": {"type": "Calzetti", "Av": float(params["av_mag"][i])},
                "nebular": {"logU": float(params["log_u"][i])}}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bagpipes.model_galaxy(components(0), filt_list=filter_paths())
        l_lambda = np.empty((n, len(model.wavelengths)))
        log_mstar, log_ssfr = np.empty(n), np.empty(n)
        for i in range(n):
            model.update(components(i))
            l_lambda[i] = model.spectrum_full
            log_mstar[i] = model.sfh.stellar_mass
            log_ssfr[i] = model.sfh.ssfr if model.sfh.sfr > 0 else -20.0
    return {"wavelength_aa": np.asarray(model.wavelengths, dtype=float), "l_lambda": l_lambda,
            "log_mstar": log_mstar, "log_ssfr_yr": log_ssfr}


def band_weights(wavelength_aa: np.ndarray, z_grid: np.ndarray = Z_GRID) -> np.ndarray:
    """Weights W (n_z, n_band, n_wave) such that ``l_lambda @ W[k, b]`` is the band-averaged f_nu times 4 pi D_L^2
    / (1 + z) at redshift ``z_grid[k]``, with the IGM transmission included.

    AB photometry for a photon-counting detector: f_nu = int f_lambda T lambda dlambda / int T c / lambda dlambda;
    with lambda_obs = (1 + z) lambda_rest and f_lambda = L_lambda T_igm / (4 pi D_L^2 (1 + z)) this is
    (1 + z) / (4 pi D_L^2) int L_lambda T_igm T((1 + z) lambda) lambda dlambda / int T c / lambda dlambda.
    """
    quiet_bagpipes()
    from bagpipes.models.igm_model import igm

    igm_model = igm(wavelength_aa)
    dlam = np.gradient(wavelength_aa)  # trapezoid-like weights on the uneven grid
    weights = np.zeros((len(z_grid), len(BANDS), len(wavelength_aa)))
    curves = []
    for path in filter_paths():  # as sedpy reads them: finite, sorted by wavelength
        lam, t = np.loadtxt(path, usecols=(0, 1)).T
        keep = np.isfinite(lam) & np.isfinite(t) & (lam > 0)
        order = np.argsort(lam[keep])
        curves.append((lam[keep][order], t[keep][order]))
    norms = [np.trapezoid(np.clip(t, 0, None) * C_AA_PER_S / lam, lam) for lam, t in curves]
    for k, z in enumerate(z_grid):
        trans_igm = igm_model.trans(z) if z > 0 else np.ones_like(wavelength_aa)
        for b, ((lam, t), norm) in enumerate(zip(curves, norms)):
            response = np.interp((1 + z) * wavelength_aa, lam, np.clip(t, 0, None), left=0.0, right=0.0)
            weights[k, b] = trans_igm * response * wavelength_aa * dlam / norm
    return weights


def template_photometry(n_templates: int, seed: int, progress: bool = False, n_jobs: int = 1) -> dict[str, np.ndarray]:
    """Templates and their fluxes on ``Z_GRID``, cached by (simulator version, n_templates, seed).

    ``grid`` (n_templates, n_z, n_band) holds int L_lambda T_igm T lambda dlambda / int T c / lambda dlambda in
    erg/s/Hz per 10^10 Msun formed; a galaxy's f_nu is ``grid * (1 + z) / (4 pi D_L^2)``."""
    key = config_key({"version": SIMULATOR_VERSION, "n_templates": n_templates, "seed": seed,
                      "z_grid": [float(Z_GRID[0]), float(Z_GRID[-1]), len(Z_GRID)], "priors": TEMPLATE_PRIORS})
    path = cache_dir() / "photoz" / "templates" / f"{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return dict(f)
    rng = np.random.default_rng([seed, 7])
    params = draw_template_parameters(n_templates, rng)
    templates = rest_frame_templates(params, progress, n_jobs)
    weights = band_weights(templates["wavelength_aa"])
    n_z, n_b, n_w = weights.shape
    grid = (templates["l_lambda"] @ weights.reshape(n_z * n_b, n_w).T).reshape(n_templates, n_z, n_b)
    out = {**params, "log_mstar": templates["log_mstar"], "log_ssfr_yr": templates["log_ssfr_yr"],
           "grid": grid, "z_grid": Z_GRID}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **out)
    return out


def smf_bin(z: np.ndarray) -> np.ndarray:
    """Index of the Tomczak et al. (2014) redshift bin of each z (the first bin below 0.2, the last above 3)."""
    edges = np.array([row[1] for row in TOMCZAK14_SMF[:-1]])
    return np.searchsorted(edges, z, side="right")


def stellar_mass_function(log_mass: np.ndarray, row) -> np.ndarray:
    """Double-Schechter Phi(log M) [Mpc^-3 dex^-1] of one TOMCZAK14_SMF row."""
    _, _, log_mstar, a1, log_phi1, a2, log_phi2 = row
    x = 10 ** (np.asarray(log_mass) - log_mstar)
    return np.log(10) * np.exp(-x) * (10**log_phi1 * x ** (a1 + 1) + 10**log_phi2 * x ** (a2 + 1))


def draw_population(n: int, templates: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` galaxies of the parent population: (z, log M) from dV/dz x Phi(M, z) (Tomczak et al. 2014 per
    redshift bin), a template with an age uniform in (AGE_FRACTION) x the age of the Universe at z, and the
    template's noiseless catalogue fluxes scaled to the galaxy's mass and distance."""
    cosmo = flat_lcdm()
    m_grid = np.linspace(*LOG_MASS_RANGE, 1401)
    phi = np.array([stellar_mass_function(m_grid, row) for row in TOMCZAK14_SMF])  # (bins, masses)
    density = np.trapezoid(phi, m_grid, axis=1)  # galaxies per Mpc^3 in the mass range, per bin
    cdf = np.cumsum(phi, axis=1)
    cdf /= cdf[:, -1:]
    # z from dV/dz x n(z): uniform in comoving volume, thinned by the bin's number density
    z_tab = np.linspace(Z_RANGE[0], Z_RANGE[1], 2000)
    v_tab = cosmo("volume_mpc3", z_tab)
    z = np.empty(0)
    while len(z) < n:
        draw = np.interp(rng.uniform(v_tab[0], v_tab[-1], 2 * n), v_tab, z_tab)
        keep = rng.uniform(size=len(draw)) < density[smf_bin(draw)] / density.max()
        z = np.concatenate([z, draw[keep]])
    z = z[:n]
    bins = smf_bin(z)
    u = rng.uniform(size=n)
    log_mass = np.empty(n)
    for b in range(len(TOMCZAK14_SMF)):
        members = bins == b
        log_mass[members] = np.interp(u[members], cdf[b], m_grid)
    # star formation began at a time uniform in the age of the Universe at z (the usual SED-fitting age prior);
    # the galaxy takes one of the AGE_MATCH templates nearest that age (their tau, Z, dust and U differ)
    t_universe = cosmo("age_gyr", z)
    target_age = rng.uniform(*AGE_FRACTION, n) * t_universe
    ages = templates["age_gyr"]
    order = np.argsort(ages)
    n_allowed = np.searchsorted(ages[order], t_universe - 0.05)
    if np.any(n_allowed < AGE_MATCH):
        raise ConfigError("too few templates young enough for the highest redshifts; raise n_templates")
    nearest = np.searchsorted(ages[order], target_age)
    pick = nearest + rng.integers(-(AGE_MATCH // 2), AGE_MATCH - AGE_MATCH // 2, n)
    template = order[np.clip(pick, 0, n_allowed - 1)]
    # noiseless fluxes: interpolate the template grid in z, scale by mass and distance
    zg = templates["z_grid"]
    k = np.clip(np.searchsorted(zg, z) - 1, 0, len(zg) - 2)
    w = ((z - zg[k]) / (zg[k + 1] - zg[k]))[:, None]
    grid = templates["grid"]
    f_lum = (1 - w) * grid[template, k] + w * grid[template, k + 1]
    d_l_cm = cosmo("d_l_mpc", z) * MPC_CM
    scale = 10 ** (log_mass - templates["log_mstar"][template])
    f_nu = f_lum * (scale * (1 + z) / (4 * np.pi * d_l_cm**2))[:, None]
    return {"z": z, "log_mass": log_mass, "template": template, "flux_true": f_nu * F_NU_TO_CATALOGUE,
            "av_mag": templates["av_mag"][template], "log_ssfr_yr": templates["log_ssfr_yr"][template],
            "age_gyr": ages[template]}


def spectroscopic_probability(mag: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Chance that a galaxy of this ``SPEC_BAND`` magnitude at redshift ``z`` has a spectroscopic redshift."""
    limits = np.array([lim for lim, _ in SPEC_Z_EFFICIENCY])
    efficiency = np.array([eff for _, eff in SPEC_Z_EFFICIENCY])[np.searchsorted(limits, z, side="right")]
    return efficiency / (1.0 + np.exp((np.asarray(mag) - SPEC_MAG50) / SPEC_MAG_WIDTH))


def half_light_radius_kpc(log_mass: np.ndarray, z: np.ndarray, quiescent: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
    """van der Wel et al. (2014) size-mass-redshift relations: R_e = A (M / 5e10 Msun)^alpha (1 + z)^beta with
    (log A, alpha, beta) = (0.86, 0.25, -0.75) for late and (0.60, 0.75, -1.48) for early types, scatter 0.16 and
    0.10 dex, A scaled from its z = 0.25 value."""
    log_a = np.where(quiescent, 0.60, 0.86)
    slope = np.where(quiescent, 0.75, 0.25)
    beta = np.where(quiescent, -1.48, -0.75)
    scatter = np.where(quiescent, 0.10, 0.16)
    log_r = (log_a + slope * (log_mass - np.log10(5e10)) + beta * np.log10((1 + z) / 1.25)
             + scatter * rng.normal(size=len(z)))
    return 10**log_r


def observe(pop: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sizes, exposure counts, footprints and noisy fluxes for the galaxies of ``pop``: catalogue columns."""
    n = len(pop["z"])
    cosmo = flat_lcdm()
    quiescent = pop["log_ssfr_yr"] < -10.0
    r_e_kpc = half_light_radius_kpc(pop["log_mass"], pop["z"], quiescent, rng)
    kpc_per_arcsec = cosmo("d_a_mpc", pop["z"]) * 1e3 * np.pi / (180 * 3600)
    r_e_arcsec = r_e_kpc / kpc_per_arcsec
    # a Gaussian stand-in for profile (x) PSF: fraction of light inside the 0.7" aperture, and the observed sizes
    sigma = np.sqrt((r_e_arcsec / 1.1774) ** 2 + (PSF_FWHM_ARCSEC / 2.3548) ** 2)
    aperture_to_total = 1.0 / (1.0 - np.exp(-APERTURE_RADIUS_ARCSEC**2 / (2 * sigma**2)))
    # tot_cor: the catalogue's correction of the Kron (AUTO) flux to total, light outside the Kron ellipse;
    # a filler column, 1.0-1.5 and larger for larger galaxies
    tot_cor = 1.0 + 0.1 * np.clip(sigma / (PSF_FWHM_ARCSEC / 2.3548), 1, 5) * rng.lognormal(0, 0.2, n)
    axis_ratio = rng.uniform(0.3, 1.0, n)
    flux_radius_pix = 1.1774 * sigma / PIXEL_ARCSEC
    a_image = flux_radius_pix / np.sqrt(axis_ratio)
    # exposures: deep parts (a third of the galaxies) have three times the wide-field exposure count
    deep = rng.uniform(size=n) < 1 / 3
    nexp = {b: np.where(deep, 3, 1) * rng.choice([2, 3, 4, 4, 6], n) for b in ("F125W", "F160W")}
    nexp["F140W"] = rng.choice([2, 4, 4, 8], n)
    for b in ("F606W", "F814W"):
        nexp[b] = np.where(deep, 3, 1) * 4
    cols: dict[str, np.ndarray] = {}
    for b_i, band in enumerate(BANDS):
        sigma_ap = 10 ** (-0.4 * (DEPTH_5SIGMA_AB[band] - AB_ZERO_POINT)) / 5 * np.sqrt(REFERENCE_NEXP[band]
                                                                                      / nexp[band])
        f_true_ap = pop["flux_true"][:, b_i] / aperture_to_total
        f_ap = f_true_ap + sigma_ap * rng.normal(size=n)
        covered = rng.uniform(size=n) >= MISSING_FRACTION[band]
        # total fluxes are aperture fluxes scaled to total: the noise scales with them
        cols[f"f_{band}"] = np.where(covered, f_ap * aperture_to_total, MISSING)
        cols[f"e_{band}"] = np.where(covered, sigma_ap * aperture_to_total, MISSING)
        if band in ("F140W", "F160W"):
            cols[f"faper_{band}"] = np.where(covered, f_ap, MISSING)
            cols[f"eaper_{band}"] = np.where(covered, sigma_ap, MISSING)
    cols.update(
        tot_cor=tot_cor, flux_radius=flux_radius_pix, a_image=a_image, b_image=a_image * axis_ratio,
        kron_radius=np.clip(rng.normal(3.5, 0.3, n), 3.0, None), fwhm_image=2.0 * flux_radius_pix,
        nexp_f125w=nexp["F125W"], nexp_f140w=np.where(cols["f_F140W"] == MISSING, 0, nexp["F140W"]),
        nexp_f160w=nexp["F160W"],
    )
    return cols


def _fields_and_ids(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each galaxy's field (index into ``FIELDS``, drawn by the fields' sizes) and its id, unique within the field
    and inside the real catalogue's per-field id range."""
    names = list(FIELDS)
    field = rng.choice(len(names), n, p=np.array(list(FIELDS.values())) / sum(FIELDS.values()))
    ids = np.zeros(n, dtype=int)
    for f in range(len(names)):
        members = np.flatnonzero(field == f)
        if len(members) > FIELDS[names[f]]:
            raise ConfigError(f"at most about {sum(FIELDS.values())} galaxies (the real catalogue's per-field id "
                              f"ranges), got n = {n}")
        ids[members] = np.sort(rng.choice(FIELDS[names[f]], len(members), replace=False)) + 1
    return field, ids


def simulate_catalogue(n: int = 30000, seed: int = 0, n_templates: int = 3000,
                       progress: bool = False, n_jobs: int = 2) -> dict[str, np.ndarray]:
    """``n`` catalogue rows (a fraction ``PHOTOMETRIC_ONLY_FRACTION`` without spectroscopic redshift) as columns
    in ``COLUMNS`` order, plus ``truth_*`` columns (true redshift, mass, template) not written to the file."""
    if n < 10:
        raise ConfigError(f"simulate at least 10 galaxies, got {n}")
    if n_templates < 50:
        raise ConfigError(f"n_templates must be at least 50, got {n_templates}")
    templates = template_photometry(n_templates, seed, progress, n_jobs)
    rng = np.random.default_rng(seed)
    n_spec = int(round(n * (1 - PHOTOMETRIC_ONLY_FRACTION)))
    spec_parts, phot_parts, n_have = [], [], 0
    n_phot_have = 0
    while n_have < n_spec or n_phot_have < n - n_spec:
        pop = draw_population(4 * n, templates, rng)
        mag = AB_ZERO_POINT - 2.5 * np.log10(np.maximum(pop["flux_true"], 1e-30))
        p_spec = spectroscopic_probability(mag[:, BANDS.index(SPEC_BAND)], pop["z"])
        chosen = rng.uniform(size=len(p_spec)) < p_spec
        spec_parts.append({k: v[chosen] for k, v in pop.items()})
        # photometric-only rows: galaxies the spectroscopy missed that are still detected (F160W < 27)
        detected = ~chosen & (mag[:, BANDS.index("F160W")] < 27.0)
        phot_parts.append({k: v[detected] for k, v in pop.items()})
        n_have += int(chosen.sum())
        n_phot_have += int(detected.sum())
    merge = lambda parts, m: {k: np.concatenate([p[k] for p in parts])[:m] for k in parts[0]}  # noqa: E731
    spec, phot = merge(spec_parts, n_spec), merge(phot_parts, n - n_spec)
    pop = {k: np.concatenate([spec[k], phot[k]]) for k in spec}
    has_spec = np.r_[np.ones(n_spec, bool), np.zeros(n - n_spec, bool)]
    order = rng.permutation(n)
    pop = {k: v[order] for k, v in pop.items()}
    has_spec = has_spec[order]
    cols = observe(pop, rng)
    names = list(FIELDS)
    field, ids = _fields_and_ids(n, rng)
    centres = np.array([FIELD_CENTRES_DEG[f] for f in names])[field]
    dx_arcsec, dy_arcsec = rng.uniform(-360, 360, n), rng.uniform(-540, 540, n)  # 12' x 18' fields
    cols.update(
        id=ids, field=np.array(names)[field],
        ra=centres[:, 0] + dx_arcsec / 3600 / np.cos(np.radians(centres[:, 1])),
        dec=centres[:, 1] + dy_arcsec / 3600,
        x=(dx_arcsec + 360) / PIXEL_ARCSEC + 200, y=(dy_arcsec + 540) / PIXEL_ARCSEC + 200,
        z_spec=np.where(has_spec, np.round(pop["z"], 5), -1.0),
        # the catalogue's EAZY z_peak used many more bands than these five; a stand-in with 3D-HST-like quality
        # (sigma_NMAD ~ 0.02 (1 + z) and a few per cent outliers), so the column exists, never a reported result
        z_peak=np.where(rng.uniform(size=n) < 0.03, rng.uniform(0.01, 4.0, n),
                        np.clip(pop["z"] + 0.02 * (1 + pop["z"]) * rng.normal(size=n), 0.01, None)),
        # f140w_flag: F140W used for the total correction, i.e. no F160W coverage
        flags=np.zeros(n, int), f140w_flag=np.where(cols["f_F160W"] == MISSING, 1, 0), star_flag=np.zeros(n, int),
        use_phot=np.ones(n, int), near_star=np.zeros(n, int),
        lmass=pop["log_mass"] + 0.1 * rng.normal(size=n),  # a FAST-like estimate, 0.1 dex
        Av=np.clip(pop["av_mag"] + 0.2 * rng.normal(size=n), 0, None),
    )
    out = {c: cols[c] for c in COLUMNS}
    out.update(truth_z=pop["z"], truth_log_mass=pop["log_mass"], truth_template=pop["template"],
               truth_age_gyr=pop["age_gyr"], truth_log_ssfr_yr=pop["log_ssfr_yr"])
    return out


FORMATS = {"id": "%d", "field": "%s", "ra": "%.7f", "dec": "%.7f", "x": "%.3f", "y": "%.3f", "z_spec": "%.5f",
           "z_peak": "%.4f", "flags": "%d", "f140w_flag": "%d", "star_flag": "%d", "use_phot": "%d",
           "near_star": "%d", "nexp_f125w": "%d", "nexp_f140w": "%d", "nexp_f160w": "%d", "lmass": "%.2f",
           "Av": "%.2f"}


def write_catalogue(columns: dict[str, np.ndarray], path: str | Path) -> Path:
    """Whitespace ASCII with a commented header line of the column names, like the 3D-HST catalogues."""
    path = Path(path)
    formats = [FORMATS.get(c, "%.5g") for c in COLUMNS]
    table = np.empty((len(columns["id"]), len(COLUMNS)), dtype=object)
    for j, c in enumerate(COLUMNS):
        table[:, j] = columns[c]
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("# " + " ".join(COLUMNS) + "\n")
            np.savetxt(f, table, fmt=formats, delimiter=" ")
    return path


def simulate(out: str | Path, n: int = 30000, seed: int = 0, format: str | None = None,
             n_templates: int = 3000, n_jobs: int = 2) -> Path:
    """Write a simulated ``3dhst_master.phot.v4.1.cat`` (``n`` rows) to ``out`` (a file, or a folder to hold it)."""
    if format not in (None, "cat", "ascii"):
        raise ConfigError(f"photoz writes the 3D-HST ASCII catalogue only, not {format!r}")
    out = Path(out)
    path = out / "3dhst_master.phot.v4.1.cat" if (out.is_dir() or not out.suffix) else out
    return write_catalogue(simulate_catalogue(n, seed, n_templates, n_jobs=n_jobs), path)
