"""A CAMELS-multifield-like simulator: Mtot and P maps of two feedback "suites" over the CAMELS parameter space,
written in the CMD file format (docs/tasks/camels.md gives every choice with its source and its limits).

Per simulation (one row of the Latin hypercube), version 3:

1. Gravity: Gaussian initial conditions with the linear P(k) of (Omega_m, sigma_8) (CAMB, tabulated) for 64^3
   dark-matter particles in a periodic (25 Mpc/h)^3 box, 2LPT to z = 9, then 10 particle-mesh steps in the FastPM
   scheme to z = 0 (``nbody.py``).
2. Haloes: friends-of-friends groups (linking length 0.2 of the mean particle spacing, at least 20 particles,
   ~1e11 Msun/h at Omega_m = 0.3), their FoF mass taken as M200c.
3. Baryonic feedback by baryonification (``baryons.py``; Schneider & Teyssier 2015, Schneider et al. 2019): the
   particles around each halo are moved so that its profile changes from NFW to central galaxy + gas pushed
   out by feedback + collisionless matter. The four feedback amplitudes set where haloes start to lose gas (M_c),
   how far it goes (theta_ej) and the stellar fraction, by a law per suite; the SIMBA-like suite ejects gas
   farther than the TNG-like one, as in the CAMELS papers.
4. 3 axes x 5 slabs of 5 Mpc/h: the baryonified particles deposited (CIC, smoothed adaptively where particles are
   sparse, as the CMD maps smooth each particle over its neighbours) on a map_size^3 mesh and projected into
   surface-density maps Mtot [(Msun/h) / (Mpc/h)^2]; the box mean is exactly Omega_m rho_crit, so a map's mean
   is about 1.39e12 Omega_m, as in the real files.
5. A pressure map P (arbitrary fixed units): projected GNFW profiles (Arnaud et al. 2010) of the FoF haloes above
   10^12.5 Msun/h in the slab, amplitude ~ M500 times the gas fraction the baryonification left inside R500 and
   stretched by the ejection radius, on a diffuse floor P ~ rho^1.6 (IGM with T ~ rho^0.6; Hui & Gnedin 1997)
   raised by faster SN winds (A_SN2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from astrobench.core.io import ConfigError, atomic_path
from astrobench.core.parallel import executor
from astrobench.tasks.camels import baryons, nbody
from astrobench.tasks.camels.baryons import OMEGA_B, RHO_CRIT  # (Msun/h) / (Mpc/h)^3

SIMULATOR_VERSION = "3"  # 3: particle-mesh gravity, FoF haloes, baryonification (2: lognormal field + Tinker halos)
PARTICLES_PER_SIDE = 64  # 64^3 particles: 5e9 (Omega_m / 0.3) Msun/h each, spacing 0.39 Mpc/h
PM_STEPS = 10  # FastPM steps from a = 0.1; force mesh = particle lattice (a finer mesh did not add power here)
A_START = 0.1
FOF_LINKING = 0.2  # of the mean particle spacing (Davis et al. 1985)
FOF_MIN_MEMBERS = 20
PRESSURE_LOG_M_MIN = 12.5  # halos whose gas pressure is painted
M500_OVER_M200 = 0.69  # NFW with c200 ~ 5
BOX_MPC_H = 25.0
N_AXES, N_SLABS = 3, 5
MAPS_PER_SIM = N_AXES * N_SLABS
SUITES = {"tng": "IllustrisTNG", "simba": "SIMBA"}
FIELDS = {"mtot": "Mtot", "p": "P"}
PARAM_NAMES = ("omega_m", "sigma_8", "a_sn1", "a_agn1", "a_sn2", "a_agn2")
# CAMELS LH ranges (Villaescusa-Navarro et al. 2021): uniform cosmology, log-uniform feedback amplitudes
PARAM_RANGES = ((0.1, 0.5), (0.6, 1.0), (0.25, 4.0), (0.25, 4.0), (0.5, 2.0), (0.5, 2.0))
LOG_UNIFORM = (False, False, True, True, True, True)
# Arnaud et al. 2010 universal pressure profile (their eq. 12 best fit)
GNFW = {"P0": 8.403, "c500": 1.177, "gamma": 0.3081, "alpha": 1.0510, "beta": 5.4905}


def latin_hypercube(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 6) parameters: one point in each of n equal strata per dimension, strata paired at random."""
    u = (np.argsort(rng.uniform(size=(len(PARAM_RANGES), n)), axis=1).T + rng.uniform(size=(n, 6))) / n
    out = np.empty_like(u)
    for j, ((lo, hi), log) in enumerate(zip(PARAM_RANGES, LOG_UNIFORM)):
        out[:, j] = lo * (hi / lo) ** u[:, j] if log else lo + (hi - lo) * u[:, j]
    return out


@dataclass
class Halos:
    """Halos of one box: positions (n, 3) [Mpc/h] and log10 M200c (n,) [Msun/h]."""

    position: np.ndarray
    log_m: np.ndarray

    @property
    def mass(self) -> np.ndarray:
        return 10.0**self.log_m


def _projected(profile, x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(X grid, the 3-D profile(r) integrated along the line of sight out to r = x_max), X = R / scale."""
    x = np.geomspace(1e-3, x_max, 300)
    los = np.linspace(0, x_max, 1500)
    r = np.sqrt(x[:, None] ** 2 + los[None, :] ** 2)
    values = profile(r)
    values[r > x_max] = 0.0
    return x, 2 * np.trapezoid(values, los, axis=1)


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


def slab_maps(rho: np.ndarray, omega_m: float) -> np.ndarray:
    """(15, n, n) surface densities [(Msun/h)/(Mpc/h)^2] of the (n, n, n) density ``rho`` in units of the box mean;
    map 5 * axis + slab. The box mean is exactly Omega_m rho_crit."""
    n = rho.shape[0]
    cell = BOX_MPC_H / n
    weights = slab_weights(n)
    maps = []
    for axis in range(N_AXES):
        moved = np.moveaxis(rho, axis, 0)
        for s in range(N_SLABS):
            maps.append(np.tensordot(weights[s], moved, axes=(0, 0)) * cell * omega_m * RHO_CRIT)
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


@lru_cache(maxsize=1)
def r500_of_1e14() -> float:
    return (3 * 1e14 / (4 * np.pi * 500 * RHO_CRIT)) ** (1 / 3)


def pressure_map(sigma: np.ndarray, params: np.ndarray, halos: Halos, gas_fraction: np.ndarray, stretch: float,
                 axis: int, bounds: tuple[float, float]) -> np.ndarray:
    """Thermal-pressure-like map of one slab: GNFW profiles of its halos above PRESSURE_LOG_M_MIN on a diffuse
    floor ~ (Sigma / mean)^1.6 (periodic). A halo's projected amplitude is P500 R500 ~ M500^(2/3) R500 times
    ``gas_fraction`` (its gas mass inside R500 over Omega_b / Omega_m M500 after baryonification) times
    Omega_b / Omega_m; its profile is stretched by ``stretch`` at fixed thermal energy."""
    n = sigma.shape[0]
    cell = BOX_MPC_H / n
    omega_m, a_sn2 = float(params[0]), float(params[4])
    baryon_ratio = (OMEGA_B / omega_m) / (OMEGA_B / 0.3)  # P500 ~ f_b = Omega_b / Omega_m (Arnaud et al. 2010)
    # diffuse gas: P ~ rho T with T ~ rho^0.6; faster SN winds (A_SN2) heat it
    out = 1e-3 * baryon_ratio * a_sn2**0.3 * (sigma / sigma.mean()) ** 1.6
    x, profile = _projected_gnfw()
    others = [a for a in range(3) if a != axis]
    for k in np.flatnonzero(_in_slab(halos, axis, bounds) & (halos.log_m >= PRESSURE_LOG_M_MIN)):
        m500 = M500_OVER_M200 * halos.mass[k]
        r500 = (3 * m500 / (4 * np.pi * 500 * RHO_CRIT)) ** (1 / 3)  # Mpc/h
        # projected P500 R500 ~ M500 [in units of a 1e14 Msun/h halo's]; a profile stretched by s keeps its
        # thermal energy, so its 3-D amplitude falls as s^-3 and its projected one as s^-2
        peak = baryon_ratio * gas_fraction[k] * (m500 / 1e14) ** (2 / 3) * (r500 / r500_of_1e14()) / stretch**2
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


def particles_per_side(map_size: int) -> int:
    """Particles per box side: 64, or the map size when maps are smaller (quick and smoke sizes)."""
    return min(PARTICLES_PER_SIDE, map_size)


def gravity_only(params: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n^3, 3) dark-matter particle positions [Mpc/h] at z = 0 of a box with the cosmology of ``params``."""
    from astrobench.tasks.camels.cosmology import power_spectrum

    omega_m, sigma_8 = float(params[0]), float(params[1])
    delta_k = nbody.gaussian_field(lambda k: power_spectrum(omega_m, sigma_8, k, linear=True), n, BOX_MPC_H, rng)
    return nbody.evolve(omega_m, delta_k, n, BOX_MPC_H, n_mesh=n, n_steps=PM_STEPS, a_start=A_START)


def find_halos(pos: np.ndarray, omega_m: float, n: int) -> Halos:
    """FoF haloes of a box of n^3 particles; FoF mass [Msun/h] taken as M200c."""
    groups = nbody.friends_of_friends(pos, BOX_MPC_H, FOF_LINKING * BOX_MPC_H / n, FOF_MIN_MEMBERS)
    particle_mass = omega_m * RHO_CRIT * BOX_MPC_H**3 / n**3
    return Halos(groups.centre, np.log10(groups.members * particle_mass))


def _one_simulation(job) -> tuple[np.ndarray, np.ndarray]:
    params, suite, map_size, seed, i = job
    rng = np.random.default_rng([seed, list(SUITES).index(suite), i])
    n, omega_m = particles_per_side(map_size), float(params[0])
    pos = gravity_only(params, n, rng)
    halos = find_halos(pos, omega_m, n)
    bp = baryons.suite_parameters(params, suite)
    pos = baryons.baryonify(pos, halos.position, halos.mass, omega_m, bp, BOX_MPC_H)
    mtot = slab_maps(nbody.adaptive_density(pos, map_size, BOX_MPC_H), omega_m)
    hot = halos.log_m >= PRESSURE_LOG_M_MIN
    gas = np.zeros(len(halos.log_m))
    if hot.any():
        gas[hot] = baryons.bound_gas_fraction(halos.mass[hot], omega_m, bp)
    stretch = (bp.theta_ej / 3.0) ** 0.5  # gas pushed farther puffs the hot atmosphere too
    pressure = np.array([pressure_map(mtot[5 * a + s], params, halos, gas, stretch, a, slab_bounds(s))
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
