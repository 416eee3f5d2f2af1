"""camels: the simulator's known answers, the CMD file format and its loader, splits, augmentation, the network,
the metrics, and a smoke run with predict."""

import importlib
import json

import numpy as np
import pytest
import torch

from astrobench.core.io import ConfigError, DataFormatError
from astrobench.core.nets import d4_transform
from astrobench.core.training import random_d4
from astrobench.runner import run
from astrobench.tasks.camels.cosmology import power_spectrum
from astrobench.tasks.camels.data import MapDataset, channel_stats, channel_values, load_camels, split_sims, targets
from astrobench.tasks.camels.models import cmd_cnn
from astrobench.tasks.camels.task import CamelsTask, parameter_metrics

S = importlib.import_module("astrobench.tasks.camels.simulate")  # the package exports a function of that name


@pytest.fixture(scope="module")
def cmd_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cmd")
    S.simulate(folder, n_sims=8, seed=3, map_size=32)
    return folder


def test_simulator_writes_the_cmd_format(cmd_folder):
    for suite in ("IllustrisTNG", "SIMBA"):
        params = np.loadtxt(cmd_folder / f"params_LH_{suite}.txt")
        assert params.shape == (8, 6)
        for (lo, hi), column in zip(S.PARAM_RANGES, params.T):
            assert (column >= lo).all() and (column <= hi).all()
        for field in ("Mtot", "P"):
            maps = np.load(cmd_folder / f"Maps_{field}_{suite}_LH_z=0.00.npy", mmap_mode="r")
            assert maps.shape == (8 * 15, 32, 32) and maps.dtype == np.float32 and (np.asarray(maps) > 0).all()
        # the box mean is Omega_m rho_crit: the 5 slabs of each axis average to 1.3875e12 Omega_m, for every axis
        mtot = np.load(cmd_folder / f"Maps_Mtot_{suite}_LH_z=0.00.npy").reshape(8, 3, 5, 32, 32)
        per_axis = mtot.mean(axis=(2, 3, 4)) / params[:, :1]
        np.testing.assert_allclose(per_axis, S.RHO_CRIT * 5.0, rtol=1e-4)


def test_latin_hypercube_fills_every_stratum():
    params = S.latin_hypercube(50, np.random.default_rng(0))
    for j, ((lo, hi), log) in enumerate(zip(S.PARAM_RANGES, S.LOG_UNIFORM)):
        u = np.log(params[:, j] / lo) / np.log(hi / lo) if log else (params[:, j] - lo) / (hi - lo)
        assert sorted(np.floor(u * 50).astype(int)) == list(range(50))


def test_sigma_8_and_feedback_act_as_documented():
    """Higher sigma_8: wider Mtot maps and more massive haloes; SIMBA-like feedback ejects gas farther than
    TNG-like; more AGN feedback, less gas left in haloes (and so lower pressure)."""
    rng = np.random.default_rng
    low, high = (S.gravity_only(np.array([0.3, s8, 1, 1, 1, 1.0]), 32, rng(1)) for s8 in (0.6, 1.0))
    widths = [np.log10(S.slab_maps(S.nbody.adaptive_density(p, 32, S.BOX_MPC_H), 0.3)).std() for p in (low, high)]
    assert widths[1] > widths[0] * 1.1
    massive = [np.sum(S.find_halos(p, 0.3, 32).log_m > 13) for p in (low, high)]
    assert massive[1] > massive[0]
    fiducial = np.array([0.3, 0.8, 1.0, 1.0, 1.0, 1.0])
    tng, simba = (S.baryons.suite_parameters(fiducial, suite) for suite in ("tng", "simba"))
    assert simba.theta_ej > tng.theta_ej and simba.m_c > tng.m_c
    strong = S.baryons.suite_parameters(np.array([0.3, 0.8, 1.0, 4.0, 1.0, 1.0]), "tng")
    gas = [S.baryons.bound_gas_fraction(np.array([1e13]), 0.3, bp)[0] for bp in (tng, strong)]
    assert 0 < gas[1] < gas[0] < 1


def test_power_table_reproduces_camb():
    pytest.importorskip("camb")
    from astrobench.tasks.camels.cosmology import camb_power

    k = np.array([0.3, 3.0, 20.0])
    np.testing.assert_allclose(power_spectrum(0.3, 0.8, k), camb_power(0.3, 0.8, k), rtol=1e-3)  # a grid node
    np.testing.assert_allclose(power_spectrum(0.325, 0.85, k), camb_power(0.325, 0.85, k), rtol=0.03)  # between
    linear = power_spectrum(0.3, 0.8, k, linear=True)
    np.testing.assert_allclose(linear, camb_power(0.3, 0.8, k, linear=True), rtol=1e-3)
    assert np.all(linear < power_spectrum(0.3, 0.8, k))  # non-linear growth adds power at these k


def test_loader_memory_maps_and_splits_by_simulation(cmd_folder):
    suites = load_camels(cmd_folder)
    assert set(suites) == {"tng", "simba"} and isinstance(suites["tng"].maps["mtot"], np.memmap)
    train, val, test = split_sims(40, (0.9, 0.05, 0.05), seed=1)
    assert len(train) == 36 and len(val) == 2 and len(test) == 2
    assert set(train) | set(val) | set(test) == set(range(40)) and not set(train) & (set(val) | set(test))
    suite = suites["tng"]
    tr, va, te = split_sims(suite.n_sims, (0.5, 0.25, 0.25), seed=0)
    stats = channel_stats(suite, tr, "mtot_p")
    data = MapDataset(suite, te, "mtot_p", stats)
    x, y = data[0]
    assert x.shape == (2, 32, 32) and y.shape == (6,)
    assert set(data.sim_of_item()) == set(te) and len(data) == 15 * len(te)  # all 15 maps of a simulation
    np.testing.assert_allclose(y.numpy(), targets(suite.params[te[:1]])[0])
    assert y[2] == pytest.approx(np.log10(suite.params[te[0], 2]), abs=1e-6)  # feedback amplitudes in log10
    # the mean-free field has lost the monopole that gives Omega_m away
    nomean = 10 ** channel_values(suite, "mtot_nomean", slice(0, 15))
    np.testing.assert_allclose(nomean.mean(axis=(1, 2)), 1.0, rtol=1e-5)


def test_broken_folders_stop_clearly(cmd_folder, tmp_path):
    with pytest.raises(DataFormatError, match="not a folder"):
        load_camels(tmp_path / "nowhere")
    with pytest.raises(DataFormatError, match="holds no CMD files"):
        load_camels(tmp_path)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "Maps_Mtot_SIMBA_LH_z=0.00.npy").write_bytes((cmd_folder / "Maps_Mtot_SIMBA_LH_z=0.00.npy").read_bytes())
    with pytest.raises(DataFormatError, match="lacks params_LH_SIMBA.txt"):
        load_camels(partial)
    np.savetxt(partial / "params_LH_SIMBA.txt", np.ones((3, 6)))
    with pytest.raises(DataFormatError, match="has 120 maps.*need 45"):
        load_camels(partial)
    np.savetxt(partial / "params_LH_SIMBA.txt", np.ones((8, 6)))
    with pytest.raises(ConfigError, match="9 simulations requested, params_LH_SIMBA.txt has 8"):
        load_camels(partial, n_sims=9)
    np.save(partial / "Maps_Mtot_SIMBA_LH_z=0.00.npy", np.ones((120, 32), dtype=np.float32))
    with pytest.raises(DataFormatError, match="expected \\(N, s, s\\) float maps"):
        load_camels(partial)
    np.savetxt(partial / "params_LH_SIMBA.txt", np.ones((8, 4)))
    with pytest.raises(DataFormatError, match="needs 6 columns"):
        load_camels(partial)


def test_real_parameter_tables_match_the_simulator_ranges(shared_data):
    from astrobench.tasks.camels.data import _read_params

    for suite in ("IllustrisTNG", "SIMBA"):
        params = _read_params(shared_data / "camels_params" / f"params_LH_{suite}.txt")
        assert params.shape == (1000, 6)
        for (lo, hi), column in zip(S.PARAM_RANGES, params.T):
            assert lo - 1e-3 <= column.min() and column.max() <= hi + 1e-3
            assert column.min() < lo + 0.05 * (hi - lo) and column.max() > hi - 0.05 * (hi - lo)  # spans the range


def test_augmentation_really_rotates_and_flips():
    torch.manual_seed(0)
    image = torch.arange(16.0).reshape(1, 1, 4, 4)  # no symmetry: every D4 element gives a different image
    out = random_d4(image.repeat(400, 1, 1, 1))
    views = {tuple(d4_transform(image, g).flatten().tolist()) for g in range(8)}
    seen = {tuple(o.flatten().tolist()) for o in out}
    assert seen == views  # all 8 rotations and flips occur, and nothing else
    module = CamelsTask()._module(1, 32, np.zeros((4, 6)), {**CamelsTask().options("smoke"), "lr": 1e-3})
    assert module.augment is random_d4


def test_cmd_network_shapes():
    for size, channels in ((32, 1), (64, 2)):
        net = cmd_cnn(channels, size, hidden=2).eval()
        assert net(torch.randn(3, channels, size, size)).shape == (3, 12)
    with pytest.raises(ValueError, match="power of two"):
        cmd_cnn(1, 48)


def test_parameter_metrics_known_answers():
    rng = np.random.default_rng(0)
    sims = np.repeat(np.arange(400), 15)
    true = np.repeat(rng.uniform(0.1, 0.5, 400), 15)
    sigma = np.full_like(true, 0.02)
    exact = parameter_metrics(true, true, sigma, sims)
    assert exact["r2"] == 1 and exact["rel_err"] == 0 and exact["coverage_68"] == 1 and exact["chi2"] == 0
    noisy = parameter_metrics(true, true + rng.normal(0, 0.02, true.shape), sigma, sims)
    assert noisy["chi2"] == pytest.approx(1, abs=0.05) and noisy["coverage_68"] == pytest.approx(0.683, abs=0.02)
    assert 0 < noisy["chi2_err"] < 0.05


def test_smoke_run_keys_figures_and_predict(tmp_path):
    run_dir = run("camels", out=tmp_path, name="smoke", seed=0, overrides={"size": "smoke"})
    results = json.loads((run_dir / "metrics.json").read_text())["results"]
    assert set(results) == {"tng_to_tng", "tng_to_simba", "simba_to_simba", "simba_to_tng"}
    for combo in results.values():
        assert set(combo) == {"mtot", "mtot_nomean"}
        for field in combo.values():
            assert set(field) == set(S.PARAM_NAMES)
            assert {"r2", "rel_err", "chi2", "coverage_68", "chi2_err"} <= set(field["omega_m"])
            assert 0 <= field["sigma_8"]["coverage_68"] <= 1 and field["sigma_8"]["chi2"] >= 0
    figures = {p.name for p in (run_dir / "figures").glob("*.png")}
    assert {"cross_suite_r2.png", "example_maps.png", "pred_tng_to_simba_mtot.png"} <= figures
    data = tmp_path / "new"
    S.simulate(data, n_sims=2, seed=9, map_size=32, suites=("simba",))
    csv = CamelsTask().predict(run_dir, data, tmp_path / "pred.csv")
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("trained_on,field,suite,map,omega_m") and len(lines) == 1 + 4 * 2 * 15
    with pytest.raises(ConfigError, match="fields"):
        run("camels", out=tmp_path, name="bad", overrides={"size": "smoke", "fields": ["dm"]})


def test_optuna_search_writes_its_study(tmp_path):
    pytest.importorskip("optuna")
    run_dir = run("camels", out=tmp_path, name="tuned", seed=0,
                  overrides={"size": "smoke", "fields": ["mtot"], "train_suites": ["tng"], "n_trials": 2,
                             "trial_epochs": 1})
    best = json.loads((run_dir / "optuna_best.json").read_text())
    assert best["n_trials"] == 2 and set(best["params"]) == {"lr", "weight_decay", "dropout"}
    assert (run_dir / "optuna.db").is_file() and best["storage"].startswith("sqlite:///")
    assert json.loads((run_dir / "metrics.json").read_text())["data"]["tuned"] == best["params"]


def test_simulate_command_writes_the_files(tmp_path):
    from astrobench.cli import main

    assert main(["simulate", "camels", "--out", str(tmp_path / "cmd"), "--n", "2", "--set", "map_size=16"]) == 0
    maps = np.load(tmp_path / "cmd" / "Maps_P_SIMBA_LH_z=0.00.npy", mmap_mode="r")
    assert maps.shape == (30, 16, 16)
    assert main(["simulate", "camels", "--out", str(tmp_path / "bad"), "--n", "2", "--set", "map_size=48"]) == 2


def test_zeros_nan_and_mismatched_sizes_in_real_files(cmd_folder, tmp_path):
    folder = tmp_path / "cmd"
    folder.mkdir()
    for f in cmd_folder.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    pressure = np.load(folder / "Maps_P_IllustrisTNG_LH_z=0.00.npy")
    pressure[:, :4, :4] = 0.0  # real pressure maps may hold empty pixels
    np.save(folder / "Maps_P_IllustrisTNG_LH_z=0.00.npy", pressure)
    suite = load_camels(folder)["tng"]
    mean, std, floor = channel_stats(suite, np.arange(6), "p")
    x, _ = MapDataset(suite, np.arange(6), "p", (mean, std, floor))[0]
    assert floor[0] > 0 and np.isfinite(x).all() and x.min() > -10  # floored, not log10(tiny) = -38
    pressure[3, 0, 0] = np.nan
    np.save(folder / "Maps_P_IllustrisTNG_LH_z=0.00.npy", pressure)
    with pytest.raises(DataFormatError, match="NaN or infinite"):
        channel_stats(load_camels(folder)["tng"], np.arange(8), "p", max_maps=120)
    small = tmp_path / "mixed"
    S.simulate(small, n_sims=8, seed=1, map_size=16, suites=("simba",))
    for name in ("Maps_Mtot_IllustrisTNG_LH_z=0.00.npy", "Maps_P_IllustrisTNG_LH_z=0.00.npy",
                 "params_LH_IllustrisTNG.txt"):
        (small / name).write_bytes((cmd_folder / name).read_bytes())
    with pytest.raises(DataFormatError, match="differ in size"):
        run("camels", data=small, out=tmp_path, name="mixed", overrides={"size": "smoke"})


def test_slabs_are_exactly_five_mpc_thick():
    for n in (16, 32, 64):
        weights = S.slab_weights(n)
        np.testing.assert_allclose(weights.sum(axis=0), 1.0)  # every cell shared out completely
        np.testing.assert_allclose(weights.sum(axis=1) * S.BOX_MPC_H / n, 5.0)  # each slab 5 Mpc/h
    rho = np.random.default_rng(0).uniform(0.5, 1.5, (32, 32, 32))
    maps = S.slab_maps(rho / rho.mean(), 0.3).reshape(3, 5, 32, 32)
    np.testing.assert_allclose(maps.sum(axis=1).mean(axis=(1, 2)), 0.3 * S.RHO_CRIT * S.BOX_MPC_H, rtol=1e-5)


def test_data_runs_use_every_simulation_unless_limited(cmd_folder, tmp_path):
    overrides = {"size": "smoke", "fields": ["mtot"], "train_suites": ["tng"], "split": [0.5, 0.25, 0.25]}
    full = run("camels", data=cmd_folder, out=tmp_path, name="all", overrides=overrides)
    assert json.loads((full / "metrics.json").read_text())["data"]["suites"]["tng"]["n_sims"] == 8
    limited = run("camels", data=cmd_folder, out=tmp_path, name="four",
                  overrides={**overrides, "max_sims": 4})
    data = json.loads((limited / "metrics.json").read_text())["data"]
    assert data["suites"]["simba"]["n_sims"] == 4 and (data["n_train"], data["n_val"]) == (2, 1)
