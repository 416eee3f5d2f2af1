"""Gravity for the camels simulator: a particle-mesh (PM) N-body code in the FastPM scheme (Feng et al. 2016,
MNRAS 463, 2273), a friends-of-friends halo finder and a power-spectrum estimator.

Why our own code: the PM codes on PyPI were measured first (docs/tasks/camels.md, "Gravity"). ``jaxpm`` 0.1.6
paints only onto a mesh with one cell per particle (its CIC painter reshapes the particles to the mesh) and its
second-order growth fails with a KeyError once jax-cosmo has cached the first-order one; it also brings JAX
(~600 MB) beside PyTorch. ``pycola3`` 0.0.7 installs but cannot run its 2LPT (a Python-2 import,
``from acceleration import grad_phi``). ``pmesh``/``fastpm`` need MPI. The FastPM step itself is a few lines on
top of FFTs and cloud-in-cell (CIC) deposits, written here with scipy.fft and numpy.bincount and tested against
linear theory (tests/tasks/test_camels_nbody.py).

Units: positions in Mpc/h inside a periodic box [0, box); wavenumbers in h/Mpc; P(k) in (Mpc/h)^3. The
displacement fields are in Mpc/h per unit of the linear growth factor D (normalised to D(a = 1) = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft as sfft


# --------------------------------------------------------------------------------------------- linear growth
@lru_cache(maxsize=128)
def growth_table(omega_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, D(a), Gf(a) = a^3 E(a) dD/da) on 400 log-spaced scale factors from 1e-3 to 1 of flat LCDM, D(1) = 1.

    D solves D'' + (3/a + E'/E) D' = 1.5 Omega_m D / (a^5 E^2) (E = H/H0) from the growing mode D = a deep in
    matter domination. Gf is FastPM's "momentum growth": d Gf / da = 1.5 Omega_m D / (a^2 E)."""
    from scipy.integrate import solve_ivp

    def e2(a):
        return omega_m / a**3 + (1.0 - omega_m)

    def derivs(a, y):
        d, dd = y
        e2a = e2(a)
        dln_e_da = -1.5 * omega_m / a**4 / e2a
        return [dd, -(3.0 / a + dln_e_da) * dd + 1.5 * omega_m * d / (a**5 * e2a)]

    a = np.geomspace(1e-3, 1.0, 400)
    sol = solve_ivp(derivs, (a[0], a[-1]), [a[0], 1.0], t_eval=a, rtol=1e-9, atol=1e-12)
    d, dd = sol.y
    gf = a**3 * np.sqrt(e2(a)) * dd
    return a, d / d[-1], gf / d[-1]


def growth_factor(omega_m: float, a: float | np.ndarray) -> np.ndarray:
    """Linear growth factor D(a), D(1) = 1."""
    table_a, d, _ = growth_table(round(float(omega_m), 6))
    return np.interp(a, table_a, d)


def momentum_growth(omega_m: float, a: float | np.ndarray) -> np.ndarray:
    """FastPM's Gf(a) = a^3 E(a) dD/da (same normalisation as ``growth_factor``)."""
    table_a, _, gf = growth_table(round(float(omega_m), 6))
    return np.interp(a, table_a, gf)


# ------------------------------------------------------------------------------------------------ the mesh
def wrap(pos: np.ndarray, box: float) -> np.ndarray:
    """Positions folded into [0, box): in float32, x % box can round up to box itself for x just below 0."""
    pos = np.mod(pos, box)
    pos[pos >= box] = 0.0
    return pos


@lru_cache(maxsize=8)
def wavevectors(n: int, box: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kx, ky, kz [h/Mpc] of an n^3 real FFT (rfftn layout), broadcastable to (n, n, n // 2 + 1), float32."""
    kf = 2 * np.pi / box
    k1 = (np.fft.fftfreq(n, 1.0 / n) * kf).astype(np.float32)
    kz = (np.fft.rfftfreq(n, 1.0 / n) * kf).astype(np.float32)
    return k1[:, None, None], k1[None, :, None], kz[None, None, :]


@lru_cache(maxsize=8)
def _inverse_k2(n: int, box: float) -> np.ndarray:
    kx, ky, kz = wavevectors(n, box)
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = np.inf  # the mean density exerts no force
    return (1.0 / k2).astype(np.float32)


@lru_cache(maxsize=8)
def cic_window(n: int, box: float) -> np.ndarray:
    """Fourier transform of the CIC assignment kernel on an n^3 mesh (one deposit)."""
    kx, ky, kz = wavevectors(n, box)
    h = box / n / (2 * np.pi)
    return (np.sinc(kx * h) * np.sinc(ky * h) * np.sinc(kz * h)) ** 2


def cic_weights(pos: np.ndarray, n: int, box: float) -> tuple[np.ndarray, np.ndarray]:
    """(flat cell indices (8, N) int64, weights (8, N) float32) of the 8 CIC corners of each particle on an n^3
    mesh; computed once per step and shared by the deposit and the three force reads."""
    u = pos * (n / box)
    i0 = np.floor(u).astype(np.int64)
    frac = (u - i0).astype(np.float32)
    i0 %= n
    i1 = (i0 + 1) % n
    index = np.empty((8, len(pos)), dtype=np.int64)
    weight = np.empty((8, len(pos)), dtype=np.float32)
    for corner in range(8):
        bits = [(corner >> axis) & 1 for axis in range(3)]
        idx = i1[:, 0] if bits[0] else i0[:, 0]
        w = frac[:, 0] if bits[0] else 1 - frac[:, 0]
        for axis in (1, 2):
            idx = idx * n + (i1[:, axis] if bits[axis] else i0[:, axis])
            w = w * (frac[:, axis] if bits[axis] else 1 - frac[:, axis])
        index[corner], weight[corner] = idx, w
    return index, weight


def paint(pos: np.ndarray, n: int, box: float, corners=None) -> np.ndarray:
    """(n, n, n) float32 density in units of the mean (1 + delta) of equal-mass particles at ``pos`` (N, 3), CIC;
    ``corners`` from ``cic_weights`` if already computed."""
    index, weight = corners if corners is not None else cic_weights(pos, n, box)
    out = np.bincount(index.ravel(), weight.ravel(), minlength=n**3)
    return (out * (n**3 / len(pos))).reshape(n, n, n).astype(np.float32)


def adaptive_density(pos: np.ndarray, n: int, box: float, min_particles: float = 16.0,
                     widths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)) -> np.ndarray:
    """(n, n, n) float32 density in units of the mean, smoothed where particles are sparse: each cell keeps its
    CIC value if it holds ``min_particles``, else the narrowest Gaussian smoothing (``widths`` in cells) whose
    kernel volume holds that many. So voids are not empty pixels of shot noise: the CAMELS maps treat each particle
    as a cloud whose radius grows where neighbours are sparse (Villaescusa-Navarro et al. 2022). The result is
    renormalised to a mean of exactly 1 (the mixing of scales moves ~1 % of the mass)."""
    rho = paint(pos, n, box)
    per_cell = len(pos) / n**3
    kx, ky, kz = wavevectors(n, box)
    k2 = kx**2 + ky**2 + kz**2
    rho_k = sfft.rfftn(rho, workers=1)
    out = rho.copy()
    chosen = rho * per_cell >= min_particles
    for width in widths:
        sigma = width * box / n
        smooth = sfft.irfftn(rho_k * np.exp(-0.5 * k2 * sigma**2), s=(n,) * 3, workers=1).astype(np.float32)
        enough = smooth * per_cell * (2 * np.pi) ** 1.5 * width**3 >= min_particles
        take = ~chosen & (enough | (width == widths[-1]))
        out[take] = smooth[take]
        chosen |= take
    out = np.maximum(out, 1e-3 * per_cell**-1 / (2 * np.pi) ** 1.5 / widths[-1] ** 3)
    return (out / out.mean()).astype(np.float32)


def read(field: np.ndarray, pos: np.ndarray, box: float, corners=None) -> np.ndarray:
    """CIC interpolation of the (n, n, n) ``field`` at ``pos`` (N, 3)."""
    index, weight = corners if corners is not None else cic_weights(pos, field.shape[0], box)
    return (weight * field.ravel()[index]).sum(axis=0)


def accelerations(pos: np.ndarray, n_mesh: int, box: float) -> np.ndarray:
    """(N, 3) PM force field F of the particles at ``pos``, normalised so that div F = -delta: in linear theory
    F = D(a) psi, the Zel'dovich displacement. The density is deconvolved by the CIC window of the deposit and of
    the read-back (so the force is not smoothed twice); the gradient is spectral."""
    corners = cic_weights(pos, n_mesh, box)
    delta_k = sfft.rfftn(paint(pos, n_mesh, box, corners), workers=1)
    window = cic_window(n_mesh, box)
    phi_k = delta_k * (_inverse_k2(n_mesh, box) / np.maximum(window, 0.05) ** 2)
    out = np.empty((len(pos), 3), dtype=np.float32)
    for axis, k in enumerate(wavevectors(n_mesh, box)):
        force = sfft.irfftn(1j * k * phi_k, s=(n_mesh,) * 3, workers=1).astype(np.float32)
        out[:, axis] = read(force, pos, box, corners)
    return out


# ---------------------------------------------------------------------------------------- initial conditions
def gaussian_field(power, n: int, box: float, rng: np.random.Generator) -> np.ndarray:
    """Fourier modes (rfftn layout, numpy's unnormalised convention) of a Gaussian field with spectrum
    ``power(k)`` [(Mpc/h)^3] on an n^3 mesh: ``irfftn`` of it is delta(x). White noise drawn in real space, so
    the field of a seed does not depend on how it is later used."""
    kx, ky, kz = wavevectors(n, box)
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    pk = np.zeros_like(k)
    pk[k > 0] = power(k[k > 0])
    white = sfft.rfftn(rng.standard_normal((n, n, n)).astype(np.float32), workers=1)
    return white * np.sqrt(pk * n**3 / box**3).astype(np.float32)


def lpt_displacements(delta_k: np.ndarray, n: int, box: float) -> tuple[np.ndarray, np.ndarray]:
    """First- and second-order Lagrangian displacements (3, n, n, n) [Mpc/h] of the linear field ``delta_k``
    (at D = 1): x = q + D psi1 + D2 psi2 with D2 = -3/7 D^2 (Scoccimarro 1998; Bouchet et al. 1995)."""
    inv_k2 = _inverse_k2(n, box)
    ks = wavevectors(n, box)
    shape = (n,) * 3

    def irfft(field_k):
        return sfft.irfftn(field_k, s=shape, workers=1).astype(np.float32)

    psi1 = np.array([irfft(1j * k * delta_k * inv_k2) for k in ks])
    # phi1_ij = k_i k_j delta / k^2; source of the second order: sum_{i<j} phi_ii phi_jj - phi_ij^2
    diag = [irfft(ks[i] * ks[i] * delta_k * inv_k2) for i in range(3)]
    delta2 = diag[0] * diag[1] + diag[0] * diag[2] + diag[1] * diag[2]
    for i, j in ((0, 1), (0, 2), (1, 2)):
        delta2 -= irfft(ks[i] * ks[j] * delta_k * inv_k2) ** 2
    delta2_k = sfft.rfftn(delta2, workers=1)
    psi2 = np.array([irfft(-1j * k * delta2_k * inv_k2) for k in ks])  # grad phi2, laplacian phi2 = delta2
    return psi1, psi2


def lattice(n: int, box: float) -> np.ndarray:
    """(n^3, 3) cell-centred particle lattice [Mpc/h], ordered like a C-contiguous (n, n, n) field."""
    q = (np.arange(n, dtype=np.float32) + 0.5) * (box / n)
    return np.stack(np.meshgrid(q, q, q, indexing="ij"), axis=-1).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------- time steps
def evolve(omega_m: float, delta_k: np.ndarray, n: int, box: float, n_mesh: int, n_steps: int = 10,
           a_start: float = 0.1, a_end: float = 1.0) -> np.ndarray:
    """(n^3, 3) particle positions [Mpc/h] at ``a_end``: 2LPT to ``a_start``, then ``n_steps`` FastPM
    kick-drift-kick steps linear in a on an ``n_mesh``^3 force mesh.

    FastPM's operators integrate the linear-theory time dependence exactly: a kick over [a0, a1] is
    F(x) (Gf(a1) - Gf(a0)) / D(a), a drift p (D(a1) - D(a0)) / Gf(a_mid); so the large scales grow as D(a)
    whatever the number of steps (Feng et al. 2016, eqs. 10-17)."""
    psi1, psi2 = lpt_displacements(delta_k, n, box)
    psi1 = psi1.reshape(3, -1).T
    psi2 = psi2.reshape(3, -1).T
    d0 = float(growth_factor(omega_m, a_start))
    pos = wrap(lattice(n, box) + d0 * psi1 - 3.0 / 7.0 * d0**2 * psi2, box)
    mom = float(momentum_growth(omega_m, a_start)) * (psi1 - 6.0 / 7.0 * d0 * psi2)  # p = a^3 E dx/da
    del psi1, psi2
    steps = np.linspace(a_start, a_end, n_steps + 1)
    a_mom = a_start  # the time the momenta are at
    for a0, a1 in zip(steps[:-1], steps[1:]):
        a_mid = 0.5 * (a0 + a1)
        force = accelerations(pos, n_mesh, box)
        mom += force * float((momentum_growth(omega_m, a_mid) - momentum_growth(omega_m, a_mom))
                             / growth_factor(omega_m, a0))
        a_mom = a_mid
        pos = wrap(pos + mom * float((growth_factor(omega_m, a1) - growth_factor(omega_m, a0))
                                     / momentum_growth(omega_m, a_mid)), box)
    return wrap(pos.astype(np.float32), box)


# -------------------------------------------------------------------------------------------- measurements
def power_spectrum(delta: np.ndarray, box: float, edges: np.ndarray, window: np.ndarray | None = None,
                   shot_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, P(k), number of modes) in the shells ``edges`` [h/Mpc] of the (n, n, n) field ``delta``: mode-weighted
    means; ``window`` (rfftn layout) deconvolves a mass assignment, ``shot_noise`` [(Mpc/h)^3] is subtracted."""
    n = delta.shape[0]
    delta_k = sfft.rfftn(delta.astype(np.float32), workers=1)
    if window is not None:
        delta_k = delta_k / window
    kx, ky, kz = wavevectors(n, box)
    k = np.sqrt(kx**2 + ky**2 + kz**2).ravel()
    p = (np.abs(delta_k) ** 2).ravel() * box**3 / n**6 - shot_noise
    weight = np.full((n, n, n // 2 + 1), 2.0)  # the rfft half space: modes with 0 < kz < Nyquist count twice
    weight[..., 0] = 1.0
    if n % 2 == 0:
        weight[..., -1] = 1.0
    weight = weight.ravel()
    shell = np.digitize(k, edges) - 1
    inside = (shell >= 0) & (shell < len(edges) - 1)
    modes = np.bincount(shell[inside], weight[inside], minlength=len(edges) - 1)
    k_mean = np.bincount(shell[inside], (weight * k)[inside], minlength=len(edges) - 1) / np.maximum(modes, 1)
    p_mean = np.bincount(shell[inside], (weight * p)[inside], minlength=len(edges) - 1) / np.maximum(modes, 1)
    return k_mean, p_mean, modes


def particle_power_spectrum(pos: np.ndarray, box: float, n_mesh: int, edges: np.ndarray):
    """(k, P(k), modes) of particles: CIC on an ``n_mesh``^3 mesh, window deconvolved. No shot noise is removed:
    particles that started on a lattice have none to begin with, and at z = 0 the Poisson value box^3 / N
    (0.06 (Mpc/h)^3 for 64^3 particles in 25 Mpc/h) is below 0.1 % of P(k) at k < 3 h/Mpc."""
    delta = paint(pos, n_mesh, box) - 1.0
    return power_spectrum(delta, box, edges, window=cic_window(n_mesh, box))


# ---------------------------------------------------------------------------------------------- halo finder
@dataclass
class FoFGroups:
    """Friends-of-friends groups: ``label`` (N,) group of each particle (-1: in no group of ``min_members``),
    ``centre`` (G, 3) [Mpc/h] periodic centres of mass, ``members`` (G,) particle counts."""

    label: np.ndarray
    centre: np.ndarray
    members: np.ndarray


def friends_of_friends(pos: np.ndarray, box: float, linking_length: float, min_members: int = 20) -> FoFGroups:
    """FoF groups (Davis et al. 1985) of particles closer than ``linking_length`` [Mpc/h] (periodic), with scipy's
    k-d tree and connected components; groups are ordered by decreasing size."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    tree = cKDTree(wrap(pos.astype(np.float64), box), boxsize=box)
    pairs = tree.query_pairs(linking_length, output_type="ndarray")
    n = len(pos)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    big = np.flatnonzero(sizes >= min_members)
    big = big[np.argsort(-sizes[big], kind="stable")]
    relabel = np.full(len(sizes), -1)
    relabel[big] = np.arange(len(big))
    label = relabel[component]
    member = label >= 0
    # periodic centre of mass: offsets from one member of each group, wrapped to the nearest image
    first = np.full(len(big), -1)
    first[label[member][::-1]] = np.flatnonzero(member)[::-1]
    offset = pos[member] - pos[first[label[member]]]
    offset -= box * np.round(offset / box)
    mean_offset = np.stack([np.bincount(label[member], offset[:, j], minlength=len(big)) for j in range(3)], 1)
    centre = wrap(pos[first] + mean_offset / sizes[big][:, None], box)
    return FoFGroups(label, centre.astype(np.float32), sizes[big])
