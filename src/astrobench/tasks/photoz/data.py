"""The 3D-HST photometric catalogue: reading, validation, the Hello Universe cuts and the two feature sets.

Real format: ``3dhst_master.phot.v4.1.cat`` (Skelton et al. 2014), whitespace ASCII with a header line of column
names, fluxes on an AB zero point of 25 (m_AB = 25 - 2.5 log10 f), -99 where a value is missing and
``z_spec = -1`` where a galaxy has no spectroscopic redshift. The simulator writes the same format.

Feature sets (docs/tasks/photoz.md):

- ``hello_universe``: the notebook's 29 columns exactly, ``field`` label-encoded, the -99s of the seven error
  columns replaced by the column median (taken, as in the notebook, over the cut sample with the -99s in it),
  fluxes left as they are (-99 included).
- ``colors``: asinh magnitudes (Lupton et al. 1999; they stay finite for faint and negative fluxes) of the five
  bands, the colours between them, signal-to-noise ratios, missing-band flags, the galaxy's size and its field;
  NaN where a band is missing (each method's pipeline imputes or handles it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrobench.core.io import DataFormatError, check_numeric_cells, check_text_table, numeric_column, table_columns
from astrobench.tasks.photoz.simulate import AB_ZERO_POINT, BANDS, MISSING

HELLO_UNIVERSE_FEATURES = (
    "id", "field", "ra", "dec", "x", "y", "faper_F140W", "eaper_F140W", "faper_F160W", "eaper_F160W",
    "f_F606W", "e_F606W", "f_F814W", "e_F814W", "f_F125W", "e_F125W", "f_F140W", "e_F140W", "f_F160W", "e_F160W",
    "tot_cor", "kron_radius", "a_image", "b_image", "flux_radius", "fwhm_image", "nexp_f125w", "nexp_f140w",
    "nexp_f160w",
)
REQUIRED = ("z_spec", "lmass", *HELLO_UNIVERSE_FEATURES)
ERROR_COLUMNS = tuple(c for c in HELLO_UNIVERSE_FEATURES if c.startswith("e") and c.endswith("W"))
COLOUR_PAIRS = (("F606W", "F814W"), ("F814W", "F125W"), ("F125W", "F140W"), ("F140W", "F160W"),
                ("F606W", "F125W"), ("F814W", "F160W"), ("F125W", "F160W"), ("F606W", "F160W"))
FEATURE_SETS = ("hello_universe", "colors")
LMASS_MIN = 9.0  # the notebook's cut: log M* > 9 ("complete coverage across redshift")


@dataclass
class Catalogue:
    """Columns of a 3D-HST-format catalogue (every row of the file) and where it came from."""

    columns: dict[str, np.ndarray]
    path: str
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.columns["z_spec"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


def read_catalogue(path: str | Path) -> Catalogue:
    """Read a ``3dhst_master.phot.v4.1.cat``-format file (astropy ASCII; header with or without ``#``) and check
    that it has the columns the Hello Universe preprocessing uses, numeric where they must be."""
    from astropy.io import ascii

    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.cat"))
        if len(candidates) != 1:
            raise DataFormatError(path, f"a folder must hold exactly one .cat catalogue, found {len(candidates)}")
        path = candidates[0]
    text, delimiter = check_text_table(path)  # empty, binary, cut off, ragged, repeated names: named here
    if delimiter is not None:
        raise DataFormatError(path, f"columns separated by {delimiter!r}; a 3D-HST catalogue separates them by "
                              "spaces")
    header_format = "commented_header" if text.lstrip().startswith("#") else "basic"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what astropy would warn about is checked above or below
            table = ascii.read(text, format=header_format, fast_reader=True, guess=False)
    except Exception as err:  # astropy raises many types for unreadable text; all mean the same to a user
        raise DataFormatError(path, f"not a readable ASCII catalogue ({type(err).__name__}: {err})") from None
    missing = [c for c in REQUIRED if c not in table.colnames]
    if missing:
        raise DataFormatError(path, f"missing column(s) {', '.join(missing)} (a 3D-HST v4.1 catalogue has them)")
    if len(table) == 0:
        raise DataFormatError(path, "the catalogue has no rows")
    columns = table_columns(table)
    check_numeric_cells(path, text, columns)
    for name in REQUIRED:
        if name == "field":
            columns[name] = columns[name].astype(str)
            continue
        columns[name] = numeric_column(path, name, columns[name])
        if np.any(~np.isfinite(columns[name])):
            raise DataFormatError(path, f"column {name} has empty or non-finite values (use -99 for missing)")
    return Catalogue(columns=columns, path=str(path), info={"n_rows_file": len(table)})


def hello_universe_rows(cat: Catalogue) -> np.ndarray:
    """Indices of the rows the notebook keeps: lmass > 9, then z_spec > 0."""
    return np.flatnonzero((cat["lmass"] > LMASS_MIN) & (cat["z_spec"] > 0))


@dataclass
class FeatureTransform:
    """What a feature set learns from the catalogue it is fitted on, so that a later catalogue (``astrobench
    predict``) is encoded the same way: the field names in label order, the error-column medians
    (``hello_universe``) and the asinh softenings (``colors``)."""

    features: str
    fields: list[str]
    error_medians: dict[str, float] = field(default_factory=dict)
    softenings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, cat: Catalogue, rows: np.ndarray, features: str) -> FeatureTransform:
        """``hello_universe``: medians over ``rows`` with the -99s in them (the notebook fits them on the whole cut
        sample); ``colors``: each band's median positive 1-sigma error over ``rows`` (pass the training rows)."""
        if features not in FEATURE_SETS:
            raise ValueError(f"features must be one of {FEATURE_SETS}, got {features!r}")
        out = cls(features, sorted(np.unique(cat["field"]).tolist()))
        if features == "hello_universe":
            out.error_medians = {c: float(np.median(cat[c][rows])) for c in ERROR_COLUMNS}
        else:
            for band in BANDS:
                errors = cat[f"e_{band}"][rows]
                errors = errors[errors > 0]
                out.softenings[band] = float(np.median(errors)) if len(errors) else 1.0
        return out

    def field_codes(self, names: np.ndarray) -> np.ndarray:
        """Label codes in the fitted order; a field the fit never saw gets -1."""
        lookup = {f: i for i, f in enumerate(self.fields)}
        return np.array([lookup.get(f, -1) for f in names], dtype=float)

    def transform(self, cat: Catalogue, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        if self.features == "hello_universe":
            return self._hello_universe(cat, rows)
        return self._colors(cat, rows)

    def _hello_universe(self, cat, rows):
        X = np.empty((len(rows), len(HELLO_UNIVERSE_FEATURES)))
        for j, name in enumerate(HELLO_UNIVERSE_FEATURES):
            if name == "field":
                X[:, j] = self.field_codes(cat["field"][rows])
                continue
            values = cat[name][rows].astype(float)
            if name in ERROR_COLUMNS:
                values = np.where(values < -90, self.error_medians[name], values)
            X[:, j] = values
        return X, list(HELLO_UNIVERSE_FEATURES)

    def _colors(self, cat, rows):
        names: list[str] = []
        cols: list[np.ndarray] = []
        mags = {}
        for band in BANDS:
            f, e = cat[f"f_{band}"][rows], cat[f"e_{band}"][rows]
            missing = np.isclose(f, MISSING) | (e <= 0)  # -99, or the catalogue's negative-error rows
            mags[band] = np.where(missing, np.nan,
                                  asinh_magnitude(np.where(missing, 0.0, f), self.softenings[band]))
            snr = np.where(missing, np.nan, f / np.where(missing, 1.0, e))
            names += [f"mag_{band}", f"snr_{band}", f"missing_{band}"]
            cols += [mags[band], snr, missing.astype(float)]
        for a, b in COLOUR_PAIRS:
            names.append(f"{a}-{b}")
            cols.append(mags[a] - mags[b])
        names += ["log_flux_radius_pix", "log_tot_cor", "field"]
        cols += [np.log10(np.clip(cat["flux_radius"][rows], 0.1, None)),
                 np.log10(np.clip(cat["tot_cor"][rows], 1e-3, None)), self.field_codes(cat["field"][rows])]
        return np.column_stack(cols), names


def asinh_magnitude(flux: np.ndarray, softening: float) -> np.ndarray:
    """Lupton et al. (1999) asinh magnitude on the catalogue's AB zero point of 25: close to 25 - 2.5 log10 f for
    f >> ``softening``, finite and smooth through zero and negative fluxes."""
    return AB_ZERO_POINT - 2.5 / np.log(10) * (np.arcsinh(flux / (2 * softening)) + np.log(softening))


def feature_matrix(cat: Catalogue, rows: np.ndarray, features: str) -> tuple[np.ndarray, list[str]]:
    """``features`` for ``rows``, with what the set learns fitted on ``rows`` themselves (see FeatureTransform)."""
    return FeatureTransform.fit(cat, rows, features).transform(cat, rows)


def split_indices(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The notebook's 70/15/15 train/validation/test split (sklearn train_test_split twice, random_state 42 at
    seed 0; 42 + seed otherwise). Positions into the cut sample."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    train, rest = train_test_split(idx, test_size=0.3, random_state=42 + seed)
    val, test = train_test_split(rest, test_size=0.5, random_state=42 + seed)
    return train, val, test
