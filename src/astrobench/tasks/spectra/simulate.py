"""SDSS-like galaxy spectra from bagpipes stellar-population models, written in the school's HDF5 format.

The path (docs/tasks/spectra.md gives every number and whether it is a literature value or an estimate):

1. **A population.** Redshifts from an SDSS-main-sample-like dN/dz (0.02 < z < 0.3), stellar masses that grow with
   redshift as a flux-limited sample's do, a quiescent fraction that rises with mass, a stellar mass-metallicity
   relation with scatter, Calzetti dust, a nebular ionisation parameter and a stellar velocity dispersion.
2. **Spectra.** One bagpipes model per galaxy (BC03 MILES stellar grids, delayed-tau star formation, Calzetti
   dust, Cloudy nebular lines and continuum), at the galaxy's redshift on the SDSS observed grid: 3800-9200 A,
   log10 step 1e-4 (69 km/s pixels). bagpipes samples its models at R = 2000 inside that range (its default is
   1000), and the lines are broadened by the stellar velocity dispersion and the SDSS instrumental resolution
   (R ~ 2000, sigma ~ 64 km/s) added in quadrature.
3. **Observation.** A fibre-aperture fraction (a 3 arcsec fibre sees less of a nearby galaxy) and noise from an
   SDSS-like model: sky and read noise rising toward both ends of the spectrograph, sky-line residuals at the
   bright night-sky lines, and a photon term; a few bad pixels flagged with specerr = 0.

The output is the school's ``sdss_galaxy_spec.hdf5``: group ``raw`` with ``z``, ``age`` (mass-weighted, years),
``metallicity`` (Z / Zsun), ``smass`` (living stellar mass, Msun), ``wavelength`` (A, observed frame), ``spec`` and
``specerr`` (1e-17 erg/s/cm^2/A); the simulator adds ``dust_av_mag``, ``sfr_msun_yr``, ``veldisp_kms`` and
``tau_gyr`` that the real file lacks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrobench.core.io import ConfigError, atomic_path
from astrobench.core.parallel import executor
from astrobench.physics import flat_lcdm, quiet_bagpipes

SIMULATOR_VERSION = "2"  # 2: wavelengths labelled air (they are), tabulated age of the Universe
FILENAME = "sdss_galaxy_spec.hdf5"

# the SDSS spectrograph's coadded grid (log10 step 1e-4 from 3800 A); the last pixel lies just below 9200 A
LOG_WAVE_STEP = 1e-4
WAVE_RANGE_AA = (3800.0, 9200.0)
BAGPIPES_R_SPEC = 2000.0  # bagpipes' sampling inside the spectral range (config.R_spec; its default is 1000)
INSTRUMENT_SIGMA_KMS = 299792.458 / 2000 / 2.3548  # R = 2000 as a Gaussian sigma: 64 km/s
FLUX_UNIT = 1e-17  # erg/s/cm^2/A, the SDSS unit

Z_RANGE = (0.02, 0.30)
DNDZ_Z0 = 0.075  # dN/dz ~ z^2 exp(-(z/z0)^1.5): mean z ~ 0.1, as the SDSS main sample (estimate)
POPULATION = {  # every entry is an estimate tuned to look like the SDSS main sample; docs/tasks/spectra.md
    "log_mass_at_z01": 10.45, "log_mass_dz_slope": 4.0, "log_mass_scatter": 0.4, "log_mass_range": (8.7, 11.8),
    "quiescent_mass_mid": 10.5, "quiescent_mass_width": 0.3,
    # Gallazzi et al. (2005)-like stellar mass-metallicity relation: slope, value at 10^10.5 Msun, scatter (dex)
    "log_z_slope": 0.25, "log_z_at_105": -0.1, "log_z_scatter": 0.3, "metallicity_range_zsun": (0.1, 2.5),
    "tau_quiescent_gyr": (0.1, 0.8), "tau_starforming_gyr": (1.0, 15.0),
    "age_fraction_quiescent": (0.5, 0.97), "age_fraction_starforming": (0.1, 0.95),
    "av_mean_quiescent_mag": 0.25, "av_mean_starforming_mag": 0.6, "av_max_mag": 2.0,
    "log_u_range": (-3.6, -2.4),
    # stellar velocity dispersion: log10 sigma = 2.1 + 0.25 (log M - 10.5) +- 0.08 (Faber-Jackson-like)
    "log_sigma_at_105": 2.1, "log_sigma_slope": 0.25, "log_sigma_scatter": 0.08,
}
NOISE = {  # SDSS-like per-pixel noise in 1e-17 erg/s/cm^2/A (estimates: median S/N ~ 12 per pixel at 6000-6500 A)
    "sky_sigma": 0.4, "blue_rise": 2.0, "red_rise": 1.0, "photon_gain": 0.02,
    "sky_lines_aa": (5577.3, 5889.9, 6300.3, 6363.8, 7246.0, 7913.7, 8344.6, 8827.1), "sky_line_boost": 3.0,
    "bad_pixel_fraction": 0.003, "fibre_fraction_at_z01": 0.35,
}


def sdss_wavelength_grid() -> np.ndarray:
    """The SDSS coadd grid in A (observed frame): 10^(3.5798 + 1e-4 i), 3800 <= lambda < 9200."""
    log_lo, log_hi = np.log10(WAVE_RANGE_AA)
    return 10 ** (log_lo + LOG_WAVE_STEP * np.arange(int(np.floor((log_hi - log_lo) / LOG_WAVE_STEP))))


def physics_key() -> dict:
    """Everything that shapes the simulated spectra, for the cache key."""
    return {"population": POPULATION, "noise": NOISE, "dndz_z0": DNDZ_Z0, "z_range": Z_RANGE,
            "r_spec": BAGPIPES_R_SPEC}


def draw_population(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Physical parameters of ``n`` galaxies (bagpipes inputs plus redshift)."""
    p = POPULATION
    # dN/dz by rejection from a uniform proposal; the density peaks at z = z0 (1.333)^(2/3) ~ 0.09
    z = np.empty(0)
    while len(z) < n:
        cand = rng.uniform(*Z_RANGE, 4 * n)
        dens = (cand / DNDZ_Z0) ** 2 * np.exp(-((cand / DNDZ_Z0) ** 1.5))
        z = np.r_[z, cand[rng.uniform(0, 1, len(cand)) < dens / dens.max() * 0.999]]
    z = z[:n]
    log_mass = np.clip(p["log_mass_at_z01"] + p["log_mass_dz_slope"] * (z - 0.1) + rng.normal(0, p["log_mass_scatter"],
                       n), *p["log_mass_range"])
    quiescent_fraction = 1 / (1 + np.exp(-(log_mass - p["quiescent_mass_mid"]) / p["quiescent_mass_width"]))
    quiescent = rng.uniform(0, 1, n) < quiescent_fraction
    loguniform = lambda lo, hi: np.exp(rng.uniform(np.log(lo), np.log(hi), n))  # noqa: E731
    tau = np.where(quiescent, loguniform(*p["tau_quiescent_gyr"]), loguniform(*p["tau_starforming_gyr"]))
    t_universe = flat_lcdm()("age_gyr", z)  # FlatLambdaCDM(70, 0.3), tabulated: astropy integrates per redshift
    frac_q, frac_sf = p["age_fraction_quiescent"], p["age_fraction_starforming"]
    age_frac = np.where(quiescent, rng.uniform(*frac_q, n), rng.uniform(*frac_sf, n))
    log_z = p["log_z_at_105"] + p["log_z_slope"] * (log_mass - 10.5) + rng.normal(0, p["log_z_scatter"], n)
    lo, hi = np.log10(p["metallicity_range_zsun"])
    while np.any(out := (log_z < lo) | (log_z > hi)):  # a truncated normal: redraw the scatter outside the grid
        log_z[out] = (p["log_z_at_105"] + p["log_z_slope"] * (log_mass[out] - 10.5)
                      + rng.normal(0, p["log_z_scatter"], out.sum()))
    metallicity = 10**log_z
    av = np.minimum(rng.exponential(np.where(quiescent, p["av_mean_quiescent_mag"], p["av_mean_starforming_mag"])),
                    p["av_max_mag"])
    sigma_star = 10 ** (p["log_sigma_at_105"] + p["log_sigma_slope"] * (log_mass - 10.5)
                        + rng.normal(0, p["log_sigma_scatter"], n))
    return {"z": z, "log_mass_target": log_mass, "quiescent": quiescent, "tau_gyr": tau,
            "age_start_gyr": age_frac * t_universe, "metallicity_zsun": metallicity, "dust_av_mag": av,
            "log_u": rng.uniform(*p["log_u_range"], n), "veldisp_kms": np.hypot(sigma_star, INSTRUMENT_SIGMA_KMS)}


def _components(params: dict[str, np.ndarray], i: int) -> dict:
    # bagpipes' massformed is the total mass formed; the living mass is ~0.2 dex lower, and is what we record
    return {"redshift": float(params["z"][i]), "veldisp": float(params["veldisp_kms"][i]),
            "delayed": {"age": float(params["age_start_gyr"][i]), "tau": float(params["tau_gyr"][i]),
                        "massformed": float(params["log_mass_target"][i]) + 0.2,
                        "metallicity": float(params["metallicity_zsun"][i])},
            "dust": {"type": "Calzetti", "Av": float(params["dust_av_mag"][i])},
            "nebular": {"logU": float(params["log_u"][i])}}


_MODEL = None  # one bagpipes model per process: building one loads the grids (~2.5 s), updating it is ~0.08 s


def _model(components: dict):
    """This process's bagpipes model, built on first use from ``components``."""
    global _MODEL
    if _MODEL is None:
        bagpipes = quiet_bagpipes()
        bagpipes.config.R_spec = BAGPIPES_R_SPEC
        _MODEL = bagpipes.model_galaxy(components, spec_wavs=sdss_wavelength_grid())
    return _MODEL


def _model_chunk(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """bagpipes spectra (1e-17 erg/s/cm^2/A, SDSS grid) and derived SFH quantities for one chunk of galaxies."""
    import warnings

    n = len(params["z"])
    flux = np.empty((n, len(sdss_wavelength_grid())), dtype=np.float32)
    age, mass, sfr = np.empty(n), np.empty(n), np.empty(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _model(_components(params, 0))
        for i in range(n):
            model.update(_components(params, i))
            flux[i] = model.spectrum[:, 1] / FLUX_UNIT
            age[i] = model.sfh.mass_weighted_age  # Gyr
            mass[i] = model.sfh.stellar_mass
            sfr[i] = model.sfh.sfr
    return {"flux": flux, "age_mw_gyr": age, "log_smass": mass, "sfr_msun_yr": sfr}


def model_spectra(params: dict[str, np.ndarray], n_jobs: int = 2, progress: bool = False) -> dict[str, np.ndarray]:
    """Run :func:`_model_chunk` over ``params`` on ``n_jobs`` Dask workers (``core.parallel.executor``), chunks of
    50 galaxies (a chunk's models depend on its parameters only, so the result does not depend on the workers)."""
    from rich.progress import Progress

    n = len(params["z"])
    chunks = np.array_split(np.arange(n), max(1, int(np.ceil(n / 50))))
    parts = [{k: v[idx] for k, v in params.items()} for idx in chunks]
    results = []
    with executor(n_jobs, n_chunks=len(parts)) as pool, Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("spectra: bagpipes models", total=n)
        for part, res in zip(parts, pool.map(_model_chunk, parts)):
            results.append(res)
            bar.advance(task, len(part["z"]))
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def noise_sigma(wave_aa: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """Per-pixel noise sigma (1e-17 erg/s/cm^2/A) of spectra ``flux`` (n, n_wave) observed on ``wave_aa``."""
    p = NOISE
    x = (np.log(wave_aa) - np.log(6000.0)) / np.log(9200 / 6000)
    shape = 1 + p["blue_rise"] * np.clip(-x / (np.log(6000 / 3800) / np.log(9200 / 6000)), 0, None) ** 3 \
        + p["red_rise"] * np.clip(x, 0, None) ** 2
    for line in p["sky_lines_aa"]:
        shape = shape + p["sky_line_boost"] * np.exp(-0.5 * ((wave_aa - line) / 1.5) ** 2)
    return np.sqrt((p["sky_sigma"] * shape) ** 2 + p["photon_gain"] * np.clip(flux, 0, None))


def observe(flux_total: np.ndarray, z: np.ndarray, wave_aa: np.ndarray, rng: np.random.Generator):
    """Fibre aperture, noise and bad pixels: returns (spec, specerr) in 1e-17 erg/s/cm^2/A, specerr = 0 marks a bad
    pixel."""
    p = NOISE
    fibre = np.clip(p["fibre_fraction_at_z01"] * (z / 0.1) ** 0.5, 0.15, 0.7)[:, None]
    true = flux_total * fibre
    err = noise_sigma(wave_aa, true)
    spec = true + err * rng.standard_normal(true.shape)
    bad = rng.uniform(0, 1, true.shape) < p["bad_pixel_fraction"]
    # now and then a run of bad pixels (a bad column or a cosmic-ray residual)
    for i in np.flatnonzero(rng.uniform(0, 1, len(z)) < 0.05):
        start = rng.integers(0, true.shape[1] - 30)
        bad[i, start:start + rng.integers(5, 30)] = True
    err[bad] = 0.0
    return spec.astype(np.float32), err.astype(np.float32)


def simulate_spectra(n: int = 10000, seed: int = 0, n_jobs: int = 2, progress: bool = False) -> dict[str, np.ndarray]:
    """The columns of an ``sdss_galaxy_spec.hdf5`` for ``n`` simulated galaxies."""
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng([seed, 11])
    params = draw_population(n, rng)
    models = model_spectra(params, n_jobs=n_jobs, progress=progress)
    wave = sdss_wavelength_grid()
    spec, err = observe(models["flux"], params["z"], wave, rng)
    return {"z": params["z"], "age": models["age_mw_gyr"] * 1e9, "metallicity": params["metallicity_zsun"],
            "smass": 10 ** models["log_smass"], "wavelength": wave, "spec": spec, "specerr": err,
            "dust_av_mag": params["dust_av_mag"], "sfr_msun_yr": models["sfr_msun_yr"],
            "veldisp_kms": params["veldisp_kms"], "tau_gyr": params["tau_gyr"]}


UNITS = {"z": "redshift", "age": "yr (mass-weighted)", "metallicity": "Z/Zsun", "smass": "Msun (living stellar mass)",
         "wavelength": "Angstrom (observed frame, air: bagpipes' and Cloudy's line wavelengths)",
         "spec": "1e-17 erg/s/cm^2/Angstrom",
         "specerr": "1e-17 erg/s/cm^2/Angstrom (0 = bad pixel)", "dust_av_mag": "mag (Calzetti A_V)",
         "sfr_msun_yr": "Msun/yr (last 100 Myr)", "veldisp_kms": "km/s (stellar + instrumental)",
         "tau_gyr": "Gyr (delayed-tau timescale)"}


def write_hdf5(columns: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write ``columns`` as group ``raw`` of an HDF5 file, each dataset with a ``units`` attribute."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            raw = f.create_group("raw")
            raw.attrs["source"] = "astrobench spectra simulator (bagpipes BC03 + Cloudy), version " + SIMULATOR_VERSION
            for name, values in columns.items():
                ds = raw.create_dataset(name, data=values, compression="gzip" if np.ndim(values) == 2 else None)
                ds.attrs["units"] = UNITS.get(name, "")
    return path


def simulate(out: str | Path, n: int = 10000, seed: int = 0, format: str | None = None, n_jobs: int = 2,
             progress: bool = True) -> Path:
    """Write a simulated ``sdss_galaxy_spec.hdf5`` with ``n`` galaxies to ``out`` (a file, or a folder to hold it)."""
    if format not in (None, "hdf5", "h5"):
        raise ConfigError(f"spectra writes the school's HDF5 format only, not {format!r}")
    out = Path(out)
    path = out / FILENAME if (out.is_dir() or not out.suffix) else out
    return write_hdf5(simulate_spectra(n, seed, n_jobs=n_jobs, progress=progress), path)
