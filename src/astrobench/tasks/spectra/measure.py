"""Physical summary statistics of rest-frame spectra, measured the same way on real and generated ones.

- ``dn4000``: the narrow 4000 A break of Balogh et al. (1999), <f_nu> over 4000-4100 A / <f_nu> over 3850-3950 A.
- ``ew_halpha``: equivalent width of H-alpha in A (emission positive), flux in 6554-6572 A over a continuum from
  the median of the sidebands 6490-6530 and 6600-6640 A (clear of [N II] 6548/6584 and [S II]).
- ``line_ratio_oiii_hbeta``: log10 [O III] 5007 / H-beta, the BPT y-axis (Baldwin, Phillips & Terlevich 1981),
  for spectra where both lines are detected at > 3 sigma; ``line_ratio_nii_halpha`` likewise ([N II] 6584).
- ``color_gr``: synthetic rest-frame g - r (AB) through the SDSS g and r curves of astro-sedpy; r is cut at the
  grid's red end (7070 A, where its transmission has fallen to a few per cent), the same for every spectrum.

Every function takes ``wave`` (n_wave,) in A (rest frame), ``flux`` (n, n_wave) f_lambda in any units and, where a
significance is needed, ``ivar`` in the inverse square of those units.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

LINES = {  # name: (line window, blue sideband, red sideband), rest-frame A
    "hbeta": ((4854.0, 4869.0), (4815.0, 4845.0), (4880.0, 4910.0)),
    "oiii_5007": ((4999.0, 5015.0), (4970.0, 4990.0), (5030.0, 5060.0)),
    "halpha": ((6554.0, 6572.0), (6490.0, 6530.0), (6600.0, 6640.0)),
    "nii_6584": ((6577.0, 6592.0), (6490.0, 6530.0), (6600.0, 6640.0)),
}
DETECTION_SIGMA = 3.0
STATISTICS = ("dn4000", "ew_halpha", "line_ratio_oiii_hbeta", "color_gr")
# values are clipped to these ranges before a Wasserstein distance: at low S/N a ratio of two noisy means can run
# off to +-infinity, and W1 (a mean absolute shift) would be ruled by those few spectra
RANGES = {"dn4000": (0.5, 3.0), "ew_halpha": (-20.0, 300.0), "line_ratio_oiii_hbeta": (-1.5, 1.5),
          "line_ratio_nii_halpha": (-2.0, 1.0), "color_gr": (-0.5, 1.5)}


def _window(wave: np.ndarray, lo: float, hi: float) -> np.ndarray:
    m = (wave >= lo) & (wave <= hi)
    if not m.any():
        raise ValueError(f"the grid {wave[0]:.0f}-{wave[-1]:.0f} A does not cover {lo:.0f}-{hi:.0f} A")
    return m


def dn4000(wave: np.ndarray, flux: np.ndarray) -> np.ndarray:
    f_nu = flux * wave**2
    return f_nu[:, _window(wave, 4000, 4100)].mean(1) / f_nu[:, _window(wave, 3850, 3950)].mean(1)


def line_flux(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray | None, line: str):
    """(line flux, its sigma, continuum level): sum of (f - continuum) d lambda over the line window, with the
    continuum the median of the two sidebands; sigma from ``ivar`` (infinite where no pixel has data)."""
    window, blue, red = LINES[line]
    m = _window(wave, *window)
    side = _window(wave, *blue) | _window(wave, *red)
    cont = np.median(flux[:, side], axis=1)
    dlam = np.gradient(wave)[m]
    value = ((flux[:, m] - cont[:, None]) * dlam).sum(1)
    if ivar is None:
        return value, np.zeros_like(value), cont
    with np.errstate(divide="ignore"):
        var = np.where(ivar[:, m] > 0, 1.0 / np.maximum(ivar[:, m], 1e-30), np.inf)
    return value, np.sqrt((var * dlam**2).sum(1)), cont


def ew_halpha(wave: np.ndarray, flux: np.ndarray) -> np.ndarray:
    value, _, cont = line_flux(wave, flux, None, "halpha")
    return value / np.where(cont > 0, cont, np.nan)


def line_ratio(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, top: str, bottom: str) -> np.ndarray:
    """log10(top / bottom); NaN unless both lines are detected at > DETECTION_SIGMA."""
    f1, s1, _ = line_flux(wave, flux, ivar, top)
    f2, s2, _ = line_flux(wave, flux, ivar, bottom)
    ok = (f1 > DETECTION_SIGMA * s1) & (f2 > DETECTION_SIGMA * s2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, np.log10(f1 / f2), np.nan)


@lru_cache(maxsize=1)
def _sdss_gr_filters():
    from sedpy.observate import load_filters

    return load_filters(["sdss_g0", "sdss_r0"])


def color_gr(wave: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """Synthetic AB g - r of f_lambda spectra (n, n_wave), through sedpy's photon-counting AB magnitudes."""
    from sedpy.observate import getSED

    with np.errstate(divide="ignore", invalid="ignore"):
        mags = np.atleast_2d(getSED(wave, flux, _sdss_gr_filters()))
    return mags[:, 0] - mags[:, 1]


def summary_statistics(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> dict[str, np.ndarray]:
    """Every statistic per spectrum (NaN where undefined: undetected lines, a non-positive continuum)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"dn4000": dn4000(wave, flux), "ew_halpha": ew_halpha(wave, flux),
                "line_ratio_oiii_hbeta": line_ratio(wave, flux, ivar, "oiii_5007", "hbeta"),
                "line_ratio_nii_halpha": line_ratio(wave, flux, ivar, "nii_6584", "halpha"),
                "color_gr": color_gr(wave, flux)}


def wasserstein(real: np.ndarray, generated: np.ndarray, statistic: str) -> float:
    """Wasserstein-1 distance between the finite values of two samples of ``statistic``, clipped to its RANGES
    (NaN if either has fewer than 10 finite values)."""
    from scipy.stats import wasserstein_distance

    a, b = (np.clip(x[np.isfinite(x)], *RANGES[statistic]) for x in (real, generated))
    if len(a) < 10 or len(b) < 10:
        return float("nan")
    return float(wasserstein_distance(a, b))
