"""The school's FITS format: round trip, validation with clear errors, splits and folds by cluster."""

import numpy as np
import pytest
from astropy.io import fits

from astrobench.core.io import ConfigError, DataFormatError
from astrobench.tasks.cluster_mass.data import cluster_folds, load_cluster_fits, split_clusters
from astrobench.tasks.cluster_mass.simulate import simulate, simulate_cluster_images


@pytest.fixture(scope="module")
def fits_file(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("cm") / "cluster_TNG_data.fits", n=20, seed=4, n_projections=3,
                    image_size=32)


def test_round_trip(fits_file):
    data = load_cluster_fits(fits_file)
    obs = simulate_cluster_images(20, n_projections=3, seed=4, image_size=32)  # the same draw, in memory
    np.testing.assert_array_equal(data.images, obs.images)
    np.testing.assert_array_equal(data.log_m500, obs.catalogue.log_m500[obs.cluster])
    for c in np.unique(data.cluster_id):  # projections of one cluster share its mass
        assert np.ptp(data.log_m500[data.cluster_id == c]) == 0
    assert data.images.shape == (60, 32, 32) and data.images.dtype == np.float32
    assert data.log_m500.shape == (60,) and 13.5 <= data.log_m500.min() and data.log_m500.max() <= 15.0
    assert list(data.cluster_id[:6]) == [0, 0, 0, 1, 1, 1]
    assert data.meta["redshift"] == 0.05 and data.meta["exposure_s"] == 1e5
    assert data.meta["pixel_arcsec"] == pytest.approx(16.79 * 60 / 32)
    assert set(data.columns["core_state"]) <= {"cool_core", "relaxed", "disturbed"}
    # every image in exactly one part of the file's split, and no cluster cut by it
    flags = np.stack([data.flags[k] for k in ("train", "validate", "test")])
    assert (flags.sum(0) == 1).all()
    for part in flags:
        assert not set(data.cluster_id[part]) & set(data.cluster_id[~part])


def test_rebinning_conserves_counts(fits_file):
    data = load_cluster_fits(fits_file)
    small = data.rebinned(16)
    assert small.images.shape == (60, 16, 16)
    np.testing.assert_allclose(small.images.sum((1, 2)), data.images.sum((1, 2)))
    assert small.meta["kpc_per_pixel"] == pytest.approx(2 * data.meta["kpc_per_pixel"])
    with pytest.raises(DataFormatError, match="cannot be binned"):
        data.rebinned(24)


def test_folds_never_split_a_cluster():
    groups = np.repeat(np.arange(30), 4)
    folds = cluster_folds(groups, k=3, val_fraction=0.2, seed=1)
    tested = np.concatenate([f["test"] for f in folds])
    assert sorted(tested) == list(range(len(groups)))  # every image tested exactly once
    for f in folds:
        parts = [set(groups[f[p]]) for p in ("train", "val", "test")]
        assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
        assert sum(len(f[p]) for p in f) == len(groups)
    assert folds[0]["test"].tolist() != cluster_folds(groups, 3, 0.2, seed=2)[0]["test"].tolist()
    with pytest.raises(ConfigError, match="k_folds"):
        cluster_folds(groups, k=1, val_fraction=0.2, seed=0)
    with pytest.raises(ConfigError, match="too few"):
        cluster_folds(np.repeat(np.arange(3), 2), k=3, val_fraction=0.2, seed=0)
    assert np.bincount(split_clusters(100, (0.7, 0.15, 0.15))).tolist() == [70, 15, 15]


def _write(path, cube, columns, n_hdus=3):
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(cube)]
    if n_hdus >= 3:
        hdus.append(fits.BinTableHDU.from_columns([fits.Column(k, f, array=v) for k, (f, v) in columns.items()]))
    fits.HDUList(hdus).writeto(path)
    return path


def _good_columns(n):
    return {"log_M500": ("D", np.full(n, 14.0)), "train": ("L", np.arange(n) % 3 == 0),
            "validate": ("L", np.arange(n) % 3 == 1), "test": ("L", np.arange(n) % 3 == 2)}


@pytest.mark.parametrize("case, message", [
    ("two_hdus", "found 2 HDU"),
    ("missing_column", "lacks column"),
    ("nan_label", "NaN"),
    ("not_square", "square"),
    ("rows_mismatch", "rows but HDU 1 has"),
    ("overlap", "more than one of train"),
    ("negative", "non-negative"),
    ("msun_not_log", "log10 M500c"),
    ("empty", "no images"),
    ("text_mass", "must be numeric"),
    ("header_text", "must be a number"),
    ("nan_cluster_id", "cluster_id has NaN"),
    ("flag_values", "booleans or 0/1"),
    ("two_column_mass", "one value per image"),
])
def test_broken_files_are_rejected_clearly(tmp_path, case, message):
    n = 6
    cube = np.ones((n, 8, 8), dtype=np.float32)
    cols = _good_columns(n)
    if case == "missing_column":
        del cols["validate"]
    elif case == "nan_label":
        cols["log_M500"] = ("D", np.array([14.0, np.nan, 14, 14, 14, 14]))
    elif case == "not_square":
        cube = np.ones((n, 8, 6), dtype=np.float32)
    elif case == "rows_mismatch":
        cube = np.ones((n + 1, 8, 8), dtype=np.float32)
    elif case == "overlap":
        cols["test"] = ("L", np.ones(n, dtype=bool))
    elif case == "negative":
        cube[0, 0, 0] = -1
    elif case == "msun_not_log":
        cols["log_M500"] = ("D", np.full(n, 1e14))
    elif case == "empty":
        cube = np.ones((0, 8, 8), dtype=np.float32)
        cols = {k: (f, v[:0]) for k, (f, v) in cols.items()}
    elif case == "text_mass":
        cols["log_M500"] = ("5A", np.array(["14.0"] * n))
    elif case == "nan_cluster_id":
        cols["cluster_id"] = ("D", np.array([0, 0, np.nan, 1, 1, 2.0]))
    elif case == "flag_values":
        cols["train"] = ("J", np.array([0, 2, 0, 0, 0, 0]))
    elif case == "two_column_mass":
        cols["log_M500"] = ("2D", np.full((n, 2), 14.0))
    path = _write(tmp_path / "bad.fits", cube, cols, n_hdus=2 if case == "two_hdus" else 3)
    if case == "header_text":
        fits.setval(path, "REDSHIFT", value="unknown", ext=1)
    with pytest.raises(DataFormatError, match=message) as info:
        load_cluster_fits(path)
    assert "bad.fits" in str(info.value)


def test_not_a_fits_file_and_missing_file(tmp_path):
    junk = tmp_path / "junk.fits"
    junk.write_text("not fits at all")
    with pytest.raises(DataFormatError, match="FITS|HDU"):
        load_cluster_fits(junk)
    with pytest.raises(DataFormatError, match="not found"):
        load_cluster_fits(tmp_path / "nothing.fits")


def test_a_cluster_cut_by_the_files_split_is_rejected(tmp_path):
    cols = _good_columns(6)
    cols["cluster_id"] = ("J", np.array([0, 0, 1, 1, 2, 2]))  # cluster 0 is in train and validate
    with pytest.raises(DataFormatError, match="cluster_id 0"):
        load_cluster_fits(_write(tmp_path / "cut.fits", np.ones((6, 8, 8), np.float32), cols))


def test_string_cluster_ids_and_unlabelled_files(tmp_path):
    cols = _good_columns(6)
    cols["train"] = ("L", np.array([1, 1, 0, 0, 0, 0], bool))
    cols["validate"] = ("L", np.array([0, 0, 1, 1, 0, 0], bool))
    cols["test"] = ("L", np.array([0, 0, 0, 0, 1, 1], bool))
    cols["cluster_id"] = ("8A", np.array(["TNG_7", "TNG_7", "TNG_3", "TNG_3", "TNG_9", "TNG_9"]))
    data = load_cluster_fits(_write(tmp_path / "ids.fits", np.ones((6, 8, 8), np.float32), cols))
    assert data.cluster_id.tolist() == [1, 1, 0, 0, 2, 2]
    # predict reads files without labels: a cube alone is enough
    bare = _write(tmp_path / "bare.fits", np.ones((3, 8, 8), np.float32), {}, n_hdus=2)
    with pytest.raises(DataFormatError, match="found 2 HDU"):
        load_cluster_fits(bare)
    unlabelled = load_cluster_fits(bare, require_labels=False)
    assert np.isnan(unlabelled.log_m500).all() and unlabelled.flags["test"].all()
