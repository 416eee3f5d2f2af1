"""allsky: the sub-region grid and its symmetries, the simulator's physics and label rule, the loader (real Lowell
frames, both folder forms, errors), the D4-equivariant classifier, and a smoke run with --data, eval_data, predict
and resume."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from astrobench.core.io import ConfigError, DataFormatError
from astrobench.tasks.allsky import data as D
from astrobench.tasks.allsky import geometry as G
from astrobench.tasks.allsky import models as Mo

sim = importlib.import_module("astrobench.tasks.allsky.simulate")


@pytest.fixture(scope="module")
def geo():
    return sim.FisheyeGeometry()


@pytest.fixture(scope="module")
def sim_folder(tmp_path_factory):
    """60 simulated frames of the fixed camera (16-bit FITS) in the manifest form (one process)."""
    folder = tmp_path_factory.mktemp("allsky")
    sim.simulate(folder, n=60, seed=3, n_jobs=1, camera="fixed", progress=False)
    return folder


@pytest.fixture(scope="module")
def real_folder(shared_data):
    path = shared_data / "allsky_cloudynight"
    assert (path / "manifest.csv").is_file(), f"{path} lacks manifest.csv"
    return path


# --- geometry -------------------------------------------------------------------------------------------------

def test_subregion_grid_follows_cloudynight_numbering():
    grid = G.subregion_map((101, 101), 50, 50, 50)
    assert set(np.unique(grid)) == set(range(-1, 33))
    assert grid[50, 50] == 0 and grid[0, 0] == -1
    # ring 2 (r in [20, 30)), azimuth 0 (col > cx, same row): sector floor((0 + pi) / (pi / 4)) = 4 -> 1 + 8 + 4
    assert grid[50, 75] == 13
    # azimuth +90 deg (rows grow): sector 6; -90 deg: sector 2; ring 4 (r in [40, 50))
    assert grid[95, 50] == 1 + 8 * 3 + 6 and grid[5, 50] == 1 + 8 * 3 + 2


def test_d4_permutations_move_flags_with_the_image(geo):
    perms = G.d4_subregion_permutations()
    assert all(sorted(p) == list(range(33)) for p in perms) and (perms[:, 0] == 0).all()
    assert (perms[0] == np.arange(33)).all()
    # a cloud map on the simulator's square grid: flags of the rotated map = permuted flags of the map
    rng = np.random.default_rng(0)
    size = 64
    grid = G.subregion_map((size, size), (size - 1) / 2, (size - 1) / 2, size / 2)
    tau = (rng.uniform(size=(8, 8)).repeat(8, 0).repeat(8, 1) > 0.6) * 2.0
    sky = grid >= 0
    flags = sim.subregion_flags(tau, sky, grid)
    from astrobench.core.nets import d4_transform

    for g in range(8):
        moved = d4_transform(torch.as_tensor(tau), g).numpy()
        expected = np.empty_like(flags)
        expected[perms[g]] = flags
        got = sim.subregion_flags(moved, sky, grid)
        assert (got == expected).mean() > 0.9  # pixel-grid edges of sectors may flip a borderline region


# --- simulator ------------------------------------------------------------------------------------------------

def test_label_rule_and_simulated_relations(geo):
    frames = [sim.simulate_frame(i, 0, geo=geo) for i in range(24)]
    for counts, exptime, flags, truth in frames:
        assert counts.dtype == np.uint16 and counts.shape == sim.FRAME_SHAPE
        assert 0 < exptime <= 60
        label = sim.frame_label(flags)
        assert (label == "clear") == (flags.sum() == 0) and (label == "overcast") == (flags.sum() == 33)
        if truth["cloud_cover_pixels"] == 0:
            assert flags.sum() == 0
        if truth["sun_alt_deg"] > -12:  # bright twilight: the camera shortens its exposure
            assert exptime < 60
    labels = {sim.frame_label(f[2]) for f in frames}
    assert labels == {"clear", "partly_cloudy", "overcast"}
    # same seed and index -> the same frame, whichever process draws it
    assert np.array_equal(sim.simulate_frame(5, 0, geo=geo)[0], frames[5][0])


def test_moonlight_follows_krisciunas_schaefer(geo):
    base = sim.Conditions(cover=0, cloud_tau=1, moon_alt=45, moon_az=0, moon_phase_angle=0, sun_alt=-30, sun_az=0,
                          light_pollution=0, town_az=0, galactic_pole=(0, 0, 1))
    full = sim.moon_sky_brightness(geo, base)
    quarter = sim.moon_sky_brightness(geo, sim.Conditions(**{**base.__dict__, "moon_phase_angle": 90}))
    ring = geo.inside & (np.abs(geo.zenith_deg - 45) < 5)  # one airmass: only the scattering angle differs
    near, far = ring & (geo.separation_deg(45, 0) < 20), ring & (geo.separation_deg(45, 0) > 80)
    assert full[near].mean() > 2 * full[far].mean()  # the Mie aureole around the Moon
    # KS91: the quarter moon's sky is ~ 10^(-0.4 (0.026 * 90 + 4e-9 * 90^4)) = 0.09 of the full moon's
    assert quarter[geo.inside].mean() / full[geo.inside].mean() == pytest.approx(
        10 ** (-0.4 * (0.026 * 90 + 4e-9 * 90**4)), rel=1e-6)
    # the full Moon brightens the dark sky 3-5 magnitudes (a factor 15-100)
    assert 15 < np.median(full[geo.inside & (geo.zenith_deg < 30)]) < 150


def test_clouds_hide_stars(geo):
    """Thick cloud (tau 4-8, the top of the simulator's range: 4.3-8.7 mag) removes the stars: the loader's star
    density falls from clear to overcast frames."""
    rng = np.random.default_rng(1)
    clear = sim.Conditions(cover=0, cloud_tau=8, moon_alt=-30, moon_az=0, moon_phase_angle=0, sun_alt=-30, sun_az=0,
                           light_pollution=0.2, town_az=0, galactic_pole=(0, 1, 0))
    overcast = sim.Conditions(**{**clear.__dict__, "cover": 1.0})
    density = []
    for cond in (clear, overcast):
        counts, exptime, _, _ = sim.render_frame(geo, cond, rng)
        _, feats = D.preprocess_frame(counts.astype(float), exptime, 64)
        density.append(feats[: 33 * 4].reshape(33, 4)[:, 0].mean())
    assert density[0] > 0.8 and density[1] < 0.3 * density[0]


def test_simulate_writes_the_manifest_form(sim_folder):
    rows = list(csv.DictReader(open(sim_folder / "manifest.csv")))
    assert len(rows) == 60
    assert {"file", "label", "cloud_fraction", "exptime_s", "subregion_flags"} <= set(rows[0])
    from astropy.io import fits

    with fits.open(sim_folder / rows[0]["file"]) as h:
        assert h[0].header["BITPIX"] == 16 and h[0].header["BZERO"] == 32768
        assert h[0].header["EXPTIME"] == pytest.approx(float(rows[0]["exptime_s"]))
    with pytest.raises(ConfigError, match="fits, jpeg, png8 or png16"):
        sim.simulate(sim_folder / "x", n=2, format="jpg")


# --- loader ---------------------------------------------------------------------------------------------------

def test_real_frames_circle_flags_and_preprocessing(real_folder, tmp_path):
    # two of the ten frames (each is a 1392 x 1040 bz2 FITS): a clear one and a partly cloudy one
    rows = list(csv.DictReader(open(real_folder / "manifest.csv")))
    counts, exptime = D.read_frame(real_folder / rows[5]["file"])
    assert counts.shape == (1040, 1392) and exptime == 60.0
    assert 2000 < np.median(counts) < 65535  # BZERO applied: unsigned counts
    circle = D.find_sky_circle(counts)
    # cloudynight's grid for this camera: crop x 220-1190, y 0-960 -> centre (700, 485), radius 480
    assert abs(circle.cx - 700) < 30 and abs(circle.cy - 485) < 30 and 470 < circle.radius < 540
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w") as f:
        f.write("file,label,cloud_fraction,exptime_s\n")
        for r in (rows[5], rows[6]):
            f.write(f"{real_folder / r['file']},{r['label']},{r['cloud_fraction']},{r['exptime_s']}\n")
    shutil.copy(real_folder / "subregion_flags.dat", tmp_path / "subregion_flags.dat")
    frames = D.load_frames(manifest)
    assert frames.images.shape == (2, 3, 64, 64) and frames.images.min() >= 0 and frames.images.max() <= 1
    assert frames.class_names == ["clear", "partly_cloudy", "overcast"] and list(frames.labels) == [0, 1]
    assert frames.flags[0].sum() == 0 and frames.flags[1].sum() == 11  # from subregion_flags.dat, by file stem
    # a clear dark frame shows stars, and more than sky noise would give
    assert frames.features[0, : 33 * 4].reshape(33, 4)[:, 0].mean() > 1.0


def test_real_manifest_flags_match_the_labels(real_folder):
    entries = D._manifest_entries(real_folder / "manifest.csv")
    labels = {r["image"]: r for r in csv.DictReader(open(real_folder / "labels.csv"))}
    assert len(entries) == 10
    for e in entries:
        row = labels[D._stem(e.path)]
        assert e.flags.sum() == int(row["n_cloudy_subregions"])
        assert e.label == row["label3"] and e.cloud_fraction == pytest.approx(float(row["cloud_fraction"]))


def test_class_folders_and_png_frames(tmp_path):
    sim.simulate(tmp_path / "sim", n=6, seed=1, format="png", n_jobs=1, camera="fixed", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "sim" / "manifest.csv")))
    for r in rows:
        (tmp_path / "classes" / r["label"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "sim" / r["file"], tmp_path / "classes" / r["label"])
    frames = D.load_frames(tmp_path / "classes")
    assert len(frames) == 6 and not frames.has_flags.any()
    assert sorted(frames.class_names[k] for k in frames.labels) == sorted(r["label"] for r in rows)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("file,label", "path,label"), "missing column"),
    (lambda t: t.replace("frames/000001.fits", "frames/nope.fits"), "not found"),
    (lambda t: t.replace(",000000000", ",0000x0000", 1), "33 characters 0/1"),
    (lambda t: t.replace(",clear,", ",foggy,", 1), "not among the classes"),
    (lambda t: t.replace(",60.00,", ",-1,", 1), "exptime_s must be positive"),
    (lambda t: t.splitlines()[0] + "\n", "lists no frames"),
])
def test_manifest_errors_are_one_line(sim_folder, tmp_path, edit, message):
    for f in (sim_folder / "frames").glob("00000[0-3].fits"):
        (tmp_path / "frames").mkdir(exist_ok=True)
        shutil.copy(f, tmp_path / "frames")
    lines = (sim_folder / "manifest.csv").read_text().splitlines()[:5]
    text = "\n".join(lines) + "\n"
    if message in ("not among the classes", "exptime_s must be positive", "33 characters 0/1"):
        assert edit(text) != text, "the fixture lacks the row this case edits"
    (tmp_path / "manifest.csv").write_text(edit(text))
    with pytest.raises(DataFormatError, match=message):
        D.load_frames(tmp_path / "manifest.csv", class_names=["clear", "partly_cloudy", "overcast"])


def test_broken_frames_are_one_line(tmp_path):
    (tmp_path / "bad.fits").write_bytes(b"SIMPLE  = not a fits file")
    with pytest.raises(DataFormatError, match="cannot read this frame"):
        D.read_frame(tmp_path / "bad.fits")
    from astropy.io import fits

    image = np.full((64, 64), 100.0)
    image[3, 3] = np.nan
    fits.PrimaryHDU(image).writeto(tmp_path / "nan.fits")
    with pytest.raises(DataFormatError, match="NaN"):
        D.read_frame(tmp_path / "nan.fits")
    fits.PrimaryHDU(np.full((64, 64), 100.0)).writeto(tmp_path / "flat.fits")
    with pytest.raises(DataFormatError, match="fisheye sky circle"):
        D.preprocess_frame(D.read_frame(tmp_path / "flat.fits")[0], 1.0, 64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no manifest.csv"):
        D.load_frames(tmp_path / "empty")


# --- models ---------------------------------------------------------------------------------------------------

def test_tta_probabilities_are_d4_equivariant():
    torch.manual_seed(0)
    module = Mo.SkyConditionTask(Mo.sky_cnn(3, 32, widths=(8, 8)), 3).eval()
    x = torch.rand(3, 3, 32, 32)
    perms = G.d4_subregion_permutations()
    from astrobench.core.nets import d4_transform

    p = module.probabilities(x, tta=True)
    for g in (1, 3, 4, 6):
        q = module.probabilities(d4_transform(x, g), tta=True)
        assert torch.allclose(q[:, :3], p[:, :3], atol=1e-5)  # the class does not change
        assert torch.allclose(q[:, 3:][:, perms[g]], p[:, 3:], atol=1e-5)  # the flags move with the sky


def test_mobilenet_head_and_missing_weights(monkeypatch, tmp_path):
    net = Mo.MobileNetSky(36, None, input_px=64)
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 36)
    with pytest.raises(ConfigError, match="no file at"):
        Mo.imagenet_weights_path(str(tmp_path / "none.pth"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        Mo.imagenet_weights_path()


def test_expected_calibration_error_known_answers():
    from astrobench.core.metrics import expected_calibration_error as ece

    y = np.array([0, 1] * 50)
    assert ece(np.eye(2)[y], y) == 0  # confident and right
    assert ece(np.eye(2)[1 - y], y) == pytest.approx(1.0)  # confident and wrong
    half = np.full((100, 2), 0.5)
    assert ece(half, y) == pytest.approx(0.0)  # 50 % sure, right half the time


# --- a run ----------------------------------------------------------------------------------------------------

def test_smoke_run_with_data_eval_predict_and_resume(sim_folder, tmp_path, monkeypatch):
    from astrobench.registry import get_task
    from astrobench.runner import resume, run
    from astrobench.tasks.allsky import task as allsky_task

    adapted_on = []  # the frames each adaptation actually trained on
    original = allsky_task.adapt_network

    def spy(module, frames, opts, seed):
        adapted_on.append([str(f) for f in frames.files])
        return original(module, frames, opts, seed)

    monkeypatch.setattr(allsky_task, "adapt_network", spy)

    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    rows = (sim_folder / "manifest.csv").read_text().splitlines()
    (eval_dir / "manifest.csv").write_text("\n".join([rows[0]] + [r.replace("frames/", f"{sim_folder}/frames/")
                                                                  for r in rows[1:6]]) + "\n")
    run_dir = run("allsky", data=sim_folder, out=tmp_path, name="smoke", seed=1,
                  overrides={"size": "smoke", "eval_data": str(eval_dir), "adapt_data": str(eval_dir),
                             "pretrain": "simulated", "n_pretrain": 40, "n_saliency": 1, "n_jobs": 1})
    m = json.loads((run_dir / "metrics.json").read_text())
    r = m["results"]
    assert m["data"]["source"] == "file" and m["data"]["n_train"] + m["data"]["n_val"] + m["data"]["n_test"] == 60
    for method in ("cnn", "mobilenet_ft", "features_gbm"):
        for key in ("accuracy", "accuracy_err", "macro_f1", "ece", "subregion_accuracy", "mae"):
            assert 0 <= r["classify"][method][key] <= 1, (method, key)
        assert sum(sum(v.values()) for v in r["classify"][method]["confusion"].values()) == m["data"]["n_test"]
        assert len(r["real"][method]["predictions_by_frame"]) == 5
    methods = [m + rule for m in ("cnn", "mobilenet_ft", "features_gbm") for rule in ("", "_flag_rule")]
    assert r["summary"]["best"]["method"] in methods and set(methods) <= set(r["classify"])
    # the flag-rule decision is exactly the labelling rule on the predicted flags
    for frame in r["real"]["cnn_flag_rule"]["predictions_by_frame"].values():
        n = frame["n_flagged_predicted"]
        assert frame["predicted"] == ("clear" if n == 0 else "overcast" if n == 33 else "partly_cloudy")
    # leave-one-frame-out: each real frame predicted by copies adapted on the other frames only
    lofo = r["real_lofo"]
    folds = lofo["protocol"]["train_indices_by_frame"]
    names = list(r["real"]["cnn"]["predictions_by_frame"])
    assert list(folds) == names and lofo["protocol"]["leave_one_frame_out"]
    for i, name in enumerate(names):
        assert i not in folds[name] and sorted(folds[name]) == [j for j in range(5) if j != i]
    assert len(adapted_on) == 2 * 5  # two networks x five held-out frames
    for k, files in enumerate(adapted_on):
        held_out = names[k % 5]
        assert len(files) == 4 and all(not f.endswith(held_out) for f in files)
    assert {"cnn", "cnn_flag_rule", "mobilenet_ft"} <= set(lofo) and "features_gbm" not in lofo
    assert 0 <= lofo["cnn"]["subregion_accuracy"] <= 1 and len(lofo["cnn"]["predictions_by_frame"]) == 5
    assert (run_dir / "checkpoints" / "pretrain.cnn" / "model.pt").exists()
    for fig in ("classify_confusion", "classify_examples", "real_confusion", "real_saliency", "reliability",
                "camera_grid"):
        assert (run_dir / "figures" / f"{fig}.png").exists(), fig
    out = get_task("allsky").predict(run_dir, eval_dir, tmp_path / "pred.csv")
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 5 * 3 and lines[0].startswith("file,method,predicted,p_clear")

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "metrics.json").unlink()
    resumed = json.loads((resume(copy) / "metrics.json").read_text())["results"]
    for method in ("cnn", "features_gbm"):
        assert resumed["classify"][method]["accuracy"] == r["classify"][method]["accuracy"]


# --- camera geometry, domain randomisation, formats --------------------------------------------------------------

def _cloudynight_subregions(shape):
    """cloudynight's AllskyCamera.generate_subregions (Mommert 2020), transcribed for its Lowell configuration:
    the frame cropped to x 220-1190, y 0-960, the grid centred at shape/2 of the crop with (rows, columns) taken as
    (x, y), integer radii, strict inequalities. Returns the index map in full-frame pixels (-1: no sub-region)."""
    crop = (slice(0, 960), slice(220, 1190))
    cshape = np.array((960, 970))
    center = cshape / 2
    borders = np.linspace(0, min(cshape) / 2, 6)
    az_borders = np.linspace(-np.pi, np.pi, 9)
    y, x = np.indices(cshape)
    r = np.sqrt((x - center[0]) ** 2 + (y - center[1]) ** 2).astype(int)
    az = np.arctan2(y - center[1], x - center[0])
    index = np.full(tuple(cshape), -1)
    index[r < borders[1]] = 0
    for i in range(1, 5):
        for j in range(8):
            index[(r > borders[i]) & (r < borders[i + 1]) & (az > az_borders[j]) & (az < az_borders[j + 1])] = \
                (i - 1) * 8 + j + 1
    full = np.full(shape, -1)
    full[crop] = index
    return full


def test_lowell_preset_reproduces_cloudynight_subregions():
    camera = G.parse_camera("lowell")
    ours = G.camera_subregion_map((1040, 1392), camera)
    assert np.array_equal(ours, _cloudynight_subregions((1040, 1392)))
    assert set(np.unique(ours)) == set(range(-1, 33))
    # the standard grid differs only on border pixels
    plain = G.subregion_map((1040, 1392), 700, 485, 480)
    assert np.mean(plain[ours >= 0] == ours[ours >= 0]) == 1.0


@pytest.fixture(scope="module")
def camera_folder(tmp_path_factory):
    """24 frames of one simulated camera with a strong lens glow beyond the horizon and strong vignetting."""
    folder = tmp_path_factory.mktemp("cameras")
    sim.simulate(folder, n=24, seed=2, n_jobs=1, camera={"shape": [600, 800], "format": "fits", "rim_glow": 0.6,
                                                              "rim_glow_radius": 1.08, "vignetting": 0.6},
                 progress=False)
    return folder


def test_camera_estimate_recovers_a_simulated_camera(camera_folder):
    frames = D.load_frames(camera_folder / "manifest.csv")
    truth = json.loads((camera_folder / "cameras.json").read_text())["cam000"]
    est = frames.cameras["cam000"]
    assert est["source"] == "auto" and est["frame_shape"] == [600, 800]
    r = truth["radius"]
    assert abs(est["cx"] - truth["cx"]) < 0.01 * r and abs(est["cy"] - truth["cy"]) < 0.01 * r
    assert abs(est["radius"] - r) < 0.01 * r
    assert 0 < est["horizon_fraction"] < 0.3  # the simulated trees are masked


def test_randomised_cameras_differ_and_load_alike(tmp_path):
    sim.simulate(tmp_path, n=6, seed=4, n_jobs=1, frames_per_camera=2, progress=False)
    cams = json.loads((tmp_path / "cameras.json").read_text())
    assert len(cams) == 3 and len({tuple(c["shape"]) for c in cams.values()}) == 3
    for c in cams.values():
        lo, hi = sim.CAMERA_RANGES["long_side_px"]
        assert lo - 1 <= max(c["shape"]) <= hi + 1
    frames = D.load_frames(tmp_path / "manifest.csv")
    assert frames.images.shape == (6, 3, 64, 64) and set(frames.cameras) == set(cams)


def test_jpeg_rgb_and_fits_frames_of_different_sizes_load_alike(tmp_path):
    from PIL import Image

    cameras = (("a", {"shape": [480, 640], "format": "jpeg"}), ("b", {"shape": [1040, 1392], "format": "fits"}))
    for name, fields in cameras:
        sim.simulate(tmp_path / name, n=3, seed=5, n_jobs=1, camera=fields, progress=False)
    jpg = next((tmp_path / "a" / "frames").glob("*.jpg"))
    with Image.open(jpg) as im:
        assert im.mode == "RGB" and im.size == (640, 480)
    a, b = D.load_frames(tmp_path / "a"), D.load_frames(tmp_path / "b")
    assert a.images.shape == b.images.shape == (3, 3, 64, 64)
    # the 8-bit gamma-encoded frame is linearised: the same sky gives the same stretched input
    assert np.abs(a.images[:, 0].mean() - b.images[:, 0].mean()) < 0.15
    # two cameras in one folder without a camera column: one line naming both files
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(jpg, mixed / "small.jpg")
    shutil.copy(next((tmp_path / "b" / "frames").glob("*.fits")), mixed / "large.fits")
    with pytest.raises(DataFormatError, match="frames of different cameras: .*large.fits.*small.jpg|small.jpg.*large"):
        D.load_frames(mixed, require_labels=False)
    assert len(D.load_frames(mixed, require_labels=False, camera="per_frame")) == 2


def test_camera_option_checks(sim_folder):
    assert G.parse_camera("auto") == "auto"
    given = G.parse_camera('{"cx": 170, "cy": 128, "r": 120, "flip": true}')
    assert (given.cx, given.cy, given.radius, given.flip) == (170.0, 128.0, 120.0, True)
    # --set camera={...} arrives as a Python literal turned into text by the option parser
    from astrobench.runner import apply_overrides, parse_set

    opts = apply_overrides({"camera": "auto"}, parse_set(['camera={"cx": 170, "cy": 128, "r": 120}']), "allsky")
    assert G.parse_camera(opts["camera"]).radius == 120.0
    for bad, message in (("nikon", "preset"), ('{"cx": 1}', "needs cx, cy and r"), ('{"cx": 1, "cy": 2, "r": -3}',
                                                                                    "positive"),
                         ('{"cx": 1, "cy": 2, "r": 3, "zoom": 2}', "unknown key")):
        with pytest.raises(ConfigError, match=message):
            G.parse_camera(bad)
    # an override outside the frame: one line naming the folder, before any frame is preprocessed
    with pytest.raises(DataFormatError, match="outside the 344 x 256 frame"):
        D.load_frames(sim_folder, camera='{"cx": 700, "cy": 485, "r": 100}')
    with pytest.raises(DataFormatError, match="lowell camera geometry is for 1392 x 1040 frames"):
        D.load_frames(sim_folder, camera="lowell")
    with pytest.raises(ConfigError, match="unknown preset"):
        G.parse_camera({"preset": "nikon"})
    frames = D.load_frames(sim_folder, camera='{"cx": 171.5, "cy": 127.5, "r": 120}')
    assert next(iter(frames.cameras.values()))["source"] == "given" and frames.images.shape[1:] == (3, 64, 64)


def test_more_broken_inputs_are_one_line(tmp_path):
    from astropy.io import fits
    from PIL import Image

    fits.PrimaryHDU(np.zeros((3, 64, 64), dtype=np.uint16)).writeto(tmp_path / "cube.fits")
    with pytest.raises(DataFormatError, match="3-D FITS cube"):
        D.read_frame(tmp_path / "cube.fits")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(
        tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="cut.jpg: cannot read this frame"):
        D.read_frame(tmp_path / "cut.jpg")


def test_adapt_data_with_one_frame_is_refused(sim_folder, tmp_path):
    from astrobench.runner import run

    one = tmp_path / "one"
    one.mkdir()
    rows = (sim_folder / "manifest.csv").read_text().splitlines()
    (one / "manifest.csv").write_text(rows[0] + "\n" + rows[1].replace("frames/", f"{sim_folder}/frames/") + "\n")
    with pytest.raises(DataFormatError, match="at least 2 labelled frames"):
        run("allsky", data=sim_folder, out=tmp_path, name="one", seed=1,
            overrides={"size": "smoke", "adapt_data": str(one), "methods": ["features_gbm"], "n_jobs": 1})


def test_flag_rule_is_the_labelling_rule():
    from astrobench.tasks.allsky.task import flag_rule

    rng = np.random.default_rng(0)
    p = rng.uniform(size=(200, 33))
    p[:40] *= 0.49  # all clear
    p[40:80] = 0.51 + 0.49 * p[40:80]  # all cloudy
    probs, decision = flag_rule(p)
    n = (p > 0.5).sum(1)
    assert (decision == np.where(n == 0, 0, np.where(n == 33, 2, 1))).all()
    assert np.allclose(probs.sum(1), 1) and (probs >= 0).all()
    assert (decision[:40] == 0).all() and (decision[40:80] == 2).all()
    assert (probs.argmax(1) == decision).all()  # the probabilities agree with the decision they calibrate
    confident, _ = flag_rule(np.full((1, 33), 0.02))
    assert confident[0, 0] > 0.9
