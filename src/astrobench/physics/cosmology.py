"""FlatLambdaCDM(H0 = 70 km/s/Mpc, Om0 = 0.3) distances and ages, tabulated once and interpolated.

astropy integrates per redshift; the simulators draw ~10^5 galaxies per batch, so a table on a fine grid
(4,000 redshifts from 0 to ``z_max``) is what they use. The convention is 3D-HST's (Skelton et al. 2014)."""

from __future__ import annotations

from functools import cache

import numpy as np

H0_KM_S_MPC = 70.0
OMEGA_M = 0.3
Z_MAX = 3.7  # the table's upper redshift: the photoz simulator's range (3.5) plus a margin


class Distances:
    """Tabulated FlatLambdaCDM(H0 = 70, Om0 = 0.3) quantities on ``n`` redshifts from 0 to ``z_max``.

    Call it as ``table(name, z)`` with ``name`` one of ``volume_mpc3`` (comoving volume [Mpc^3]), ``age_gyr`` (age
    of the Universe [Gyr]), ``d_l_mpc`` (luminosity distance [Mpc]), ``d_a_mpc`` (angular-diameter distance [Mpc])
    to get the linear interpolation at the redshifts ``z`` (an array of the same shape)."""

    def __init__(self, z_max: float = Z_MAX, n: int = 4000):
        from astropy.cosmology import FlatLambdaCDM

        cosmo = FlatLambdaCDM(H0=H0_KM_S_MPC, Om0=OMEGA_M)
        self.z = np.linspace(0.0, z_max, n)
        self.volume_mpc3 = cosmo.comoving_volume(self.z).value
        self.age_gyr = cosmo.age(self.z).value
        self.d_l_mpc = cosmo.luminosity_distance(self.z).value
        self.d_a_mpc = cosmo.angular_diameter_distance(self.z).value

    def __call__(self, name: str, z: np.ndarray) -> np.ndarray:
        return np.interp(z, self.z, getattr(self, name))


@cache
def flat_lcdm(z_max: float = Z_MAX) -> Distances:
    """The process's one :class:`Distances` table up to ``z_max`` (built on first use, ~0.1 s)."""
    return Distances(z_max)
