"""transfer: the grid's pieces with known answers (fixed-step training, a pre-trained representation that must help
on a related task, data efficiency and crossover on made-up curves) and a smoke run that resumes per cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astrobench.core.io import ConfigError
from astrobench.tasks.transfer import grid as G
from astrobench.tasks.transfer.targets import MLPBackbone, metrics
from astrobench.tasks.transfer.task import TransferTask


def _curve(values, errs=None, key="sigma_nmad"):
    errs = errs or [0.0] * len(values)
    return {f"n_{n}": {key: v, f"{key}_err": e} for n, v, e in zip((32, 128, 512, 2048), values, errs)}


def test_data_efficiency_and_crossover_have_known_answers():
    sizes = [32, 128, 512, 2048]
    scratch = _curve([0.4, 0.3, 0.2, 0.1], [0.01] * 4)
    eff = TransferTask._efficiency(scratch, _curve([0.2, 0.2, 0.15, 0.1], [0.01] * 4), "sigma_nmad", sizes)
    assert eff["data_efficiency"] == pytest.approx(4.0)  # scratch reaches 0.2 at 512 = 4 x 128
    assert eff["crossover_n"] == 2048  # equal at 2048, better below
    halfway = TransferTask._efficiency(scratch, _curve([0.2, 0.25, 0.2, 0.1]), "sigma_nmad", sizes)
    assert halfway["data_efficiency"] == pytest.approx(2.0)  # 0.25: halfway in log n between 128 and 512
    never = TransferTask._efficiency(scratch, _curve([0.05, 0.05, 0.05, 0.05], [0.01] * 4), "sigma_nmad", sizes)
    assert np.isnan(never["data_efficiency"]) and never["data_efficiency_at_least"] == 16
    assert np.isnan(never["crossover_n"])  # finetune helps at every size
    one_seed = TransferTask._efficiency(_curve([0.4, 0.3, 0.2, 0.1], [np.nan] * 4), _curve([0.2] * 4), "sigma_nmad",
                                        sizes)
    assert np.isnan(one_seed["crossover_n"]) and one_seed["gain_by_n"]["n_32"] == pytest.approx(0.2)


def test_fixed_step_training_learns_a_linear_relation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 6)).astype(np.float32)
    y = (x @ np.arange(1, 7) / 10).astype(np.float32)
    torch.manual_seed(0)
    model = G.Predictor(MLPBackbone(6, 32), 32, 1)
    G.train_steps(model, x, y, "regression", G.StepConfig(steps=300, batch_size=64, lr=3e-3), seed=0)
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
    G.train_steps(source, xs, ys, "regression", G.StepConfig(steps=800, batch_size=128, lr=3e-3), seed=0)

    def r2(pred):
        return 1 - np.mean((pred - ytest) ** 2) / np.var(ytest)

    probe = G.feature_model("regression", 32, 0, "linear_probe").fit(G.predict(source.backbone, xt), yt)
    transfer_r2 = r2(probe.predict(G.predict(source.backbone, xtest)))
    scratch = G.Predictor(MLPBackbone(10, 64), 64, 1)
    G.train_steps(scratch, xt, yt, "regression", G.StepConfig(steps=300, batch_size=32), seed=0)
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
    from astrobench.runner import run

    run_dir = run("transfer", out=tmp_path, name="smoke", seed=0, progress=False, overrides={"size": "smoke"})
    res = json.loads((run_dir / "metrics.json").read_text())["results"]
    assert set(res) == {"photoz", "allsky", "summary"}
    assert set(res["photoz"]) == {"none", "in_domain"}  # no ImageNet model reads photometry
    assert set(res["allsky"]) == {"none", "imagenet", "in_domain"}
    for strategy in ("linear_probe", "finetune", "finetune_discriminative", "frozen_knn"):
        assert 0 <= res["allsky"]["imagenet"][strategy]["n_32"]["error_rate"] <= 1
        assert res["photoz"]["in_domain"][strategy]["n_32"]["sigma_nmad"] > 0
    assert "no crossover_n with one seed" in res["summary"]["when_transfer_helps"]["allsky.imagenet"]
    assert (run_dir / "checkpoints" / "allsky.in_domain.pt").exists()
    assert (run_dir / "figures" / "learning_curves_allsky.png").stat().st_size > 1000
    cells = sorted((run_dir / "cells").glob("*.json"))
    assert len(cells) == 2 * (1 + 2 * 4) - 4  # photoz: scratch + 4 in_domain; allsky: scratch + 2 x 4

    # interrupted: one cell lost, the rest kept; the resumed run recomputes only that one, with the same result
    (run_dir / "metrics.json").unlink()
    lost = run_dir / "cells" / "photoz.in_domain.finetune.n32.s0.json"
    kept = {p.name: p.stat().st_mtime_ns for p in cells if p != lost}
    lost.unlink()
    resumed = json.loads((run(resume=run_dir, progress=False) / "metrics.json").read_text())["results"]
    assert all((run_dir / "cells" / name).stat().st_mtime_ns == t for name, t in kept.items())
    assert resumed["photoz"]["in_domain"]["finetune"] == res["photoz"]["in_domain"]["finetune"]


def test_transfer_rejects_data_and_unknown_strategies(tmp_path):
    from astrobench.runner import run

    with pytest.raises(ConfigError, match="--data is not supported"):
        run("transfer", data=tmp_path, out=tmp_path, name="d", progress=False, overrides={"size": "smoke"})
    with pytest.raises(ConfigError, match="strategies"):
        run("transfer", out=tmp_path, name="s", progress=False, overrides={"size": "smoke", "strategies": ["magic"]})
