"""The camels simulator's physics: particle-mesh gravity against linear theory, the FoF halo finder on known
groups, the power-spectrum estimator on a known spectrum, baryonification's mass conservation and monotonic
suppression."""

import numpy as np
import pytest

from astrobench.tasks.camels import baryons as B
from astrobench.tasks.camels import nbody as N


def test_growth_factor_known_answers():
    a = np.array([0.1, 0.5, 1.0])
    np.testing.assert_allclose(N.growth_factor(1.0, a), a, rtol=1e-4)  # Einstein-de Sitter: D = a
    # flat LCDM, Omega_m = 0.3: Carroll, Press & Turner (1992) fit g(a) = D / a within 1 %
    om = 0.3 / (0.3 + 0.7 * a**3)
    ol = 1 - om
    g = 2.5 * om / (om ** (4 / 7) - ol + (1 + om / 2) * (1 + ol / 70))
    np.testing.assert_allclose(N.growth_factor(0.3, a), a * g / g[-1], rtol=0.01)
    # FastPM's momentum growth is a^3 E dD/da: its slope is 1.5 Omega_m D / (a^2 E)
    x = np.linspace(0.3, 0.9, 7)
    slope = np.gradient(N.momentum_growth(0.3, x), x)
    expected = 1.5 * 0.3 * N.growth_factor(0.3, x) / (x**2 * np.sqrt(0.3 / x**3 + 0.7))
    np.testing.assert_allclose(slope[1:-1], expected[1:-1], rtol=0.02)


def test_power_spectrum_of_a_field_with_known_spectrum():
    rng = np.random.default_rng(0)
    delta_k = N.gaussian_field(lambda k: 50.0 * (k / 1.0) ** -1.5, 32, 25.0, rng)
    delta = np.fft.irfftn(delta_k, s=(32,) * 3, axes=(0, 1, 2))
    k, p, modes = N.power_spectrum(delta, 25.0, np.geomspace(0.5, 3.0, 5))
    assert modes.min() > 50
    np.testing.assert_allclose(p, 50.0 * k**-1.5, rtol=0.15)


def test_particle_mesh_conserves_mass_and_grows_large_scales_linearly():
    """A nearly linear box (amplitude 1e-3 of the z = 0 spectrum): after the PM steps the large-scale power is
    D(a)^2 times the initial field's, mode by mode, within 10 %; the painted mass is exactly the particles'."""
    n, box = 16, 100.0
    rng = np.random.default_rng(1)
    delta_k = N.gaussian_field(lambda k: 1e-3 * 2e4 * k ** -1.0 / (1 + (k / 0.05) ** 2), n, box, rng)
    pos = N.evolve(0.3, delta_k, n, box, n_mesh=n, n_steps=5, a_start=0.1, a_end=0.5)
    assert pos.dtype == np.float32 and (pos >= 0).all() and (pos < box).all()  # float32 x % box can give box
    rho = N.paint(pos, n, box)
    assert rho.mean() == pytest.approx(1.0, rel=1e-5) and (rho >= 0).all()
    edges = np.array([0.06, 0.1, 0.2])  # the fundamental mode is 0.063 h/Mpc
    k, p_end, _ = N.particle_power_spectrum(pos, box, n, edges)
    _, p_start, _ = N.power_spectrum(np.fft.irfftn(delta_k, s=(n,) * 3, axes=(0, 1, 2)), box, edges)
    np.testing.assert_allclose(p_end / p_start, N.growth_factor(0.3, 0.5) ** 2, rtol=0.1)


def test_friends_of_friends_finds_known_groups_across_the_boundary():
    rng = np.random.default_rng(2)
    q = np.arange(1.0, 10.0, 2.0)
    background = np.stack(np.meshgrid(q, q, q), -1).reshape(-1, 3)  # 125 points 2 apart: none linked at 0.2
    clump = rng.normal(0, 0.03, (30, 3)) + [4.0, 4.0, 4.0]
    wrapped = (rng.normal(0, 0.03, (25, 3)) + [0.0, 2.0, 9.99]) % 10.0  # straddles two faces of the box
    groups = N.friends_of_friends(np.vstack([background, clump, wrapped]), 10.0, 0.2, min_members=20)
    assert list(groups.members) == [30, 25]
    np.testing.assert_allclose(groups.centre[0], [4, 4, 4], atol=0.03)
    offset = (groups.centre[1] - [0.0, 2.0, 9.99] + 5.0) % 10.0 - 5.0
    assert np.abs(offset).max() < 0.03
    assert (groups.label[:125] == -1).all() and (groups.label[125:155] == 0).all()


def _toy_box():
    rng = np.random.default_rng(3)
    delta_k = N.gaussian_field(lambda k: 3000.0 * k ** -1.0 / (1 + (k / 0.3) ** 2), 32, 25.0, rng)
    pos = N.evolve(0.3, delta_k, 32, 25.0, n_mesh=32, n_steps=6)
    groups = N.friends_of_friends(pos, 25.0, 0.2 * 25.0 / 32)
    mass = groups.members * 0.3 * B.RHO_CRIT * 25.0**3 / 32**3
    return pos, groups.centre, mass


def test_baryonification_conserves_mass_and_suppresses_more_with_more_feedback():
    x, m_dmo, m_bcm, m_gas = B.mass_profiles(np.array([1e12, 1e13, 1e14]), 0.3, B.suite_parameters(
        np.array([0.3, 0.8, 1, 1, 1, 1.0]), "tng"))
    np.testing.assert_allclose(m_bcm[:, -1], m_dmo[:, -1], rtol=1e-6)  # nothing made or lost inside r_out
    assert np.all(np.diff(m_bcm, axis=1) >= 0) and np.all(m_gas[:, -1] > 0)
    pos, centres, mass = _toy_box()
    assert len(mass) > 5
    edges = np.array([0.5, 1.5, 4.0, 8.0])
    _, p_dmo, _ = N.particle_power_spectrum(pos, 25.0, 64, edges)
    suppression = []
    for a_agn1 in (0.25, 1.0, 4.0):
        bp = B.suite_parameters(np.array([0.3, 0.8, 1.0, a_agn1, 1.0, 1.0]), "tng")
        moved = B.baryonify(pos, centres, mass, 0.3, bp, 25.0)
        far = np.min([np.linalg.norm((pos - c + 12.5) % 25.0 - 12.5, axis=1) / (B.r200c(m) * bp.reach)
                      for c, m in zip(centres, mass)], axis=0) > 1
        assert np.array_equal(moved[far], pos[far])  # beyond every halo's reach nothing moves
        suppression.append(N.particle_power_spectrum(moved, 25.0, 64, edges)[1] / p_dmo)
    suppression = np.array(suppression)
    assert np.all(suppression[:, -1] < 1.0)
    assert suppression[0, -1] > suppression[1, -1] > suppression[2, -1]  # monotonic in the AGN amplitude
    assert np.all(suppression[:, 0] > suppression[:, -1])  # small scales lose more power than k ~ 1
    assert abs(suppression[0, 0] - 1) < 0.02  # weak feedback barely reaches k ~ 1
