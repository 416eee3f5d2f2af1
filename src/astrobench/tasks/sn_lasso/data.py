"""Tables of SN Ia light-curve fits: reading (Pantheon+ or any CSV / whitespace table), validation and the
candidate-variable matrix that the selection methods see.

Pantheon+ preparation (docs/tasks/sn_lasso.md): Cepheid calibrators out (``IS_CALIBRATOR == 1``), Hubble flow
``z_min < zHD < z_max``, rows with a missing value (-9 or -999) in a used column dropped and counted, one row per
SN (of several complete light curves of one ``CID`` the one with the smallest ``mBERR``), target
y = mB - mu_fiducial(zHD) in a fixed flat LCDM (astropy ``FlatLambdaCDM(H0=70, Om0=0.3)``; the constant goes into
the intercept).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from astrobench.core.io import (
    ConfigError,
    DataFormatError,
    check_numeric_cells,
    check_text_table,
    is_number,
    numeric_column,
    table_columns,
)

MISSING = (-9.0, -999.0)
PANTHEON_REQUIRED = ("CID", "zHD", "mB", "mBERR", "x1", "x1ERR", "c", "cERR", "IS_CALIBRATOR")
# physical candidates whose squares and pairwise products are candidates too
INTERACTING = ("x1", "c", "HOST_LOGMASS", "MWEBV", "zHD")
MASS_STEP_DEX = 10.0
DAYS_PER_YEAR = 365.25


@dataclass
class SNTable:
    """The design matrix of one analysis.

    X : (N, P) candidate variables in physical units, columns named by ``names``.
    y : (N,) target [mag].
    errors : per-SN measurement facts the errors-in-variables fit uses (mBERR, x1ERR, cERR, COV_x1_c,
        COV_mB_x1, COV_mB_c), when the table has them.
    extra : per-SN columns for figures (zHD, CID).
    """

    X: np.ndarray
    y: np.ndarray
    names: list[str]
    errors: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    source: str = "memory"

    def __len__(self) -> int:
        return len(self.y)

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.names.index(name)]


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a CSV or whitespace table with one header line (astropy's reader guesses which)."""
    from astropy.io import ascii

    path = Path(path)
    text, delimiter = check_text_table(path)  # empty, binary, cut off, ragged, repeated names: named here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what astropy would warn about is checked above or below
            table = ascii.read(text, format="csv", delimiter=delimiter) if delimiter else \
                ascii.read(text, guess=True, fast_reader=False)
    except Exception as err:  # astropy raises many types for unreadable text; all mean the same to a user
        raise DataFormatError(path, f"not a readable table ({type(err).__name__}: {err})") from None
    if len(table) == 0:
        raise DataFormatError(path, "the table has no rows")
    columns = table_columns(table)  # empty cells are NaN (and dropped later)
    check_numeric_cells(path, text, columns)
    return columns


def is_pantheon(columns: dict[str, np.ndarray]) -> bool:
    return all(name in columns for name in PANTHEON_REQUIRED)


def _mostly_numeric(values: np.ndarray) -> bool:
    """A text column whose entries are mostly numbers: a numeric column with a typo, not a label column."""
    return values.dtype.kind in "SU" and np.mean([is_number(v) for v in values]) > 0.5


def fiducial_distance_modulus(z: np.ndarray) -> np.ndarray:
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=70.0, Om0=0.3).distmod(np.asarray(z, dtype=float)).value


def prepare_pantheon(columns: dict[str, np.ndarray], source: str = "memory", z_range=(0.023, 0.15),
                     n_noise: int = 10, seed: int = 0, extra_physical: tuple[str, ...] = (),
                     missing: tuple[float, ...] = MISSING) -> SNTable:
    """The candidate matrix of a Pantheon+-format table (see the module docstring for the rules)."""
    absent = [c for c in PANTHEON_REQUIRED if c not in columns]
    if absent:
        raise DataFormatError(source, f"lacks Pantheon+ column(s) {', '.join(absent)}")
    n_rows = len(columns["CID"])
    optional = ("HOST_LOGMASS", "MWEBV", "PKMJD", "FITPROB", "NDOF", "COV_x1_c", "x0", "COV_x1_x0", "COV_c_x0",
                "zHDERR", *extra_physical)
    num = {name: numeric_column(source, name, columns[name]) for name in columns if name != "CID"
           and (columns[name].dtype.kind in "iuf" or name in PANTHEON_REQUIRED or name in optional)}
    keep = (num["IS_CALIBRATOR"] == 0) & (num["zHD"] > z_range[0]) & (num["zHD"] < z_range[1])
    n_calibrators = int((num["IS_CALIBRATOR"] != 0).sum())
    n_outside_z = int(((num["IS_CALIBRATOR"] == 0) & ~keep).sum())
    physical = ["x1", "c"]
    for name in ("HOST_LOGMASS", "MWEBV", "zHD", "PKMJD", "FITPROB", "NDOF", *extra_physical):
        if name in num:
            physical.append(name)
    used = sorted(set(physical) | {"mB", "mBERR", "x1ERR", "cERR"})
    complete = np.ones(n_rows, dtype=bool)
    for name in used:
        complete &= ~np.isin(num[name], missing) & np.isfinite(num[name])
    n_missing = int((keep & ~complete).sum())
    rows = np.flatnonzero(keep & complete)
    if len(rows) < 10:
        raise DataFormatError(source, f"only {len(rows)} SNe remain after the cuts (need at least 10): "
                              + _why_so_few(num, used, keep, missing, n_calibrators, z_range))
    cid = np.char.strip(columns["CID"].astype(str))
    # one row per SN: of the complete light curves of one CID keep the best measured (smallest mBERR)
    order = rows[np.lexsort((num["mBERR"][rows], cid[rows]))]
    first = np.concatenate([[True], cid[order][1:] != cid[order][:-1]])
    rows = np.sort(order[first])
    n_duplicates = int((keep & complete).sum() - len(rows))
    z = num["zHD"][rows]
    if len(rows) < 10:
        raise DataFormatError(source, f"only {len(rows)} SNe remain after the cuts and one row per CID (need at "
                              "least 10)")

    feats, constant = _pantheon_features(source, num, rows, physical, n_noise, seed)
    y = num["mB"][rows] - fiducial_distance_modulus(z)
    errors = _pantheon_errors(num, rows, z)
    info = {"n_rows": n_rows, "n_calibrators": n_calibrators, "n_outside_z": n_outside_z,
            "n_duplicates": n_duplicates, "n_missing_dropped": n_missing, "n_sne": int(len(rows)),
            "z_range": list(z_range), "format": "pantheon+", "constant_columns_dropped": constant}
    return SNTable(np.column_stack(list(feats.values())), y, list(feats), errors,
                   {"zHD": z, "CID": cid[rows]}, info, str(source))


def _pantheon_features(source: str, num: dict[str, np.ndarray], rows: np.ndarray, physical: list[str],
                       n_noise: int, seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """The candidate columns of the selected ``rows``: the physical ones (constant ones dropped and listed), the
    host-mass step, the time of maximum with its season, squares and products of the centred variables, and
    ``n_noise`` pure-noise columns."""
    feats: dict[str, np.ndarray] = {name: num[name][rows] for name in physical if name != "PKMJD"}
    constant = drop_constant(source, feats, required=("x1", "c"))
    if "HOST_LOGMASS" in feats:
        step = (feats["HOST_LOGMASS"] > MASS_STEP_DEX).astype(float)
        if np.ptp(step) > 0:  # hosts on both sides of the step
            feats["mass_step"] = step
        else:
            constant.append("mass_step")
    if "PKMJD" in num and np.ptp(num["PKMJD"][rows]) == 0:
        constant.append("PKMJD")
    elif "PKMJD" in num:  # the time of maximum: a trend and the season of the year
        feats["PKMJD"] = num["PKMJD"][rows]
        phase = 2 * np.pi * num["PKMJD"][rows] / DAYS_PER_YEAR
        feats["season_sin"], feats["season_cos"] = np.sin(phase), np.cos(phase)
    # squares and products of the centred variables: uncentred, x1 * HOST_LOGMASS would be ~10 x1, a copy of x1
    centred = {n: feats[n] - feats[n].mean() for n in INTERACTING if n in feats}
    for name, v in centred.items():
        feats[f"{name}^2"] = v**2
    for a, b in combinations(centred, 2):
        feats[f"{a}*{b}"] = centred[a] * centred[b]
    add_noise_columns(feats, len(rows), n_noise, seed)
    return feats, constant


def _pantheon_errors(num: dict[str, np.ndarray], rows: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
    """Per-SN measurement errors and covariances of the selected ``rows`` (mag and SALT2 units), where the file has
    them: the redshift error as a distance-modulus error, and mB's covariances from x0's."""
    errors = {"mBERR": num["mBERR"][rows], "x1ERR": num["x1ERR"][rows], "cERR": num["cERR"][rows]}
    if "COV_x1_c" in num:
        errors["COV_x1_c"] = num["COV_x1_c"][rows]
    if "zHDERR" in num:  # the redshift error as a distance-modulus error (peculiar velocities dominate it)
        errors["MUERR_Z"] = 5 / np.log(10) * num["zHDERR"][rows] / z
    if {"x0", "COV_x1_x0", "COV_c_x0"} <= set(num):  # mB = -2.5 log10(x0) + const
        dmb_dx0 = -2.5 / (np.log(10) * num["x0"][rows])
        errors["COV_mB_x1"] = dmb_dx0 * num["COV_x1_x0"][rows]
        errors["COV_mB_c"] = dmb_dx0 * num["COV_c_x0"][rows]
    return errors


def _why_so_few(num: dict[str, np.ndarray], used: list[str], keep: np.ndarray, missing, n_calibrators: int,
                z_range) -> str:
    """Which cut emptied the table: the column missing in most rows, else the redshift range."""
    if not keep.any():
        return (f"no non-calibrator SN has {z_range[0]} < zHD < {z_range[1]} ({n_calibrators} calibrators; "
                "--set z_min / z_max)")
    absent = {name: int((keep & (np.isin(num[name], missing) | ~np.isfinite(num[name]))).sum()) for name in used}
    worst = max(absent, key=absent.get)
    return f"column {worst} is missing (NaN, or {' or '.join(f'{m:g}' for m in missing)}) in {absent[worst]} of " \
           f"the {int(keep.sum())} rows in the redshift range"


def drop_constant(source, feats: dict[str, np.ndarray], required: tuple[str, ...] | list[str]) -> list[str]:
    """A candidate with one value in every usable row carries nothing to select (and breaks the scaling): dropped
    from ``feats`` and returned, or refused, named, when it is one the analysis needs (``required``)."""
    constant = [name for name, values in feats.items() if len(values) and np.ptp(values) == 0]
    for name in constant:
        if name in required:
            raise DataFormatError(source, f"column {name} has the same value ({feats[name][0]:g}) in every usable "
                                  "row: nothing to learn from it")
        del feats[name]
    return constant


def add_noise_columns(feats: dict[str, np.ndarray], n: int, n_noise: int, seed: int) -> None:
    """Pure-noise candidates (standard normal, seeded): selecting one is a false selection by construction."""
    clash = [name for name in feats if name.startswith("noise_")]
    if clash and n_noise:
        raise ConfigError(f"column(s) {', '.join(clash)} clash with the pure-noise candidates noise_*; rename them "
                          "or pass --set n_noise=0")
    rng = np.random.default_rng([seed, 7919])
    for k in range(n_noise):
        feats[f"noise_{k}"] = rng.normal(size=n)


def prepare_generic(columns: dict[str, np.ndarray], target: str, features: list[str] | None = None,
                    source: str = "memory", n_noise: int = 10, seed: int = 0,
                    missing: tuple[float, ...] = MISSING) -> SNTable:
    """Any table: ``target`` against ``features`` (default: every other numeric column); rows with a value in
    ``missing`` or a NaN in any used column are dropped (pass ``missing=()`` where -9 is a real value)."""
    if target not in columns:
        raise DataFormatError(source, f"has no target column {target!r} (columns: {', '.join(columns)})")
    y = numeric_column(source, target, columns[target])
    named_features = features is not None
    if features is None:  # every numeric column; a mostly-numeric text column is a broken numeric one
        features = [n for n in columns if n != target and (columns[n].dtype.kind in "iuf"
                                                           or _mostly_numeric(columns[n]))]
    if target in features:
        raise ConfigError(f"the target {target!r} is also named as a feature")
    unknown = [f for f in features if f not in columns]
    if unknown:
        raise DataFormatError(source, f"has no feature column(s) {', '.join(unknown)}")
    if not features:
        raise DataFormatError(source, "has no numeric feature columns besides the target")
    feats = {name: numeric_column(source, name, columns[name]) for name in features}
    complete = np.isfinite(y) & ~np.isin(y, missing)
    for values in feats.values():
        complete &= np.isfinite(values) & ~np.isin(values, missing)
    n_missing = int((~complete).sum())
    named = list(feats) if named_features else []
    feats = {k: v[complete] for k, v in feats.items()}
    constant = drop_constant(source, feats, required=named)  # a feature the user named may not be constant
    if not feats:
        raise DataFormatError(source, f"every feature column is constant in the usable rows ({', '.join(constant)})")
    add_noise_columns(feats, int(complete.sum()), n_noise, seed)
    info = {"n_rows": len(y), "n_missing_dropped": n_missing, "n_sne": int(complete.sum()), "format": "generic",
            "target": target, "constant_columns_dropped": constant}
    return SNTable(np.column_stack(list(feats.values())), y[complete], list(feats), {}, {}, info, str(source))


def load_sn_table(path: str | Path, target: str | None = None, features: list[str] | None = None,
                  n_noise: int = 10, seed: int = 0, z_range=(0.023, 0.15), min_rows: int = 10,
                  missing: tuple[float, ...] = MISSING) -> SNTable:
    """Read ``path`` and build its candidate matrix: the Pantheon+ rules when the table has the Pantheon+
    columns and no ``target`` is named, else ``target`` against ``features``."""
    columns = read_table(path)
    if target is None and is_pantheon(columns):
        extra = tuple(n for n in columns if n.startswith("spec_"))  # the simulator's spectral features
        table = prepare_pantheon(columns, path, z_range, n_noise, seed, extra_physical=extra, missing=missing)
    elif target is None:
        found = [c for c in PANTHEON_REQUIRED if c in columns]
        if len(found) >= len(PANTHEON_REQUIRED) // 2:  # meant as a Pantheon+ table: name what is not there
            lacking = [c for c in PANTHEON_REQUIRED if c not in columns]
            raise DataFormatError(path, f"has Pantheon+ columns but lacks {', '.join(lacking)} (column names are "
                                  "case-sensitive; the header has " + ", ".join(list(columns)[:30]) + ")")
        raise ConfigError(f"{path} is not a Pantheon+ table; name the target column with --set target=COLUMN")
    else:
        table = prepare_generic(columns, target, features, path, n_noise, seed, missing=missing)
    if len(table) < min_rows:
        raise DataFormatError(path, f"{len(table)} usable rows, fewer than the {min_rows} the cross-validation needs")
    return table
