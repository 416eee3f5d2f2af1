"""A CAMELS-multifield-like simulator: Mtot and P maps of two feedback "suites" over the CAMELS parameter space,
written in the CMD file format (docs/tasks/camels.md gives every choice with its source and its limits).

Per simulation (one row of the Latin hypercube):

1. A 3-D lognormal density field (Coles & Jones 1991) in a periodic (25 Mpc/h)^3 box whose power spectrum is the
   non-linear (halofit) matter P(k) of (Omega_m, sigma_8) (``power.py``) times a baryonic suppression
   S(k) = 1 - f k^2 / (k^2 + k_b^2). Its depth f and scale k_b follow the feedback parameters; the SIMBA-like suite
   suppresses more and from larger scales (smaller k_b) than the TNG-like one, as the CAMELS papers found.
   The Gaussian field's spectrum is the one whose exponential has the target spectrum (xi_G = ln(1 + xi)).
2. Halos: Poisson numbers from the Tinker et al. 2008 mass function of (Omega_m, sigma_8) above 10^11.5 Msun/h
   in the box, placed in cells drawn with probability proportional to the lognormal density, with projected NFW
   profiles (Duffy et al. 2008 concentrations, lowered by the feedback's suppression depth). They carry their
   mass; the lognormal field carries the rest.
3. 3 axes x 5 slabs of 5 Mpc/h projected into surface-density maps Mtot [(Msun/h) / (Mpc/h)^2]; the box mean is
   exactly Omega_m rho_crit, so a map's mean is about 1.39e12 Omega_m, as in the real files.
4. A pressure map P (arbitrary fixed units): projected GNFW profiles (Arnaud et al. 2010) of the halos above
   10^12.5 Msun/h in the slab, amplitude ~ (Omega_b / Omega_m) M times a feedback factor, on a diffuse floor
   P ~ rho^1.6 (IGM with T ~ rho^0.6; Hui & Gnedin 1997) raised by faster SN winds (A_SN2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from astrobench.core.io import ConfigError, atomic_path
from astrobench.core.parallel import executor

SIMULATOR_VERSION = "2"  # 2: exact 5 Mpc/h slabs, pressure energy-conserving and ~ Omega_b / Omega_m, A_SN2 acts
HALO_LOG_M_MIN = 11.5  # log10 M200c [Msun/h]: ~300 particles of a CAMELS L25n256 run (particle mass ~1e9 Msun/h)
PRESSURE_LOG_M_MIN = 12.5  # halos whose gas pressure is painted
M500_OVER_M200 = 0.69  # NFW with c200 ~ 5
BOX_MPC_H = 25.0
N_AXES, N_SLABS = 3, 5
MAPS_PER_SIM = N_AXES * N_SLABS
RHO_CRIT = 2.775e11  # (Msun/h) / (Mpc/h)^3
OMEGA_B = 0.049
SUITES = {"tng": "IllustrisTNG", "simba": "SIMBA"}
FIELDS = {"mtot": "Mtot", "p": "P"}
PARAM_NAMES = ("omega_m", "sigma_8", "a_sn1", "a_agn1", "a_sn2", "a_agn2")
# CAMELS LH ranges (Villaescusa-Navarro et al. 2021): uniform cosmology, log-uniform feedback amplitudes
PARAM_RANGES = ((0.1, 0.5), (0.6, 1.0), (0.25, 4.0), (0.25, 4.0), (0.5, 2.0), (0.5, 2.0))
LOG_UNIFORM = (False, False, True, True, True, True)
# Arnaud et al. 2010 universal pressure profile (their eq. 12 best fit)
GNFW = {"P0": 8.403, "c500": 1.177, "gamma": 0.3081, "alpha": 1.0510, "beta": 5.4905}


@dataclass(frozen=True)
class Feedback:
    """Baryonic effects of one suite (phenomenological; fixed before any training, see docs/tasks/camels.md)."""

    depth: float  # power suppression f at A = 1 (k >> k_b)
    k_b: float  # h/Mpc, scale where the suppression sets in, at A_AGN2 = 1
    depth_agn: float  # exponent of A_AGN1 in f
    depth_sn: float  # exponent of A_SN1 in f
    pressure_agn: float  # exponent of A_AGN1 in the pressure amplitude
    pressure_sn: float  # exponent of A_SN1 in the pressure amplitude
    extent: float  # GNFW scale radius stretch (1: Arnaud), times A_AGN2^extent_agn2
    extent_agn2: float
    floor_sn2: float = 0.3  # exponent of A_SN2 in the diffuse pressure


FEEDBACK = {
    "tng": Feedback(depth=0.12, k_b=8.0, depth_agn=0.15, depth_sn=0.25, pressure_agn=-0.15, pressure_sn=-0.1,
                    extent=1.0, extent_agn2=0.2),
    "simba": Feedback(depth=0.25, k_b=1.5, depth_agn=0.40, depth_sn=0.10, pressure_agn=-0.35, pressure_sn=-0.05,
                      extent=1.6, extent_agn2=0.5),
}


def latin_hypercube(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 6) parameters: one point in each of n equal strata per dimension, strata paired at random."""
    u = (np.argsort(rng.uniform(size=(len(PARAM_RANGES), n)), axis=1).T + rng.uniform(size=(n, 6))) / n
    out = np.empty_like(u)
    for j, ((lo, hi), log) in enumerate(zip(PARAM_RANGES, LOG_UNIFORM)):
        out[:, j] = lo * (hi / lo) ** u[:, j] if log else lo + (hi - lo) * u[:, j]
    return out


def suppression(k: np.ndarray, params: np.ndarray, suite: str) -> np.ndarray:
    """S(k) = P_hydro / P_dark-matter-only of one simulation."""
    k_b = FEEDBACK[suite].k_b / np.sqrt(params[5])  # stronger jets (A_AGN2) push the suppression to larger scales
    return 1.0 - suppression_depth(params, suite) * k**2 / (k**2 + k_b**2)


def suppression_depth(params: np.ndarray, suite: str) -> float:
    """f of S(k): the fraction of small-scale power feedback removes (also how much it puffs up halos)."""
    fb = FEEDBACK[suite]
    _, _, a_sn1, a_agn1, _, _ = params
    return min(fb.depth * a_agn1**fb.depth_agn * a_sn1**fb.depth_sn, 0.6)


@lru_cache(maxsize=4)
def _k_grid(n: int) -> np.ndarray:
    kf = 2 * np.pi / BOX_MPC_H
    k1 = np.fft.fftfreq(n, 1.0 / n) * kf
    kz = np.fft.rfftfreq(n, 1.0 / n) * kf
    return np.sqrt(k1[:, None, None] ** 2 + k1[None, :, None] ** 2 + kz[None, None, :] ** 2)


def lognormal_spectra(params: np.ndarray, suite: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(target P(k), Gaussian-field P_G(k)) on the rfft grid of an n^3 box [(Mpc/h)^3].

    The target is the tabulated non-linear spectrum times the suppression. P_G is the transform of
    xi_G = ln(1 + xi), xi the grid correlation function of the target, so that exp(G) has correlation xi; the
    few negative P_G values that a strongly non-linear xi produces are set to zero."""
    from astrobench.tasks.camels.cosmology import power_spectrum

    k = _k_grid(n)
    pk = np.zeros_like(k)
    nonzero = k > 0
    pk[nonzero] = power_spectrum(params[0], params[1], k[nonzero]) * suppression(k[nonzero], params, suite)
    volume, cells, axes = BOX_MPC_H**3, n**3, (0, 1, 2)
    xi = np.fft.irfftn(pk, s=(n, n, n), axes=axes) * cells / volume  # correlation function on the grid
    pk_gauss = np.clip(np.fft.rfftn(np.log1p(np.maximum(xi, -0.99)), axes=axes).real * volume / cells, 0.0, None)
    pk_gauss.flat[0] = 0.0
    return pk, pk_gauss


def lognormal_density(params: np.ndarray, suite: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n, n) density in units of the box mean, 1 + delta = exp(G) / mean(exp(G)): the box mean is exactly 1."""
    _, pk_gauss = lognormal_spectra(params, suite, n)
    axes = (0, 1, 2)
    white = np.fft.rfftn(rng.standard_normal((n, n, n)), axes=axes)
    gauss = np.fft.irfftn(white * np.sqrt(pk_gauss * n**3 / BOX_MPC_H**3), s=(n, n, n), axes=axes)
    rho = np.exp(gauss - gauss.max())
    return rho / rho.mean()


@dataclass
class Halos:
    """Halos of one box: positions (n, 3) [Mpc/h] and log10 M200c (n,) [Msun/h]."""

    position: np.ndarray
    log_m: np.ndarray

    @property
    def mass(self) -> np.ndarray:
        return 10.0**self.log_m


def draw_halos(params: np.ndarray, rho: np.ndarray, rng: np.random.Generator) -> Halos:
    """Poisson halo numbers from the mass function in bins of 0.1 dex above HALO_LOG_M_MIN, placed in cells drawn
    in proportion to the density ``rho`` (so halos sit where the matter is), uniformly inside the cell."""
    from astrobench.tasks.camels.cosmology import LOG_M_MAX, mass_function

    edges = np.arange(HALO_LOG_M_MIN, LOG_M_MAX + 1e-9, 0.1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    expected = mass_function(params[0], params[1], centres) * np.log(10) * 0.1 * BOX_MPC_H**3
    counts = rng.poisson(expected)
    log_m = np.repeat(edges[:-1], counts) + 0.1 * rng.uniform(size=counts.sum())
    n = rho.shape[0]
    cells = rng.choice(rho.size, size=len(log_m), p=(rho / rho.sum()).ravel())
    position = (np.column_stack(np.unravel_index(cells, rho.shape)) + rng.uniform(size=(len(log_m), 3))) * (
        BOX_MPC_H / n)
    return Halos(position, log_m)


def r200c(mass: np.ndarray) -> np.ndarray:
    """R200c [Mpc/h] of M200c [Msun/h]."""
    return (3 * mass / (4 * np.pi * 200 * RHO_CRIT)) ** (1 / 3)


def concentration(mass: np.ndarray) -> np.ndarray:
    """c200c at z = 0, Duffy et al. 2008 (full sample): 5.71 (M / 2e12 Msun/h)^-0.084."""
    return 5.71 * (mass / 2e12) ** -0.084


def _projected(profile, x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(X grid, the 3-D profile(r) integrated along the line of sight out to r = x_max), X = R / scale."""
    x = np.geomspace(1e-3, x_max, 300)
    los = np.linspace(0, x_max, 1500)
    r = np.sqrt(x[:, None] ** 2 + los[None, :] ** 2)
    values = profile(r)
    values[r > x_max] = 0.0
    return x, 2 * np.trapezoid(values, los, axis=1)


@lru_cache(maxsize=1)
def _projected_nfw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(c grid, X = R / R200 grid, projected NFW truncated at R200 for each c)."""
    cs = np.geomspace(1.0, 20.0, 16)
    rows = [_projected(lambda r, c=c: 1 / (c * r * (1 + c * r) ** 2), 1.0) for c in cs]
    return cs, rows[0][0], np.array([row[1] for row in rows])


@lru_cache(maxsize=1)
def _projected_gnfw() -> tuple[np.ndarray, np.ndarray]:
    """The Arnaud et al. 2010 pressure profile projected out to 5 R500: (X = R / R500 grid, y(X))."""
    def gnfw(r):
        c = GNFW["c500"] * r
        return GNFW["P0"] / (c ** GNFW["gamma"] * (1 + c ** GNFW["alpha"]) ** (
            (GNFW["beta"] - GNFW["gamma"]) / GNFW["alpha"]))

    return _projected(gnfw, 5.0)


def _deposit(out: np.ndarray, centre: tuple[float, float], scale: float, x: np.ndarray, profile: np.ndarray,
             total: float | None, x_max: float, amplitude: float = 1.0) -> None:
    """Add a projected radial profile (periodic map, centre and scale in pixels). ``total``: rescale the sampled
    profile to hold exactly this sum (mass conservation for halos smaller than a pixel); else add
    ``amplitude * profile``."""
    n = out.shape[0]
    reach = int(np.ceil(max(x_max * scale, 1.0))) + 1
    ci, cj = int(np.floor(centre[0])), int(np.floor(centre[1]))
    rows, cols = np.arange(ci - reach, ci + reach + 1), np.arange(cj - reach, cj + reach + 1)
    dist = np.sqrt((rows[:, None] + 0.5 - centre[0]) ** 2 + (cols[None, :] + 0.5 - centre[1]) ** 2) / scale
    values = np.interp(np.maximum(dist, x[0]), x, profile, right=0.0)
    if total is not None:
        if values.sum() > 0:
            values = values * (total / values.sum())
        else:  # a halo smaller than the distance to the nearest pixel centre: all of it in its own pixel
            values[ci - rows[0], cj - cols[0]] = total
    else:
        values = values * amplitude
    np.add.at(out, np.ix_(rows % n, cols % n), values)  # a profile wider than the map wraps onto itself


def slab_maps(rho: np.ndarray, omega_m: float, halos: Halos | None = None, puff: float = 0.0) -> np.ndarray:
    """(15, n, n) surface densities [(Msun/h)/(Mpc/h)^2]; map 5 * axis + slab. Halos carry their mass and the
    lognormal field the rest, so the box mean stays exactly Omega_m rho_crit. Feedback lowers the halos'
    concentrations by the factor (1 - puff)."""
    n = rho.shape[0]
    cell = BOX_MPC_H / n
    weights = slab_weights(n)
    box_mass = omega_m * RHO_CRIT * BOX_MPC_H**3
    smooth = 1.0
    if halos is not None and len(halos.log_m):
        smooth = max(1.0 - halos.mass.sum() / box_mass, 0.05)
    maps = []
    for axis in range(N_AXES):
        moved = np.moveaxis(rho, axis, 0)
        others = [a for a in range(3) if a != axis]
        for s in range(N_SLABS):
            sigma = np.tensordot(weights[s], moved, axes=(0, 0)) * cell * omega_m * RHO_CRIT * smooth
            if halos is not None:
                _paint_halos(sigma, halos, axis, others, slab_bounds(s), cell, 1.0 - puff)
            maps.append(sigma)
    return np.array(maps, dtype=np.float32)


def slab_bounds(s: int) -> tuple[float, float]:
    """[start, end) of slab ``s`` along the projection axis [Mpc/h]: exactly 5 Mpc/h each."""
    thickness = BOX_MPC_H / N_SLABS
    return s * thickness, (s + 1) * thickness


def slab_weights(n: int) -> np.ndarray:
    """(5, n) fraction of each grid cell inside each slab (cells that straddle a boundary are split)."""
    lower = np.arange(n) * BOX_MPC_H / n
    upper = lower + BOX_MPC_H / n
    out = np.empty((N_SLABS, n))
    for s in range(N_SLABS):
        a, b = slab_bounds(s)
        out[s] = np.clip(np.minimum(upper, b) - np.maximum(lower, a), 0, None) / (BOX_MPC_H / n)
    return out


def _in_slab(halos: Halos, axis: int, bounds: tuple[float, float]) -> np.ndarray:
    return (halos.position[:, axis] >= bounds[0]) & (halos.position[:, axis] < bounds[1])


def _paint_halos(sigma: np.ndarray, halos: Halos, axis: int, others: list[int], bounds, cell: float,
                 c_factor: float = 1.0) -> None:
    cs, x, table = _projected_nfw()
    for k in np.flatnonzero(_in_slab(halos, axis, bounds)):
        mass = halos.mass[k]
        c_index = int(np.argmin(np.abs(np.log(cs) - np.log(c_factor * concentration(mass)))))
        centre = halos.position[k, others] / cell
        _deposit(sigma, centre, r200c(mass) / cell, x, table[c_index], mass / cell**2, 1.0)


@lru_cache(maxsize=1)
def r500_of_1e14() -> float:
    return (3 * 1e14 / (4 * np.pi * 500 * RHO_CRIT)) ** (1 / 3)


def pressure_map(sigma: np.ndarray, params: np.ndarray, suite: str, halos: Halos, axis: int,
                 bounds: tuple[float, float]) -> np.ndarray:
    """Thermal-pressure-like map of one slab: GNFW profiles of its halos above PRESSURE_LOG_M_MIN (amplitude
    ~ P500 R500 ~ M, times a feedback factor) on a diffuse floor ~ (Sigma / mean)^1.6 (periodic)."""
    fb = FEEDBACK[suite]
    n = sigma.shape[0]
    cell = BOX_MPC_H / n
    _, _, a_sn1, a_agn1, a_sn2, a_agn2 = params
    baryons = (OMEGA_B / params[0]) / (OMEGA_B / 0.3)  # P500 ~ f_b = Omega_b / Omega_m (Arnaud et al. 2010)
    # diffuse gas: P ~ rho T with T ~ rho^0.6; faster SN winds (A_SN2) heat it
    out = 1e-3 * baryons * a_sn2**fb.floor_sn2 * (sigma / sigma.mean()) ** 1.6
    x, profile = _projected_gnfw()
    amplitude = baryons * a_agn1**fb.pressure_agn * a_sn1**fb.pressure_sn
    stretch = fb.extent * a_agn2**fb.extent_agn2
    others = [a for a in range(3) if a != axis]
    for k in np.flatnonzero(_in_slab(halos, axis, bounds) & (halos.log_m >= PRESSURE_LOG_M_MIN)):
        m500 = M500_OVER_M200 * halos.mass[k]
        r500 = (3 * m500 / (4 * np.pi * 500 * RHO_CRIT)) ** (1 / 3)  # Mpc/h
        # projected P500 R500 ~ M500 [in units of a 1e14 Msun/h halo's]; a profile stretched by s keeps its
        # thermal energy, so its 3-D amplitude falls as s^-3 and its projected one as s^-2
        peak = amplitude * (m500 / 1e14) ** (2 / 3) * (r500 / r500_of_1e14()) / stretch**2
        _deposit(out, halos.position[k, others] / cell, r500 * stretch / cell, x, profile, None, 5.0, peak)
    return out.astype(np.float32)


SIMS_PER_CHUNK = 4  # simulations per Dask task


def simulate_suite(n_sims: int, suite: str, map_size: int, seed: int, n_jobs: int = 1):
    """Yields (parameters (6,), Mtot maps (15, s, s), P maps (15, s, s)) for each simulation of one suite, in order.

    The simulations run on ``n_jobs`` Dask workers (``core.parallel.executor``); each draws from its own random
    stream (the seed, the suite and its index), so the maps do not depend on the workers."""
    rng = np.random.default_rng([seed, list(SUITES).index(suite)])
    params = latin_hypercube(n_sims, rng)
    jobs = [(params[i], suite, map_size, seed, i) for i in range(n_sims)]
    with executor(n_jobs, n_chunks=-(-n_sims // SIMS_PER_CHUNK)) as pool:
        for i, (mtot, pressure) in enumerate(pool.map(_one_simulation, jobs, chunksize=SIMS_PER_CHUNK)):
            yield params[i], mtot, pressure


def _one_simulation(job) -> tuple[np.ndarray, np.ndarray]:
    params, suite, map_size, seed, i = job
    field_rng = np.random.default_rng([seed, list(SUITES).index(suite), i])
    rho = lognormal_density(params, suite, map_size, field_rng)
    halos = draw_halos(params, rho, field_rng)
    mtot = slab_maps(rho, params[0], halos, puff=suppression_depth(params, suite))
    pressure = np.array([pressure_map(mtot[5 * a + s], params, suite, halos, a, slab_bounds(s))
                         for a in range(N_AXES) for s in range(N_SLABS)])
    return mtot, pressure


def map_file(folder: Path, field: str, suite: str) -> Path:
    return Path(folder) / f"Maps_{FIELDS[field]}_{SUITES[suite]}_LH_z=0.00.npy"


def params_file(folder: Path, suite: str) -> Path:
    return Path(folder) / f"params_LH_{SUITES[suite]}.txt"


def simulate(out: str | Path, n_sims: int = 1000, seed: int = 0, map_size: int = 64,
             suites: tuple[str, ...] = ("tng", "simba"), progress: bool = False, n_jobs: int = 2) -> Path:
    """Write the CMD files (both fields, each suite) for ``n_sims`` simulations into the folder ``out``, simulated on
    ``n_jobs`` Dask workers (byte-identical files whatever ``n_jobs``).

    Maps go straight into memory-mapped .npy files, so a 1000-simulation 256-pixel set never sits in memory."""
    from rich.progress import track

    if n_sims < 1:
        raise ConfigError(f"simulate at least one simulation, got {n_sims}")
    if map_size < 16 or map_size & (map_size - 1):
        raise ConfigError(f"map_size must be a power of two >= 16 (CMD maps are 256), got {map_size}")
    unknown = set(suites) - set(SUITES)
    if unknown:
        raise ConfigError(f"unknown suite(s) {sorted(unknown)}; choose from {list(SUITES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shape = (n_sims * MAPS_PER_SIM, map_size, map_size)
    for suite in suites:
        with atomic_path(map_file(out, "mtot", suite)) as tmp_m, atomic_path(map_file(out, "p", suite)) as tmp_p:
            maps = {f: np.lib.format.open_memmap(t, mode="w+", dtype=np.float32, shape=shape)
                    for f, t in (("mtot", tmp_m), ("p", tmp_p))}
            rows = []
            sims = simulate_suite(n_sims, suite, map_size, seed, n_jobs=n_jobs)
            for i, (params, mtot, pressure) in enumerate(track(sims, total=n_sims, disable=not progress,
                                                                 description=f"simulating {SUITES[suite]}",
                                                                 transient=True)):
                maps["mtot"][i * MAPS_PER_SIM:(i + 1) * MAPS_PER_SIM] = mtot
                maps["p"][i * MAPS_PER_SIM:(i + 1) * MAPS_PER_SIM] = pressure
                rows.append(params)
            for m in maps.values():
                m.flush()
            del maps
        with atomic_path(params_file(out, suite)) as tmp:
            np.savetxt(tmp, np.array(rows), fmt="%.5f", header="Om sigma8 SN1 AGN1 SN2 AGN2")
    return out
