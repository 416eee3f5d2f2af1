"""The school's SDSS galaxy-spectrum file: reading, validation, masks, the rest-frame grid and normalisation.

Real format: ``sdss_galaxy_spec.hdf5``, group ``raw`` with ``z`` (n,), ``age`` (n,) in years, ``metallicity`` (n,)
in the file's units, ``smass`` (n,) in Msun, ``wavelength`` (n_wave,) in A (observed frame, one grid for all),
``spec`` and ``specerr`` (n, n_wave) in 1e-17 erg/s/cm^2/A (wavelengths in vacuum as SDSS gives them, converted to air
on reading, unless the dataset's ``units`` attribute says air, as the simulator's does); optional ``plateid``,
``fiberid``, ``mjd``, ``ra``, ``dec``, ``zerr`` and (simulated files) ``dust_av_mag``, ``sfr_msun_yr``,
``veldisp_kms``, ``tau_gyr``.

Preparation for the models (:func:`prepare`): bad pixels (specerr <= 0 or anything non-finite) get zero inverse
variance; each spectrum is rebinned, inverse-variance weighted, onto a common log-spaced grid, in the rest frame
(default) or the observed frame; it is divided by its median flux in the line-free rest window 5300-5800 A; bins
without data are filled by linear interpolation for the models (their inverse variance stays 0, so no metric
counts them).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astrobench.core.io import DataFormatError

REQUIRED = ("z", "age", "metallicity", "smass", "wavelength", "spec", "specerr")
LABELS = ("z", "age", "metallicity", "smass")
OPTIONAL_1D = ("plateid", "fiberid", "mjd", "ra", "dec", "zerr", "dust_av_mag", "sfr_msun_yr", "veldisp_kms",
               "tau_gyr")
LOG_STEP = 2e-4  # model grid: two SDSS pixels (138 km/s)
REST_RANGE_AA = (3730.0, 7070.0)  # covered by 3800-9200 A for every 0.02 < z < 0.3
OBSERVED_RANGE_AA = (3800.0, 9200.0)
NORM_WINDOW_AA = (5300.0, 5800.0)  # rest frame, free of strong lines (between [N I] 5200 and He I 5876)
FRAMES = ("rest", "observed")


@dataclass
class SpectraFile:
    """The columns of a spectrum file (every row) and where it came from."""

    path: str
    z: np.ndarray
    age_yr: np.ndarray
    metallicity: np.ndarray
    smass_msun: np.ndarray
    wavelength_aa: np.ndarray
    spec: np.ndarray  # (n, n_wave) 1e-17 erg/s/cm^2/A
    specerr: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.z)


def read_spectra(path: str | Path, n: int | None = None) -> SpectraFile:
    """Read and check an ``sdss_galaxy_spec.hdf5``-format file (the first ``n`` galaxies when ``n`` is given)."""
    import h5py

    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.hdf5")) + sorted(path.glob("*.h5"))
        if len(candidates) != 1:
            raise DataFormatError(path, f"expected one .hdf5 file in this folder, found {len(candidates)}")
        path = candidates[0]
    if not path.exists():
        raise DataFormatError(path, "no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(path, f"not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    with f:
        if "raw" not in f or not isinstance(f["raw"], h5py.Group):
            raise DataFormatError(path, f"no group 'raw' (found {sorted(f.keys())})")
        raw = f["raw"]
        missing = [k for k in REQUIRED if k not in raw]
        if missing:
            raise DataFormatError(path, f"group raw lacks {', '.join(missing)} (it has {', '.join(sorted(raw))})")
        rows = slice(None) if n is None else slice(0, int(n))
        try:
            cols = {k: np.asarray(raw[k][()] if k == "wavelength" else raw[k][rows]) for k in REQUIRED}
            extras = {k: np.asarray(raw[k][rows]) for k in OPTIONAL_1D if k in raw and raw[k].ndim == 1}
        except (OSError, ValueError, TypeError) as err:
            raise DataFormatError(path, f"cannot read its datasets ({str(err).splitlines()[0]})") from None
        units = {k: str(raw[k].attrs.get("units", "")) for k in raw}
    for k, v in cols.items():
        if v.dtype.kind not in "iuf":
            raise DataFormatError(path, f"raw/{k} must be numeric, got dtype {v.dtype}")
    wave, spec, err = cols["wavelength"].astype(float), cols["spec"], cols["specerr"]
    n_gal = len(cols["z"])
    if wave.ndim != 1 or len(wave) < 100:
        raise DataFormatError(path, f"raw/wavelength must be one grid of >= 100 wavelengths, got shape {wave.shape}")
    if not np.all(np.isfinite(wave)) or np.any(np.diff(wave) <= 0) or wave[0] <= 0:
        raise DataFormatError(path, "raw/wavelength must be finite, positive and increasing")
    for k in ("spec", "specerr"):
        if cols[k].shape != (n_gal, len(wave)):
            raise DataFormatError(path, f"raw/{k} has shape {cols[k].shape}, expected (n_galaxies, n_wavelength) = "
                                        f"({n_gal}, {len(wave)})")
    for k in ("age", "metallicity", "smass"):
        if cols[k].shape != (n_gal,):
            raise DataFormatError(path, f"raw/{k} has shape {cols[k].shape}, expected ({n_gal},) like raw/z")
    if n_gal == 0:
        raise DataFormatError(path, "the file holds no galaxies")
    if not np.all(np.isfinite(cols["z"])) or np.any(cols["z"] < 0) or np.any(cols["z"] > 5):
        raise DataFormatError(path, "raw/z must be finite and within 0-5")
    if "air" not in units.get("wavelength", "").lower():
        wave = vacuum_to_air(wave)  # SDSS spectra are in vacuum; line windows and the simulator use air
    return SpectraFile(str(path), cols["z"].astype(float), cols["age"].astype(float),
                       cols["metallicity"].astype(float), cols["smass"].astype(float), wave,
                       spec.astype(np.float32), err.astype(np.float32), extras, units)


def vacuum_to_air(wave_aa: np.ndarray) -> np.ndarray:
    """Vacuum to air wavelengths (A), the IAU standard of Morton (1991) as SDSS documents it:
    lambda_air = lambda_vac / (1 + 2.735182e-4 + 131.4182 / lambda_vac^2 + 2.76249e8 / lambda_vac^4)."""
    return wave_aa / (1.0 + 2.735182e-4 + 131.4182 / wave_aa**2 + 2.76249e8 / wave_aa**4)


def quality_mask(sf: SpectraFile, label_cuts: bool = True) -> np.ndarray:
    """Galaxies to keep: (with ``label_cuts``) finite labels with age > 0, metallicity > 0 and 1e8 < smass < 1e12
    Msun; always at least 10 good pixels in the normalisation window with a positive median flux there."""
    keep = np.ones(len(sf), bool)
    if label_cuts:
        with np.errstate(invalid="ignore"):
            keep &= (sf.age_yr > 0) & (sf.metallicity > 0) & (sf.smass_msun > 1e8) & (sf.smass_msun < 1e12)
    in_window = _in_norm_window(sf, np.arange(len(sf)))
    keep &= in_window.sum(1) >= 10
    masked = np.where(in_window, sf.spec, np.nan)
    with warnings.catch_warnings():  # all-NaN rows (nothing in the window) are already dropped above
        warnings.simplefilter("ignore", RuntimeWarning)
        keep &= np.nanmedian(masked, axis=1) > 0
    return keep


def good_pixels(sf: SpectraFile) -> np.ndarray:
    return (sf.specerr > 0) & np.isfinite(sf.specerr) & np.isfinite(sf.spec)


def _in_norm_window(sf: SpectraFile, rows: np.ndarray) -> np.ndarray:
    """Good pixels of ``rows`` whose rest wavelength lies in the normalisation window."""
    rest = sf.wavelength_aa[None, :] / (1 + sf.z[rows, None])
    return good_pixels(sf)[rows] & (rest > NORM_WINDOW_AA[0]) & (rest < NORM_WINDOW_AA[1])


def model_grid(frame: str = "rest") -> np.ndarray:
    """Bin centres (A) of the log-spaced model grid of a frame."""
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    lo, hi = np.log10(REST_RANGE_AA if frame == "rest" else OBSERVED_RANGE_AA)
    return 10 ** (lo + LOG_STEP * (np.arange(int((hi - lo) / LOG_STEP)) + 0.5))


@dataclass
class Prepared:
    """Spectra on the model grid: ``flux`` normalised (bins without data interpolated), ``ivar`` in the same units
    (0 where no good pixel fell), ``norm`` the divisor in 1e-17 erg/s/cm^2/A, ``rows`` the file rows."""

    wavelength_aa: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    norm: np.ndarray
    rows: np.ndarray
    frame: str

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def coverage(self) -> np.ndarray:
        """Fraction of grid bins with data, per spectrum."""
        return (self.ivar > 0).mean(1)

    def subset(self, keep: np.ndarray) -> Prepared:
        return Prepared(self.wavelength_aa, self.flux[keep], self.ivar[keep], self.norm[keep], self.rows[keep],
                        self.frame)


def rebin(wave_src: np.ndarray, flux: np.ndarray, ivar: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean of the source pixels falling in each bin of ``grid`` (bin edges halfway in
    log wavelength); by hand because spectres, say, neither weights by inverse variance nor skips masked pixels.
    ``wave_src`` (n, n_src) per spectrum; returns flux and ivar (n, n_grid), ivar the sum."""
    log_grid = np.log10(grid)
    step = log_grid[1] - log_grid[0]
    idx = np.floor((np.log10(wave_src) - (log_grid[0] - step / 2)) / step).astype(np.int64)
    valid = (idx >= 0) & (idx < len(grid)) & (ivar > 0)
    n = len(flux)
    flat = (idx + np.arange(n)[:, None] * len(grid))[valid]
    size = n * len(grid)
    w = np.bincount(flat, ivar[valid], size).reshape(n, len(grid))
    wf = np.bincount(flat, (ivar * flux)[valid], size).reshape(n, len(grid))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(w > 0, wf / w, 0.0)
    return out, w


def fill_gaps(flux: np.ndarray, ivar: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Bins with ivar = 0 linearly interpolated from their good neighbours (edges: the nearest good value)."""
    out = flux.copy()
    for i in np.flatnonzero((ivar <= 0).any(1)):
        good = ivar[i] > 0
        if good.any():
            out[i, ~good] = np.interp(grid[~good], grid[good], flux[i, good])
    return out


def prepare(sf: SpectraFile, rows: np.ndarray, frame: str = "rest") -> Prepared:
    """Mask, rebin to the model grid of ``frame``, normalise and fill the spectra of ``rows``."""
    grid = model_grid(frame)
    rows = np.asarray(rows)
    spec, err, z = sf.spec[rows].astype(float), sf.specerr[rows].astype(float), sf.z[rows]
    good = good_pixels(sf)[rows]
    ivar = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0)
    spec = np.where(good, spec, 0.0)
    in_window = _in_norm_window(sf, rows)
    norm = np.array([np.median(s[m]) if m.any() else np.nan for s, m in zip(spec, in_window)])
    if np.any(~(norm > 0)):
        bad = rows[~(norm > 0)][:5]
        raise DataFormatError(sf.path, f"galaxies {list(bad)} have no positive flux in the normalisation window "
                                       f"{NORM_WINDOW_AA} A (rest); apply quality_mask first")
    lam = np.broadcast_to(sf.wavelength_aa, spec.shape)
    if frame == "rest":
        lam = lam / (1 + z[:, None])
    flux, w = rebin(lam, spec / norm[:, None], ivar * norm[:, None] ** 2, grid)
    flux = fill_gaps(flux, w, grid)
    return Prepared(grid, flux.astype(np.float32), w.astype(np.float32), norm, rows, frame)


def split_indices(n: int, seed: int, fractions=(0.7, 0.1, 0.2)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train / validation / test positions (each galaxy is one spectrum, so no group can leak)."""
    order = np.random.default_rng([seed, 3]).permutation(n)
    n_train, n_val = int(fractions[0] * n), int(fractions[1] * n)
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
