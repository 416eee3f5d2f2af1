"""Reader and writer of the school's cluster-image format, with validation, rebinning and cluster-wise splits.

Format (``cluster_TNG_data.fits``, Ntampaka et al. 2019 as used by the school)
-----------------------------------------------------------------------------
- HDU 0: empty primary.
- HDU 1: image cube (N, npix, npix) of 0.5-2 keV photon counts.
- HDU 2: table with one row per image: ``log_M500`` (log10 M500c in Msun/h), ``train``, ``validate``, ``test``
  (booleans or 0/1), and optionally ``cluster_id`` (projections of one cluster share it). astrobench's simulator
  adds ``projection``, ``core_state``, ``r500_kpc``, ``log_lx_total_erg_s``, ``log_lx_core_excised_erg_s`` (the
  main halo's 0.5-2 keV luminosity within R500 and in 0.15-1 R500; sub-clumps excluded) and header keywords
  (``REDSHIFT``, ``PIXARCS``, ``KPCPIX``, ``EXPOSURE``) that the loader reads when present.

Without ``cluster_id`` an image is its own group: the file's flags are the only safe split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrobench.core.io import ConfigError, DataFormatError, atomic_path, check_readable_file, numeric_column

FITS_BLOCK = 2880  # bytes: every FITS file is a whole number of these (FITS standard 4.0, section 3.1)
REQUIRED_COLUMNS = ("log_M500", "train", "validate", "test")
SPLIT_COLUMNS = ("train", "validate", "test")
HEADER_KEYS = {"REDSHIFT": "redshift", "PIXARCS": "pixel_arcsec", "KPCPIX": "kpc_per_pixel",
               "EXPOSURE": "exposure_s"}


@dataclass
class ClusterImages:
    """Cluster images with their labels.

    images : (N, S, S) float32 photon counts.
    log_m500 : (N,) log10 M500c [Msun/h].
    flags : {"train"|"validate"|"test": (N,) bool}, the file's own split.
    cluster_id : (N,) int or None (then every image counts as its own cluster).
    meta : header facts (redshift, pixel_arcsec, kpc_per_pixel, exposure_s) where the file has them.
    columns : further table columns (e.g. r500_kpc, core_state), as arrays.
    """

    images: np.ndarray
    log_m500: np.ndarray
    flags: dict[str, np.ndarray]
    cluster_id: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "memory"

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def groups(self) -> np.ndarray:
        """The cluster of each image (the image index itself when the file has no cluster_id)."""
        return self.cluster_id if self.cluster_id is not None else np.arange(len(self))

    def rebinned(self, image_size: int) -> ClusterImages:
        """The same images summed into ``image_size``-pixel blocks (counts are conserved)."""
        factor = rebin_factor(self.image_size, image_size, self.source)
        if factor == 1:
            return self
        s = self.image_size // factor
        images = self.images.reshape(len(self), s, factor, s, factor).sum(axis=(2, 4), dtype=np.float32)
        meta = dict(self.meta)
        for key in ("pixel_arcsec", "kpc_per_pixel"):
            if key in meta:
                meta[key] = meta[key] * factor
        return ClusterImages(images, self.log_m500, self.flags, self.cluster_id, meta, self.columns, self.source)


def rebin_factor(have: int, want: int, source: str = "data") -> int:
    if want > have or have % want:
        raise DataFormatError(source, f"images are {have} px, which cannot be binned to image_size={want} "
                              f"(choose a divisor of {have})")
    return have // want


def write_cluster_fits(path: str | Path, obs, split=(0.7, 0.15, 0.15), seed: int = 0) -> Path:
    """Write :class:`~astrobench.tasks.cluster_mass.simulate.MockObservations` in the school's FITS format,
    with train/validate/test flags assigned by cluster."""
    from astropy.io import fits

    from astrobench.tasks.cluster_mass.simulate import (
        CORE_STATES,
        SIMULATOR_VERSION,
        hubble_h,
        kpc_per_arcsec,
    )

    cat = obs.catalogue
    part = split_clusters(len(cat), split, seed)[obs.cluster]
    p = obs.parameters
    pixel_arcsec = p.pixel_arcsec(obs.images.shape[-1])
    table = fits.BinTableHDU.from_columns([
        fits.Column("log_M500", "D", array=cat.log_m500[obs.cluster], unit="log10(Msun/h)"),
        *[fits.Column(name, "L", array=part == k) for k, name in enumerate(SPLIT_COLUMNS)],
        fits.Column("cluster_id", "J", array=obs.cluster),
        fits.Column("projection", "J", array=obs.projection),
        fits.Column("core_state", "12A", array=np.array(CORE_STATES)[cat.state[obs.cluster]]),
        fits.Column("r500_kpc", "D", array=cat.r500_kpc[obs.cluster], unit="kpc"),
        # the main halo's luminosities (sub-clumps of disturbed clusters excluded)
        fits.Column("log_lx_total_erg_s", "D", array=cat.log_lx_total[obs.cluster], unit="log10(erg/s)"),
        fits.Column("log_lx_core_excised_erg_s", "D", array=cat.log_lx_core_excised[obs.cluster],
                    unit="log10(erg/s)"),
    ])
    cube = fits.ImageHDU(obs.images.astype(np.int32), name="COUNTS")
    cube.header["BUNIT"] = ("count", "0.5-2 keV photon counts")
    for key, value, comment in (
        ("REDSHIFT", p.redshift, "cluster redshift"),
        ("PIXARCS", pixel_arcsec, "pixel size [arcsec]"),
        ("KPCPIX", pixel_arcsec * kpc_per_arcsec(p.redshift), "pixel size [kpc] (Planck15)"),
        ("EXPOSURE", p.exposure_s, "exposure [s]"),
        ("HUBBLEH", hubble_h(), "h of the Msun/h masses"),
        ("SIMVER", SIMULATOR_VERSION, "astrobench cluster_mass simulator version"),
    ):
        cube.header[key] = (value, comment)
    path = Path(path)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), cube, table]).writeto(tmp, overwrite=True)
    return path


def split_clusters(n_clusters: int, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """(n_clusters,) split index 0 = train, 1 = validate, 2 = test, from a seeded permutation of clusters."""
    fractions = np.asarray(fractions, dtype=float)
    if len(fractions) != 3 or (fractions < 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
        raise ConfigError(f"split must be three non-negative fractions summing to 1, got {list(fractions)}")
    order = np.random.default_rng(seed).permutation(n_clusters)
    cuts = np.round(np.cumsum(fractions)[:2] * n_clusters).astype(int)
    part = np.empty(n_clusters, dtype=int)
    for k, chunk in enumerate(np.split(order, cuts)):
        part[chunk] = k
    return part


def cluster_folds(groups: np.ndarray, k: int, val_fraction: float, seed: int) -> list[dict[str, np.ndarray]]:
    """k folds over clusters: each fold's test set is one k-th of the clusters, its validation set a fraction
    ``val_fraction`` of the remaining clusters, and the rest trains. Returns image indices per part."""
    from sklearn.model_selection import GroupKFold

    unique = np.unique(groups)
    if k < 2 or k > len(unique):
        raise ConfigError(f"k_folds must be between 2 and the number of clusters ({len(unique)}), got {k}")
    rng = np.random.default_rng(seed)
    # GroupKFold balances fold sizes deterministically; shuffling the labels first randomises the folds.
    relabel = dict(zip(unique, rng.permutation(len(unique))))
    shuffled = np.array([relabel[g] for g in groups])
    folds = []
    for rest, test in GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=shuffled):
        rest_clusters = np.unique(shuffled[rest])
        n_val = max(1, int(round(val_fraction * len(rest_clusters))))
        if len(rest_clusters) - n_val < 2:
            raise ConfigError(f"{len(unique)} clusters are too few for {k} folds with a validation fraction of "
                              f"{val_fraction}: fewer than 2 clusters would train")
        val_clusters = rng.choice(rest_clusters, size=n_val, replace=False)
        is_val = np.isin(shuffled[rest], val_clusters)
        folds.append({"train": rest[~is_val], "val": rest[is_val], "test": test})
    return folds


def load_cluster_fits(path: str | Path, require_labels: bool = True) -> ClusterImages:
    """Read and validate a ``cluster_TNG_data.fits``-format file; any problem raises DataFormatError.

    ``require_labels=False`` (for ``predict``) accepts a file whose table lacks masses and flags, or has no table:
    ``log_m500`` is then NaN and every image is flagged ``test``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "cluster_TNG_data.fits"
    check_readable_file(path)
    size = path.stat().st_size
    if size % FITS_BLOCK:
        raise DataFormatError(path, f"{size} bytes, not a whole number of {FITS_BLOCK}-byte FITS blocks: the file is "
                              "cut off (or not FITS)")
    images, header, rows = _read_hdus(path, require_labels)
    _check_images(path, images)
    log_m, flags, cluster_id = _check_labels(path, rows, len(images), require_labels)
    meta = {attr: _header_number(path, header, key) for key, attr in HEADER_KEYS.items() if key in header}
    extra = {name: (np.char.strip(values.astype(str)) if values.dtype.kind in "SU" else values)
             for name, values in rows.items() if name not in REQUIRED_COLUMNS and name != "cluster_id"}
    return ClusterImages(images, log_m, flags, cluster_id, meta, extra, str(path))


def _read_hdus(path: Path, require_labels: bool) -> tuple[np.ndarray, Any, dict[str, np.ndarray]]:
    """The image cube (N, npix, npix) as float32, its header, and the label table's columns ({} without a table)."""
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyError

    try:
        with warnings.catch_warnings(record=True) as caught, fits.open(path, memmap=False) as hdus:
            warnings.simplefilter("always")
            hdus.verify("silentfix")  # repairable header cards are repaired, not fatal
            truncated = [w for w in caught if "truncated" in str(w.message)]
            if truncated:
                raise DataFormatError(path, "the file is shorter than its headers say: cut off")
            if len(hdus) < (3 if require_labels else 2):
                raise DataFormatError(path, f"expected an empty primary HDU, the image cube (HDU 1) and the label "
                                      f"table (HDU 2); found {len(hdus)} HDU(s)")
            cube = hdus[1]
            if cube.data is None or not isinstance(cube, (fits.ImageHDU, fits.CompImageHDU)):
                raise DataFormatError(path, "HDU 1 must be an image cube (N, npix, npix) of photon counts")
            images = np.asarray(cube.data, dtype=np.float32)
            header = cube.header
            rows: dict[str, np.ndarray] = {}
            if len(hdus) > 2:
                table = hdus[2]
                if not isinstance(table, (fits.BinTableHDU, fits.TableHDU)) or table.data is None:
                    raise DataFormatError(path, "HDU 2 must be a table with columns " + ", ".join(REQUIRED_COLUMNS))
                rows = {name: np.asarray(table.data[name]) for name in table.columns.names}
    except DataFormatError:
        raise
    except (OSError, ValueError, TypeError, VerifyError) as err:
        raise DataFormatError(path, f"not a readable FITS file ({err})") from err

    return images, header, rows


def _check_images(path: Path, images: np.ndarray) -> None:
    """A non-empty cube of square, finite, non-negative count images, none of them blank."""
    if images.ndim != 3:
        raise DataFormatError(path, f"HDU 1 must be a cube (N, npix, npix); got shape {images.shape}")
    if len(images) == 0:
        raise DataFormatError(path, "HDU 1 holds no images")
    if images.shape[1] != images.shape[2]:
        raise DataFormatError(path, f"images must be square and of equal size; got {images.shape[1]} x "
                              f"{images.shape[2]} pixels")
    if not np.isfinite(images).all():
        raise DataFormatError(path, f"{int((~np.isfinite(images)).sum())} image pixels are NaN or infinite")
    if (images < 0).any():
        raise DataFormatError(path, "photon counts must be non-negative")
    n = len(images)
    blank = np.flatnonzero(images.reshape(n, -1).max(axis=1) == 0)
    if len(blank):
        raise DataFormatError(path, f"{len(blank)} of the {n} images have no counts at all (the first: image "
                              f"{blank[0]}); a 100 ks exposure always has background counts")


def _check_labels(path: Path, rows: dict[str, np.ndarray], n: int,
                  require_labels: bool) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """log_M500 (NaN where absent), the train / validate / test flags and the cluster ids (or None) of ``n`` images,
    checked: one row per image, masses in range, flags 0/1 and disjoint, no cluster cut by the file's split."""
    for name, values in rows.items():
        if len(values) != n:
            raise DataFormatError(path, f"HDU 2 has {len(values)} rows but HDU 1 has {n} images")
        if values.ndim != 1 and name in (*REQUIRED_COLUMNS, "cluster_id"):
            raise DataFormatError(path, f"column {name} must hold one value per image, got shape {values.shape}")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows]
    if missing and require_labels:
        raise DataFormatError(path, f"HDU 2 lacks column(s) {', '.join(missing)} (has: {', '.join(rows) or 'none'})")
    log_m = numeric_column(path, "log_M500", rows["log_M500"]) if "log_M500" in rows else np.full(n, np.nan)
    if "log_M500" in rows:
        if not np.isfinite(log_m).all():
            raise DataFormatError(path, f"log_M500 has {int((~np.isfinite(log_m)).sum())} NaN or infinite values")
        if not (10 <= log_m.min() and log_m.max() <= 16.5):
            raise DataFormatError(path, f"log_M500 ranges over [{log_m.min():.3g}, {log_m.max():.3g}]; expected "
                                  "log10 M500c in Msun/h (about 13-15.5)")
    flags = {}
    for name in SPLIT_COLUMNS:
        if name not in rows:
            flags[name] = np.full(n, name == "test")
            continue
        values = rows[name]
        if values.dtype != bool and not (values.dtype.kind in "iuf" and np.isin(values, (0, 1)).all()):
            raise DataFormatError(path, f"column {name} must hold booleans or 0/1")
        flags[name] = values.astype(bool)
    overlap = int((np.sum([flags[k] for k in SPLIT_COLUMNS], axis=0) > 1).sum())
    if overlap:
        raise DataFormatError(path, f"{overlap} images are flagged for more than one of train/validate/test")
    cluster_id = _cluster_ids(path, rows["cluster_id"]) if "cluster_id" in rows else None
    if cluster_id is not None:
        for name in SPLIT_COLUMNS:  # the file's own split must not cut a cluster either
            mixed = np.intersect1d(cluster_id[flags[name]], cluster_id[~flags[name]])
            if mixed.size:
                raise DataFormatError(path, f"cluster_id {rows['cluster_id'][cluster_id == mixed[0]][0]} has images "
                                      f"both in and out of the {name} set")
    return log_m, flags, cluster_id


def _cluster_ids(path: Path, values: np.ndarray) -> np.ndarray:
    """Integer labels 0..K-1 for any cluster_id column (integers, strings such as 'TNG_123', or floats)."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise DataFormatError(path, "cluster_id has NaN or infinite values")
    if values.dtype.kind in "SU":
        values = np.char.strip(values.astype(str))
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


def _header_number(path: Path, header, key: str) -> float:
    try:
        return float(header[key])
    except (TypeError, ValueError):
        raise DataFormatError(path, f"header keyword {key} of HDU 1 must be a number, got {header[key]!r}") from None
