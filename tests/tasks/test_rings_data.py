"""The loader reads both formats, loads the school's reference sample, and rejects bad input clearly."""

import json

import numpy as np
import pytest

from astrobench.cli import main
from astrobench.core.io import DataFormatError
from astrobench.tasks.rings import RingSet, load_ring_collection, load_rings, simulate, split_indices, write_rings


def test_png_and_npz_round_trip(tmp_path):
    folder = simulate(tmp_path / "png", n=30, seed=1, format="png", mode="single")
    npz = simulate(tmp_path / "x.npz", n=30, seed=1, format="npz", mode="single")
    a, b = load_rings(folder), load_rings(npz)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_allclose(a.params, b.params)
    labels = json.loads((folder / "labels.json").read_text())
    assert set(labels[0]) == {"center", "radius", "thickness", "deformation"}
    n_folder = simulate(tmp_path / "n", n=20, seed=2, format="png", mode="n_ring", max_rings=2)
    n_set = load_rings(n_folder)
    assert n_set.params is None and set(n_set.n_rings) <= {1, 2} and len(n_set) == 20


def test_simulate_refuses_to_overwrite(tmp_path):
    folder = simulate(tmp_path / "png", n=3, seed=1)
    with pytest.raises(Exception, match="not empty"):
        simulate(folder, n=3, seed=2)


def test_reference_sample_loads(rings_reference):
    collection = load_ring_collection(rings_reference)
    assert set(collection) == {"n_ring", "single_ring"}
    n_ring, single = collection["n_ring"], collection["single_ring"]
    assert n_ring.images.shape == (200, 28, 28) and set(np.unique(n_ring.n_rings)) == {1, 2}
    assert single.params.shape == (200, 5)
    assert set(np.unique(single.images)) <= {0, 255}


def _folder(tmp_path, n=5):
    return simulate(tmp_path / "rings", n=n, seed=0, mode="n_ring")


def test_missing_image_names_the_file(tmp_path):
    folder = _folder(tmp_path)
    (folder / "ring_image_3.png").unlink()
    with pytest.raises(DataFormatError, match=r"ring_image_3.png: missing"):
        load_rings(folder)


def test_corrupt_png_names_the_file(tmp_path):
    folder = _folder(tmp_path)
    (folder / "ring_image_2.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataFormatError, match=r"ring_image_2.png: corrupt"):
        load_rings(folder)


def test_labels_not_matching_images(tmp_path):
    folder = _folder(tmp_path)
    (folder / "labels.txt").write_text("1\n2\n1\n")
    with pytest.raises(DataFormatError, match="3 labels but 5 images"):
        load_rings(folder)


def test_wrong_image_size_names_the_file(tmp_path):
    from PIL import Image

    folder = _folder(tmp_path)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "ring_image_4.png")
    with pytest.raises(DataFormatError, match=r"ring_image_4.png: image size 32x32 differs"):
        load_rings(folder)


def test_nan_and_bad_labels(tmp_path):
    folder = simulate(tmp_path / "s", n=3, seed=0, mode="single")
    labels = json.loads((folder / "labels.json").read_text())
    labels[1]["radius"] = float("nan")
    (folder / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(DataFormatError, match="labels.json: entry 1: NaN"):
        load_rings(folder)
    folder2 = _folder(tmp_path / "b")
    (folder2 / "labels.txt").write_text("1\ntwo\n1\n1\n1\n")
    with pytest.raises(DataFormatError, match="labels.txt: line 2"):
        load_rings(folder2)


def test_corrupt_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataFormatError, match="bad.npz: corrupt"):
        load_rings(bad)
    np.savez(tmp_path / "nan.npz", images=np.zeros((2, 28, 28), np.uint8), params=np.full((2, 5), np.nan))
    with pytest.raises(DataFormatError, match="NaN"):
        load_rings(tmp_path / "nan.npz")


def test_bad_data_on_the_command_line_is_one_line(tmp_path, capsys):
    folder = _folder(tmp_path)
    (folder / "ring_image_1.png").write_text("garbage")
    assert main(["run", "rings", "--data", str(folder), "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ring_image_1.png: corrupt" in err and "Traceback" not in err


def test_split_is_disjoint_and_seeded():
    tr, va, te = split_indices(100, (0.7, 0.15, 0.15), seed=0)
    assert len(set(tr) | set(va) | set(te)) == 100 and len(tr) == 70
    np.testing.assert_array_equal(tr, split_indices(100, (0.7, 0.15, 0.15), seed=0)[0])


def test_split_fractions_are_checked():
    from astrobench.core.io import ConfigError

    with pytest.raises(ConfigError, match="summing to 1"):
        split_indices(100, (0.5, 0.6, 0.6), seed=0)
    with pytest.raises(ConfigError, match="summing to 1"):
        split_indices(100, (0.5, 0.5), seed=0)


def test_npz_labels_get_the_same_checks_as_json(tmp_path):
    params = np.array([[10, 10, -3, 0.5, 1.0]], dtype=float)
    np.savez(tmp_path / "neg.npz", images=np.zeros((1, 28, 28), np.uint8), params=params)
    with pytest.raises(DataFormatError, match="radius must be > 0"):
        load_rings(tmp_path / "neg.npz")
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 28, 28), np.uint8), n_rings=np.zeros(0, int))
    with pytest.raises(DataFormatError, match="N >= 1"):
        load_rings(tmp_path / "empty.npz")


def test_non_integer_labels_survive_a_round_trip(tmp_path):
    ring_set = RingSet(np.zeros((1, 28, 28), np.uint8), params=np.array([[10.5, 9.0, 5.9, 0.5, 1.0]]))
    back = load_rings(write_rings(ring_set, tmp_path / "r"))
    np.testing.assert_allclose(back.params, ring_set.params)
