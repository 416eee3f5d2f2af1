"""Broken inputs, a dozen ways per format: each one ends in one line naming the file (exit 2 through the command
line), never a traceback, never a silent run on what could be read, and never a run folder left behind. Cases
that a reader should simply read (a byte-order mark, semicolons) must give the clean file's table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from astrobench.cli import main
from astrobench.core.io import AstrobenchError


def _fails_cleanly(task: str, broken: Path, tmp_path: Path, capsys, case: str) -> None:
    """``astrobench run TASK --data BROKEN`` ends with exit 2 and one line naming the file, no run folder."""
    out = tmp_path / "runs"
    code = main(["run", task, "--data", str(broken), "--out", str(out), "--set", "size='smoke'", "--no-progress"])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (case, err, captured.out[-500:])
    assert err.count("\n") == 0 and str(broken) in err, (case, err)
    assert "Traceback" not in err and "WARNING" not in err, (case, err)
    assert not out.exists(), case


def _broken_file(contents: bytes, name: str, tmp_path: Path) -> Path:
    """A file ``name`` holding the broken ``contents``."""
    path = tmp_path / name
    path.write_bytes(contents)
    return path


def _broken_copy(folder: Path, edit, tmp_path: Path) -> Path:
    """A copy of the data folder ``folder`` with ``edit(copy)`` applied."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    edit(broken)
    return broken

# --- text tables: sn_lasso (a CSV in the Pantheon+ column names) ---------------------------------------------


@pytest.fixture(scope="module")
def sn_csv(tmp_path_factory) -> Path:
    from astrobench.tasks.sn_lasso.simulate import simulate

    return simulate(tmp_path_factory.mktemp("sn") / "clean.csv", n=80, seed=1)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _column_edit(path: Path, edit) -> str:
    """The CSV with ``edit(header_fields, rows_fields)`` applied."""
    rows = [line.rstrip("\n").split(",") for line in _lines(path)]
    header, body = rows[0], rows[1:]
    edit(header, body)
    return "".join(",".join(r) + "\n" for r in [header, *body])


def _set_column(name, value):
    def edit(header, body):
        k = header.index(name)
        for row in body:
            row[k] = value
    return edit


def _drop_column(name):
    def edit(header, body):
        k = header.index(name)
        for row in [header, *body]:
            del row[k]
    return edit


def _rename(name, new):
    def edit(header, body):
        header[header.index(name)] = new
    return edit


def _truncated(fraction):
    def corrupt(path: Path) -> bytes:
        raw = path.read_bytes()
        cut = int(len(raw) * fraction)
        while raw[cut - 1:cut] in (b"\n", b","):  # a cut inside a value, never at a line end
            cut += 1
        return raw[:cut]
    return corrupt


SN_CASES = {
    "empty": lambda p: b"",
    "header only": lambda p: _lines(p)[0].encode(),
    "cut at 37 %": _truncated(0.37),
    "cut at 81 %": _truncated(0.81),
    "cut in the header": lambda p: p.read_bytes()[:25],
    "binary byte": lambda p: p.read_bytes()[:300] + b"\xff\xfe" + p.read_bytes()[300:],
    "gzip file": lambda p: __import__("gzip").compress(p.read_bytes()),
    "duplicated column name": lambda p: _column_edit(p, _rename("c", "x1")).encode(),
    "renamed x1": lambda p: _column_edit(p, _rename("x1", "X1")).encode(),
    "dropped mB": lambda p: _column_edit(p, _drop_column("mB")).encode(),
    "text in a numeric column": lambda p: _column_edit(
        p, lambda h, b: b[3].__setitem__(h.index("x1"), "n/a")).encode(),
    "a cell some parsers read as missing": lambda p: _column_edit(
        p, lambda h, b: b[9].__setitem__(h.index("mB"), "NaNx")).encode(),
    "a hexadecimal cell": lambda p: _column_edit(p, lambda h, b: b[2].__setitem__(h.index("cERR"), "0x1F")).encode(),
    "every mB missing": lambda p: _column_edit(p, _set_column("mB", "-999")).encode(),
    "every mB NaN": lambda p: _column_edit(p, _set_column("mB", "nan")).encode(),
    "x1 constant": lambda p: _column_edit(p, _set_column("x1", "0.5")).encode(),
    "extra field in a row": lambda p: "".join(
        line.rstrip("\n") + (",7\n" if i == 5 else "\n") for i, line in enumerate(_lines(p))).encode(),
    "repeated header": lambda p: "".join(_lines(p)[:10] + _lines(p)[:1] + _lines(p)[10:]).encode(),
}


@pytest.mark.parametrize("case", list(SN_CASES))
def test_broken_sn_tables_are_one_line_naming_the_file(sn_csv, tmp_path, capsys, case):
    broken = _broken_file(SN_CASES[case](sn_csv), "broken.csv", tmp_path)
    _fails_cleanly("sn_lasso", broken, tmp_path, capsys, case)


@pytest.mark.parametrize("case", ["byte-order mark", "semicolons", "CRLF line ends"])
def test_sn_table_variants_read_as_the_clean_file(sn_csv, tmp_path, case):
    from astrobench.tasks.sn_lasso.data import load_sn_table

    text = sn_csv.read_text()
    variant = {"byte-order mark": lambda: "\ufeff" + text, "semicolons": lambda: text.replace(",", ";"),
               "CRLF line ends": lambda: text.replace("\n", "\r\n")}[case]()
    path = tmp_path / "variant.csv"
    path.write_bytes(variant.encode("utf-8"))
    clean, read = load_sn_table(sn_csv), load_sn_table(path)
    assert read.names == clean.names
    np.testing.assert_array_equal(read.X, clean.X)
    np.testing.assert_array_equal(read.y, clean.y)


def test_a_link_that_loops_is_named(tmp_path):
    from astrobench.tasks.sn_lasso.data import load_sn_table

    loop = tmp_path / "loop.csv"
    loop.symlink_to(tmp_path / "loop.csv")
    with pytest.raises(AstrobenchError, match="symbolic link that loops or leads nowhere"):
        load_sn_table(loop)


# --- text tables: photoz (a 3D-HST v4.1 catalogue: '#' header, whitespace-separated) -------------------------


@pytest.fixture(scope="module")
def photoz_cat(tmp_path_factory) -> Path:
    from astrobench.tasks.photoz.simulate import simulate

    return simulate(tmp_path_factory.mktemp("photoz") / "clean.cat", n=300, seed=2, n_templates=50, n_jobs=1)


def _cat_edit(path: Path, edit) -> bytes:
    lines = _lines(path)
    header = lines[0].lstrip("#").split()
    body = [line.split() for line in lines[1:]]
    edit(header, body)
    return ("# " + " ".join(header) + "\n" + "".join(" ".join(r) + "\n" for r in body)).encode()


PHOTOZ_CASES = {
    "empty": lambda p: b"",
    "header only": lambda p: _lines(p)[0].encode(),
    "cut at 52 %": _truncated(0.52),
    "binary byte": lambda p: p.read_bytes()[:500] + b"\xff" + p.read_bytes()[500:],
    "duplicated column name": lambda p: _cat_edit(p, _rename("f_F160W", "f_F125W")),
    "dropped z_spec": lambda p: _cat_edit(p, _drop_column("z_spec")),
    "text in a flux column": lambda p: _cat_edit(p, lambda h, b: b[7].__setitem__(h.index("f_F125W"), "bad")),
    "comma-separated": lambda p: p.read_text().replace(" ", ",").encode(),
    "a row one field short": lambda p: "".join(
        " ".join(line.split()[:-1]) + "\n" if i == 9 else line for i, line in enumerate(_lines(p))).encode(),
    "no usable rows (all lmass < 9)": lambda p: _cat_edit(p, _set_column("lmass", "8.0")),
}


@pytest.mark.parametrize("case", list(PHOTOZ_CASES))
def test_broken_photoz_catalogues_are_one_line_naming_the_file(photoz_cat, tmp_path, capsys, case):
    broken = _broken_file(PHOTOZ_CASES[case](photoz_cat), "broken.cat", tmp_path)
    _fails_cleanly("photoz", broken, tmp_path, capsys, case)


# --- FITS: cluster_mass (cluster_TNG_data.fits) --------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_fits(tmp_path_factory) -> Path:
    from astrobench.tasks.cluster_mass.simulate import simulate

    return simulate(tmp_path_factory.mktemp("clusters"), n=12, n_projections=2, image_size=16, n_jobs=1)


def _fits_edit(path: Path, edit) -> bytes:
    import io

    from astropy.io import fits

    with fits.open(path) as hdus:
        edit(hdus)
        buffer = io.BytesIO()
        hdus.writeto(buffer)
    return buffer.getvalue()


def _cut_at_block(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw[: (len(raw) // 2) // 2880 * 2880]


CLUSTER_CASES = {
    "empty": lambda p: b"",
    "cut at 41 %": lambda p: p.read_bytes()[: int(0.41 * p.stat().st_size)],
    "cut at a block boundary": _cut_at_block,
    "random bytes": lambda p: np.random.default_rng(0).integers(0, 256, 3 * 2880, dtype=np.uint8).tobytes(),
    "text file": lambda p: b"cluster masses\n" * 192 + b"x" * 0,
    "all images zero": lambda p: _fits_edit(p, lambda h: h[1].data.__setitem__(slice(None), 0)),
    "one image zero": lambda p: _fits_edit(p, lambda h: h[1].data.__setitem__(3, 0)),
    "NaN pixels": lambda p: _fits_edit(p, lambda h: h.__setitem__(
        1, type(h[1])(np.where(np.arange(h[1].data.size).reshape(h[1].data.shape) == 5, np.nan,
                               h[1].data.astype(np.float32)), header=h[1].header))),
    "negative counts": lambda p: _fits_edit(p, lambda h: h[1].data.__setitem__((0, 0, 0), -4)),
    "no label table": lambda p: _fits_edit(p, lambda h: h.pop(2)),
    "masses in Msun, not log": lambda p: _fits_edit(p, lambda h: h[2].data["log_M500"].__setitem__(
        slice(None), 10 ** h[2].data["log_M500"])),
}


@pytest.mark.parametrize("case", list(CLUSTER_CASES))
def test_broken_cluster_files_are_one_line_naming_the_file(cluster_fits, tmp_path, capsys, case):
    broken = _broken_file(CLUSTER_CASES[case](cluster_fits), "broken.fits", tmp_path)
    _fails_cleanly("cluster_mass", broken, tmp_path, capsys, case)


# --- allsky: a manifest.csv and its frames ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def allsky_folder(tmp_path_factory) -> Path:
    from astrobench.tasks.allsky.simulate import simulate

    return simulate(tmp_path_factory.mktemp("allsky") / "frames", n=12, seed=3, format="png", n_jobs=1,
                    frames_per_camera=12, progress=False).parent


def _with_label(row_index: int, label: str):
    def edit(folder: Path) -> None:
        manifest = folder / "manifest.csv"
        rows = manifest.read_text().splitlines(keepends=True)
        header = rows[0].rstrip("\n").split(",")
        cells = rows[row_index].rstrip("\n").split(",")
        cells[header.index("label")] = label
        rows[row_index] = ",".join(cells) + "\n"
        manifest.write_text("".join(rows))
    return edit


def _manifest_rows(change):
    def edit(folder: Path) -> None:
        manifest = folder / "manifest.csv"
        manifest.write_text("".join(change(manifest.read_text().splitlines(keepends=True))))
    return edit


def _frame_bytes(change):
    def edit(folder: Path) -> None:
        frame = sorted(folder.glob("**/*.png"))[4]
        frame.write_bytes(change(frame.read_bytes()))
    return edit


def _loop_link(folder: Path) -> None:
    frame = sorted(folder.glob("**/*.png"))[2]
    frame.unlink()
    frame.symlink_to(frame)


ALLSKY_CASES = {
    "misspelt label": _with_label(5, "overcst"),
    "repeated header": _manifest_rows(lambda rows: rows[:4] + rows[:1] + rows[4:]),
    "no label column": _manifest_rows(lambda rows: [r.replace("label", "lable", 1) if i == 0 else r
                                                    for i, r in enumerate(rows)]),
    "empty manifest": _manifest_rows(lambda rows: []),
    "a frame that is a symlink loop": _loop_link,
    "a frame of zero bytes": _frame_bytes(lambda raw: b""),
    "a frame cut in half": _frame_bytes(lambda raw: raw[: len(raw) // 2]),
    "a frame that is text": _frame_bytes(lambda raw: b"not an image\n" * 50),
}


@pytest.mark.parametrize("case", list(ALLSKY_CASES))
def test_broken_allsky_data_are_one_line_naming_the_file(allsky_folder, tmp_path, capsys, case):
    _fails_cleanly("allsky", _broken_copy(allsky_folder, ALLSKY_CASES[case], tmp_path), tmp_path, capsys, case)


# --- camels: Maps_*.npy and params_*.txt ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camels_folder(tmp_path_factory) -> Path:
    from astrobench.tasks.camels.simulate import simulate

    folder = tmp_path_factory.mktemp("camels") / "cmd"
    simulate(folder, n_sims=6, map_size=16, seed=0, n_jobs=1)  # both suites: what a default run trains on
    return folder


def _npy(change):
    def edit(folder: Path) -> None:
        maps = next(folder.glob("Maps_Mtot_IllustrisTNG*.npy"))
        arr = np.load(maps)
        result = change(arr, maps)
        if isinstance(result, bytes):
            maps.write_bytes(result)
        else:
            np.save(maps, result)
    return edit


def _params(change):
    def edit(folder: Path) -> None:
        params = next(folder.glob("params_*IllustrisTNG.txt"))
        params.write_text(change(params.read_text()))
    return edit


def _nan_map(arr, path):
    arr = arr.copy()
    arr[7, 3, 3] = np.nan
    return arr


CAMELS_CASES = {
    "maps zero bytes": _npy(lambda a, p: b""),
    "maps cut off": _npy(lambda a, p: p.read_bytes()[: p.stat().st_size // 2]),
    "maps not npy": _npy(lambda a, p: b"\x00" * 400),
    "maps as integers": _npy(lambda a, p: a.astype(np.int32)),
    "maps NaN": _npy(_nan_map),
    "maps one too few": _npy(lambda a, p: a[:-1]),
    "maps 2-D": _npy(lambda a, p: a.reshape(len(a), -1)),
    "params empty": _params(lambda t: ""),
    "params text": _params(lambda t: "\n".join(r.replace(r.split()[1], "abc", 1) if i == 2 else r
                                               for i, r in enumerate(t.splitlines()))),
    "params a column short": _params(lambda t: "\n".join(" ".join(r.split()[:5]) for r in t.splitlines())),
    "params negative": _params(lambda t: "\n".join("-" + r if i == 1 else r for i, r in enumerate(t.splitlines()))),
    "params a row more than the maps": _params(lambda t: t + t.splitlines()[-1] + "\n"),
    "params a row fewer than the maps": _params(lambda t: "\n".join(t.splitlines()[:-1]) + "\n"),
}


@pytest.mark.parametrize("case", list(CAMELS_CASES))
def test_broken_camels_files_are_one_line_naming_the_file(camels_folder, tmp_path, capsys, case):
    _fails_cleanly("camels", _broken_copy(camels_folder, CAMELS_CASES[case], tmp_path), tmp_path, capsys, case)


def test_the_clean_files_the_cases_start_from_load(sn_csv, photoz_cat, cluster_fits, allsky_folder, camels_folder,
                                                  rings_folder, spectra_file):
    """The control: every broken case above differs from one of these files only by its corruption."""
    from astrobench.tasks.allsky.data import load_frames
    from astrobench.tasks.camels.data import load_camels
    from astrobench.tasks.cluster_mass.data import load_cluster_fits
    from astrobench.tasks.photoz.data import read_catalogue
    from astrobench.tasks.sn_lasso.data import load_sn_table

    assert len(load_sn_table(sn_csv)) >= 10
    assert len(read_catalogue(photoz_cat)) == 300
    assert len(load_cluster_fits(cluster_fits)) == 24
    assert len(load_frames(allsky_folder, image_size=32).labels) == 12
    assert {name: suite.n_sims for name, suite in load_camels(camels_folder).items()} == {"tng": 6, "simba": 6}
    from astrobench.tasks.rings.data import load_rings
    from astrobench.tasks.spectra.data import read_spectra

    assert len(load_rings(rings_folder)) == 20
    assert len(read_spectra(spectra_file).z) == 30


# --- rings: a folder of ring_image_{i}.png with labels.txt --------------------------------------------------------


@pytest.fixture(scope="module")
def rings_folder(tmp_path_factory) -> Path:
    from astrobench.tasks.rings.simulate import simulate

    return simulate(tmp_path_factory.mktemp("rings") / "n_ring", n=20, seed=4, mode="n_ring", max_rings=3)


def _ring_file(name: str, change):
    def edit(folder: Path) -> None:
        (folder / name).write_bytes(change((folder / name).read_bytes()))
    return edit


RINGS_CASES = {
    "one label too many": _ring_file("labels.txt", lambda raw: raw + b"2\n"),
    "a label that is text": _ring_file("labels.txt", lambda raw: raw.replace(b"\n", b"\ntwo\n", 1)),
    "a label of zero rings": _ring_file("labels.txt", lambda raw: b"0\n" + raw.split(b"\n", 1)[1]),
    "an image of zero bytes": _ring_file("ring_image_7.png", lambda raw: b""),
    "an image cut in half": _ring_file("ring_image_3.png", lambda raw: raw[: len(raw) // 2]),
    "an image that is text": _ring_file("ring_image_5.png", lambda raw: b"ring\n" * 20),
    "an image missing": lambda folder: (folder / "ring_image_11.png").unlink(),
    "no labels": lambda folder: (folder / "labels.txt").unlink(),
}


@pytest.mark.parametrize("case", list(RINGS_CASES))
def test_broken_ring_folders_are_one_line_naming_the_file(rings_folder, tmp_path, capsys, case):
    _fails_cleanly("rings", _broken_copy(rings_folder, RINGS_CASES[case], tmp_path), tmp_path, capsys, case)


# --- spectra (and gan_latent): sdss_galaxy_spec.hdf5 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def spectra_file(tmp_path_factory) -> Path:
    from astrobench.tasks.spectra.simulate import simulate

    return simulate(tmp_path_factory.mktemp("spectra"), n=30, seed=5, n_jobs=1, progress=False)


def _h5_edit(edit):
    def corrupt(path: Path) -> bytes:
        import shutil

        import h5py

        copy = path.with_name("edit.hdf5")
        shutil.copy(path, copy)
        with h5py.File(copy, "r+") as f:
            edit(f["raw"])
        raw = copy.read_bytes()
        copy.unlink()
        return raw
    return corrupt


def _replace(name, values):
    def edit(raw):
        data = values(raw)
        del raw[name]
        raw.create_dataset(name, data=data)
    return edit


SPECTRA_CASES = {
    "empty": lambda p: b"",
    "cut at 60 %": lambda p: p.read_bytes()[: int(0.6 * p.stat().st_size)],
    "random bytes": lambda p: np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "no redshifts": _h5_edit(lambda raw: raw.__delitem__("z")),
    "redshifts NaN": _h5_edit(_replace("z", lambda raw: np.full(raw["spec"].shape[0], np.nan))),
    "wavelengths reversed": _h5_edit(_replace("wavelength", lambda raw: raw["wavelength"][()][::-1])),
    "one spectrum short": _h5_edit(_replace("spec", lambda raw: raw["spec"][()][:-1])),
    "spectra as text": _h5_edit(_replace("spec", lambda raw: np.full(raw["spec"].shape, b"x"))),
}


@pytest.mark.parametrize("case", list(SPECTRA_CASES))
def test_broken_spectra_files_are_one_line_naming_the_file(spectra_file, tmp_path, capsys, case):
    broken = _broken_file(SPECTRA_CASES[case](spectra_file), "broken.hdf5", tmp_path)
    _fails_cleanly("spectra", broken, tmp_path, capsys, case)
