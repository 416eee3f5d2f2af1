"""Data for the GAN-latent task: the ``spectra`` task's spectra, down-sampled, and the physical parameters each
file allows.

The spectra are the ``spectra`` task's (its simulator and loader; rest frame, normalised at 5300-5800 A),
averaged over ``factor`` neighbouring bins with inverse-variance weights: the school advises low-dimensional
data, and 4 bins of 138 km/s keep the strong lines and the 4000 A break in 347 pixels.

Parameters (standardised for the networks):

- ``log_age_yr`` and ``log_metallicity`` (log10 Z/Zsun): in every file;
- ``dust_av_mag`` (Calzetti A_V) and ``log_ssfr_yr`` (log10 specific star-formation rate over the last 100 Myr,
  floored at -12: below it no line or colour of a normalised spectrum changes): when the file has
  ``dust_av_mag`` and ``sfr_msun_yr``, as the simulator's files do.

Redshift (the rest frame removes it) and stellar mass (a normalised spectrum has no flux scale) are not measurable
from these spectra, so they are no parameters here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astrobench.tasks.spectra import Prepared, SpectraFile, fill_gaps

ALL_PARAMETERS = ("log_age_yr", "log_metallicity", "dust_av_mag", "log_ssfr_yr")
LOG_SSFR_FLOOR = -12.0
LABELS = {"log_age_yr": "log age / yr", "log_metallicity": "log Z / Zsun", "dust_av_mag": "A_V (mag)",
          "log_ssfr_yr": "log sSFR / yr^-1"}


def available_parameters(sf: SpectraFile) -> list[str]:
    """The parameters this file has: age and metallicity always, dust and sSFR when their columns exist."""
    extra = [p for p, col in (("dust_av_mag", "dust_av_mag"), ("log_ssfr_yr", "sfr_msun_yr")) if col in sf.extras]
    return ["log_age_yr", "log_metallicity", *extra]


def parameter_table(sf: SpectraFile, rows: np.ndarray, names: list[str]) -> np.ndarray:
    """(n, len(names)) physical parameters of the file rows (see the module docstring for units)."""
    columns = {
        "log_age_yr": lambda: np.log10(sf.age_yr[rows]),
        "log_metallicity": lambda: np.log10(sf.metallicity[rows]),
        "dust_av_mag": lambda: sf.extras["dust_av_mag"][rows],
        "log_ssfr_yr": lambda: np.log10(np.maximum(sf.extras["sfr_msun_yr"][rows] / sf.smass_msun[rows],
                                                   10**LOG_SSFR_FLOOR)),
    }
    return np.column_stack([columns[n]() for n in names]).astype(float)


@dataclass
class Downsampled:
    """Spectra averaged over ``factor`` bins: ``wavelength_aa`` the mean of each group's centres."""

    wavelength_aa: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray


def downsample(prep: Prepared, factor: int) -> Downsampled:
    """Inverse-variance weighted means over groups of ``factor`` bins (a trailing partial group is dropped); a
    group without data is interpolated from its neighbours and keeps ivar 0, as the loader does."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    n_out = len(prep.wavelength_aa) // factor
    cut = n_out * factor
    w = prep.ivar[:, :cut].reshape(len(prep), n_out, factor).astype(float)
    f = prep.flux[:, :cut].reshape(len(prep), n_out, factor).astype(float)
    wave = prep.wavelength_aa[:cut].reshape(n_out, factor).mean(1)
    ivar = w.sum(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.where(ivar > 0, (w * f).sum(2) / ivar, f.mean(2))
    flux = fill_gaps(flux, ivar, wave)
    return Downsampled(wave, flux.astype(np.float32), ivar.astype(np.float32))
