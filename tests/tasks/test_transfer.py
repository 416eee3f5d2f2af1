"""transfer: the grid's pieces with known answers (training to convergence that keeps the best state, a pre-trained
representation that must help on a related task, data efficiency and crossover on made-up curves with bootstrap
errors, disjoint training / validation / test indices, distinct sets per seed) and a smoke run that resumes per
cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astrobench.core.io import ConfigError
from astrobench.core.training import StepConfig, train_steps
from astrobench.tasks.transfer import grid as G
from astrobench.tasks.transfer import task as T
from astrobench.tasks.transfer.targets import MLPBackbone, metrics
from astrobench.tasks.transfer.task import TransferTask

SIZES = [32, 128, 512, 2048]


def test_crossing_interpolates_in_log_n_and_reports_bounds():
    assert T.crossing(SIZES, np.array([0.4, 0.3, 0.2, 0.1]), 0.2) == (512.0, "inside")
    n, bound = T.crossing(SIZES, np.array([0.4, 0.3, 0.2, 0.1]), 0.25)  # halfway in log n between 128 and 512
    assert bound == "inside" and n == pytest.approx(256.0)
    assert T.crossing(SIZES, np.array([0.1, 0.1, 0.1, 0.1]), 0.2) == (32.0, "at_or_below")
    n, bound = T.crossing(SIZES, np.array([0.4, 0.3, 0.3, 0.3]), 0.2)
    assert np.isnan(n) and bound == "above"


def _runs(values, spread=0.0, seeds=5):
    """Per-seed values {n: array} around the given means (a symmetric spread, so the mean is exact)."""
    offsets = np.linspace(-spread, spread, seeds)
    return {n: v + offsets for n, v in zip(SIZES, values)}


def test_efficiency_compares_finetune_with_the_better_scratch_model():
    big = _runs([0.6, 0.6, 0.3, 0.1])  # a large network that only learns with many examples
    small = _runs([0.5, 0.4, 0.2, 0.15])  # a small one, better at 32-512
    finetune = _runs([0.3, 0.2, 0.15, 0.12])
    out = T.efficiency({"scratch": big, "scratch_small": small}, finetune, SIZES, n_boot=50)
    # the better scratch curve is (0.5, 0.4, 0.2, 0.1): it reaches finetune's 0.2 at 128 exactly at n = 512
    assert out["data_efficiency"] == pytest.approx(4.0) and out["data_efficiency_bound"] == "inside"
    assert out["scratch_best"] == {"n_32": "scratch_small", "n_128": "scratch_small", "n_512": "scratch_small",
                                   "n_2048": "scratch"}
    # gain of finetune: 0.2, 0.2, 0.05, -0.02 -> zero between 512 and 2048 (log-linear)
    expected = np.exp(np.log(512) + 0.05 / 0.07 * (np.log(2048) - np.log(512)))
    assert out["crossover_n"] == pytest.approx(expected) and out["crossover_n_bound"] == "inside"
    assert out["crossover_n_err"] == 0.0  # no seed scatter: every bootstrap replicate is the same


def test_efficiency_bounds_and_bootstrap_errors():
    scratch = {"scratch": _runs([0.4, 0.3, 0.2, 0.1], spread=0.02)}
    never = T.efficiency(scratch, _runs([0.05] * 4, spread=0.01), SIZES, n_boot=200)
    assert np.isnan(never["data_efficiency"]) and never["data_efficiency_at_least"] == 16
    assert np.isnan(never["crossover_n"]) and never["crossover_n_at_least"] == 2048
    assert never["crossover_n_inside_fraction"] == 0.0
    noisy = T.efficiency(scratch, _runs([0.3, 0.25, 0.15, 0.12], spread=0.04), SIZES, n_boot=300)
    assert 0 < noisy["data_efficiency_err"] < noisy["data_efficiency"]  # seed scatter -> a finite, sane error
    assert noisy["data_efficiency_inside_fraction"] > 0.5
    # the words say what the numbers say
    words = T._helps_words(never, SIZES)
    assert "every size up to n = 2048" in words and "data_efficiency > 16" in words


def test_cells_hold_out_validation_and_seeds_draw_their_own_sets():
    n_pool, opts = 4 * 2048, {"n_seeds": 3, "n_seeds_small": 5}
    assert T.seeds_for(32, opts, 10) == [10, 11, 12, 13, 14] and T.seeds_for(512, opts, 10) == [10, 11, 12]
    for n in SIZES:
        sets = []
        for seed in T.seeds_for(n, opts, 0):
            train, val = T.cell_indices(n_pool, n, seed)
            assert len(train) + len(val) == n and len(val) == max(8, round(0.2 * n))
            assert not set(train) & set(val)
            sets.append(frozenset(train))
            smaller = [m for m in SIZES if m < n]
            if smaller:  # nested within a seed
                assert set(np.r_[T.cell_indices(n_pool, smaller[-1], seed)]) <= set(np.r_[train, val])
        assert len(set(sets)) == len(sets)  # every seed its own training set, at every size
    with pytest.raises(ConfigError, match="the pool holds 100"):
        T.cell_indices(100, 128, 0)


def test_target_pool_and_test_set_are_disjoint(tmp_path):
    from astrobench.core.task import RunContext

    task = TransferTask()
    opts = task.check_options(task.options("smoke"))
    ctx = RunContext(tmp_path, {"options": opts, "seed": 0, "data": None, "progress": False})
    for name in ("photoz", "allsky"):
        data = task._target(ctx, name)
        assert len(data.y_pool) == opts["pool_factor"] * max(opts["sizes"]) == len(data.pool_ids)
        assert not set(data.pool_ids) & set(data.test_ids)
        for seed in T.seeds_for(32, opts, 0):
            train, val = T.cell_indices(len(data.y_pool), 32, seed)
            assert not set(data.pool_ids[train]) & set(data.test_ids)
            assert not set(data.pool_ids[val]) & set(data.test_ids)


def test_fit_small_stops_on_validation_and_restores_the_best_state():
    """A one-weight model y = w x trained towards w = 2 while validation wants w = 1: the validation loss falls
    until w passes 1 (about step 1 / lr with Adam's unit-size steps) and rises after. The best state is kept."""
    from astrobench.core.training import SmallDataConfig, fit_small

    x = np.linspace(-1, 1, 16, dtype=np.float32)[:, None]
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    cfg = SmallDataConfig(batch_size=16, lr=0.01, weight_decay=0.0, patience=20, val_every=1, max_epochs=1000,
                          min_steps=1, max_steps=1000)
    fit = fit_small(model, x, 2 * x[:, 0], x, x[:, 0], "regression", cfg)
    assert 85 <= fit.best_step <= 115
    assert fit.steps == fit.best_step + 20 and not fit.capped  # stopped by the patience, 20 checks after the best
    assert model.weight.item() == pytest.approx(1.0, abs=0.03)  # the best state, not the last (w ~ 1.2)
    assert fit.history["val_loss"][-1] > fit.best_val_loss
    capped = fit_small(torch.nn.Linear(1, 1, bias=False), x, 2 * x[:, 0], x, 2 * x[:, 0], "regression",
                       SmallDataConfig(batch_size=16, lr=0.01, val_every=1, max_epochs=50, min_steps=1))
    assert capped.capped and capped.steps == capped.cap_steps == 50  # still improving when the cap came


def test_fixed_step_training_learns_a_linear_relation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 6)).astype(np.float32)
    y = (x @ np.arange(1, 7) / 10).astype(np.float32)
    torch.manual_seed(0)
    model = G.Predictor(MLPBackbone(6, 32), 32, 1)
    train_steps(model, x, y, "regression", StepConfig(steps=300, batch_size=64, lr=3e-3), seed=0)
    pred = G.predict(model, x)[:, 0]
    assert 1 - np.mean((pred - y) ** 2) / np.var(y) > 0.95
    assert metrics("regression", np.array([1.0, 2.0]), np.array([1.0, 2.0]))["sigma_nmad"] == 0


def test_a_pretrained_representation_helps_a_related_task_with_few_examples():
    """Source and target share hidden features h = tanh(A x) and differ in the readout; with 32 target examples
    a linear probe on the source-trained backbone must beat training from scratch."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(10, 4))
    make = lambda n: rng.normal(size=(n, 10)).astype(np.float32)  # noqa: E731
    hidden = lambda x: np.tanh(x @ a)  # noqa: E731
    xs, xt, xtest = make(3000), make(32), make(1000)
    ys = (hidden(xs) @ [1.0, -1.0, 0.5, 0.0] + hidden(xs) ** 2 @ [0.0, 0.5, 0.0, 1.0]).astype(np.float32)
    w_t = np.array([0.0, 1.0, 1.0, -1.0])
    yt, ytest = (hidden(xt) @ w_t).astype(np.float32), hidden(xtest) @ w_t
    torch.manual_seed(0)
    source = G.Predictor(MLPBackbone(10, 64), 64, 1)
    train_steps(source, xs, ys, "regression", StepConfig(steps=800, batch_size=128, lr=3e-3), seed=0)

    def r2(pred):
        return 1 - np.mean((pred - ytest) ** 2) / np.var(ytest)

    probe = G.feature_model("regression", 32, 0, "linear_probe").fit(G.predict(source.backbone, xt), yt)
    transfer_r2 = r2(probe.predict(G.predict(source.backbone, xtest)))
    scratch = G.Predictor(MLPBackbone(10, 64), 64, 1)
    train_steps(scratch, xt, yt, "regression", StepConfig(steps=300, batch_size=32), seed=0)
    scratch_r2 = r2(G.predict(scratch, xtest)[:, 0])
    assert transfer_r2 > 0.8 and transfer_r2 > scratch_r2 + 0.1


def test_feature_models_cope_with_tiny_sets_missing_a_class():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(12, 5))
    y = np.array([0, 1] * 6)  # class 2 absent
    for strategy in G.FEATURE_BASED:
        pred = G.feature_model("classification", 12, 0, strategy).fit(f, y).predict(f)
        assert set(pred) <= {0, 1}


def test_smoke_run_resumes_cell_by_cell(tmp_path):
    from astrobench.runner import resume, run

    run_dir = run("transfer", out=tmp_path, name="smoke", seed=0, overrides={"size": "smoke"})
    res = json.loads((run_dir / "metrics.json").read_text())["results"]
    assert set(res) == {"photoz", "allsky", "summary"}
    assert set(res["photoz"]) == {"none", "in_domain", "budget", "grid"}  # no ImageNet model reads photometry
    assert set(res["allsky"]) == {"none", "imagenet", "in_domain", "budget", "grid"}
    for strategy in ("linear_probe", "finetune", "finetune_discriminative", "frozen_knn"):
        assert res["photoz"]["in_domain"][strategy]["n_32"]["sigma_nmad"] > 0
        if strategy != "finetune_discriminative":  # left out of the image grid (image_strategies)
            assert 0 <= res["allsky"]["imagenet"][strategy]["n_32"]["error_rate"] <= 1
    assert "finetune_discriminative" not in res["allsky"]["imagenet"]
    assert res["allsky"]["grid"]["sizes"] == [32] and res["allsky"]["grid"]["seeds"] == {"n_32": 1}
    assert set(res["allsky"]["none"]) == {"scratch", "scratch_small"}  # MobileNetV2 from random and a small CNN
    answers = res["summary"]["answers"]
    assert set(answers) == {"when_finetuning_helps", "when_frozen_features_suffice", "in_domain_vs_imagenet"}
    assert "allsky" in answers["in_domain_vs_imagenet"]
    budget = res["allsky"]["budget"]
    assert budget["cells_trained"] == 4 and 0 <= budget["capped_fraction"] <= 1
    assert (run_dir / "figures" / "training_curves_allsky.png").stat().st_size > 1000
    assert (run_dir / "checkpoints" / "allsky.in_domain.pt").exists()
    assert (run_dir / "figures" / "learning_curves_allsky.png").stat().st_size > 1000
    cells = sorted((run_dir / "cells").glob("*.json"))
    assert len(cells) == (1 + 4) + (2 + 2 * 3)  # photoz: scratch + 4 in_domain; allsky: 2 scratch + 2 x 3

    # interrupted: one cell lost, the rest kept; the resumed run recomputes only that one, with the same result
    (run_dir / "metrics.json").unlink()
    lost = run_dir / "cells" / "photoz.in_domain.finetune.n32.s0.json"
    kept = {p.name: p.stat().st_mtime_ns for p in cells if p != lost}
    lost.unlink()
    resumed = json.loads((resume(run_dir) / "metrics.json").read_text())["results"]
    assert all((run_dir / "cells" / name).stat().st_mtime_ns == t for name, t in kept.items())
    assert resumed["photoz"]["in_domain"]["finetune"] == res["photoz"]["in_domain"]["finetune"]


def test_transfer_rejects_data_and_unknown_strategies(tmp_path):
    from astrobench.runner import run

    with pytest.raises(ConfigError, match="--data is not supported"):
        run("transfer", data=tmp_path, out=tmp_path, name="d", overrides={"size": "smoke"})
    with pytest.raises(ConfigError, match="strategies"):
        run("transfer", out=tmp_path, name="s", overrides={"size": "smoke", "strategies": ["magic"]})


@pytest.mark.parametrize("overrides, message", [
    ({"sizes": [0]}, "option sizes must be a non-empty list of integers >= 16"),
    ({"image_sizes": [32, 8]}, "option image_sizes must be a non-empty list of integers >= 16"),
    ({"image_strategies": ["magic"]}, "option image_strategies must be a non-empty list"),
    ({"n_seeds": 0}, "option n_seeds must be an integer >= 1"),
    ({"sizes": [32, 100000]}, "needs a pool of 4 x 100000 = 400000 examples, more than max_pool"),
    ({"sizes": [1024], "targets": ["photoz"]}, "the catalogue has"),  # the smoke catalogue: too few z >= 1 galaxies
])
def test_transfer_rejects_bad_grids_in_one_line(tmp_path, overrides, message):
    from astrobench.runner import run

    with pytest.raises(ConfigError, match=message) as err:
        run("transfer", out=tmp_path, name="bad", overrides={"size": "smoke", **overrides})
    assert "\n" not in str(err.value)


def test_target_grid_image_options_override_and_narrow():
    from astrobench.tasks.transfer.task import target_grid

    opts = {"sizes": [128, 32], "image_sizes": None, "strategies": ["scratch", "finetune", "frozen_knn"],
            "image_strategies": ["scratch", "finetune", "finetune_discriminative"]}
    assert target_grid(opts, "photoz") == ([32, 128], ["scratch", "finetune", "frozen_knn"])
    # image_sizes None: the same sizes; an image strategy not in strategies is dropped (strategies narrows both)
    assert target_grid(opts, "allsky") == ([32, 128], ["scratch", "finetune"])
    assert target_grid({**opts, "image_sizes": [64, 16]}, "allsky")[0] == [16, 64]
    assert target_grid({**opts, "image_strategies": None}, "allsky")[1] == opts["strategies"]
    assert target_grid({**opts, "camels_sizes": [32, 16]}, "camels") == ([16, 32], ["scratch", "finetune"])


def test_example_rows_expand_whole_groups_in_order():
    from astrobench.tasks.transfer.targets import example_rows

    assert example_rows(np.array([2, 0]), 3).tolist() == [6, 7, 8, 0, 1, 2]
    assert example_rows(np.array([4, 1]), 1).tolist() == [4, 1]


def test_camels_target_splits_by_simulation_and_runs(tmp_path):
    """The camels target (opt in): one example is one simulation; its maps never straddle train / validation /
    test. A smoke run with a pool of 16 simulations trains every cell and scores Omega_m."""
    from astrobench.core.task import RunContext
    from astrobench.runner import run

    task = TransferTask()
    opts = task.check_options({**task.options("smoke"), "targets": ["camels"], "pool_factor": 1})
    ctx = RunContext(tmp_path, {"options": opts, "seed": 0, "data": None, "progress": False})
    data = task._target(ctx, "camels")
    k = opts["camels_maps_per_sim"]
    assert data.group_size == k and data.n_pool == 16 and len(data.y_pool) == 16 * k
    assert data.x_pool.shape == (16 * k, 3, opts["camels_map_size"], opts["camels_map_size"])
    assert not set(data.pool_ids) & set(data.test_ids) and len(data.y_test) == opts["camels_n_test"] * k
    for e in range(data.n_pool):  # the maps of one simulation share its Omega_m
        assert np.ptp(data.y_pool[data.rows([e])]) == 0
    train, val = T.cell_indices(data.n_pool, 16, 0)
    assert not set(data.rows(train)) & set(data.rows(val)) and len(data.rows(val)) == 8 * k

    run_dir = run("transfer", out=tmp_path, name="camels", seed=0,
                  overrides={"size": "smoke", "targets": ["camels"], "pool_factor": 1})
    res = json.loads((run_dir / "metrics.json").read_text())["results"]["camels"]
    assert res["grid"]["primary"] == "rel_err" and res["grid"]["unit"].startswith("simulations")
    assert set(res["none"]) == {"scratch", "scratch_small"}
    for source in ("imagenet", "in_domain"):
        assert res[source]["finetune"]["n_16"]["rel_err"] > 0
        probe = res[source]["linear_probe"]["n_16"]  # four test simulations: r2 is defined but noisy
        assert np.isfinite(probe["rel_err"]) and probe["rmse"] > 0 and probe["r2"] <= 1
    assert (run_dir / "figures" / "learning_curves_camels.png").stat().st_size > 1000


def test_feature_model_cross_validates_by_whole_groups():
    """With rows grouped by example (the maps of one simulation), the probe's regularisation is chosen on held-out
    groups: no group is on both sides of any internal fold."""
    from astrobench.tasks.transfer import grid as G

    groups = np.repeat(np.arange(8), 5)
    model = G.feature_model("regression", len(groups), 0, "linear_probe", groups)
    folds = model[-1].cv
    assert len(folds) == 5
    for fit_rows, held_rows in folds:
        assert not set(groups[fit_rows]) & set(groups[held_rows])
    assert G.feature_model("regression", 40, 0, "linear_probe")[-1].cv is None


def test_frozen_features_suffice_only_within_finetunings_own_scatter():
    """A frozen method passes where it is better than fine-tuning or within fine-tuning's seed scatter; a worse mean
    with a large scatter of its own does not."""
    def curve(values, errs):
        return {f"n_{n}": {"e": v, "e_err": s} for n, v, s in zip((16, 32), values, errs)}

    entry = {"finetune": curve([0.20, 0.10], [0.02, 0.01]), "linear_probe": curve([0.21, 0.40], [0.01, 0.35]),
             "frozen_knn": curve([0.50, 0.50], [0.01, 0.01])}
    words = T._features_words(entry, [16, 32], "e")
    assert "n = 16: linear_probe 0.210" in words and "n = 32" not in words
    entry["linear_probe"] = curve([0.30, 0.40], [0.3, 0.3])
    assert T._features_words(entry, [16, 32], "e").startswith("fine-tuning beats both")
