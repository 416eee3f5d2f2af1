import numpy as np
import torch

from astrobench.core.nets import ConvNet, coordinate_grid, mlp
from astrobench.core.training import (
    ClassificationTask,
    RegressionTask,
    TrainConfig,
    as_dataset,
    fit,
    load_weights,
    predict_batches,
)


def _linear_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([[2.0], [-1.0], [0.5]]) + 10.0).astype(np.float32)
    return x, y


def test_regression_task_recovers_linear_relation(tmp_path):
    x, y = _linear_data(2000, 0)
    xv, yv = _linear_data(300, 1)
    module = RegressionTask(mlp([3, 32, 1]), y.mean(0), y.std(0), lr=1e-2)
    cfg = TrainConfig(max_epochs=15, batch_size=64, progress=False, accelerator="cpu", devices=1)
    res = fit(module, as_dataset(x, y), as_dataset(xv, yv), tmp_path / "ck", cfg)
    pred = predict_batches(lambda t: module.predict_physical(t)[0], xv)
    assert np.sqrt(np.mean((pred - yv) ** 2)) < 0.15 * yv.std()
    assert res.history["val_loss"][-1] < res.history["val_loss"][0]
    assert (tmp_path / "ck" / "model.pt").exists() and (tmp_path / "ck" / "last.ckpt").exists()
    # weights reload through weights_only=True and give the same predictions
    clone = load_weights(RegressionTask(mlp([3, 32, 1]), np.zeros(1), np.ones(1)), tmp_path / "ck" / "model.pt")
    np.testing.assert_allclose(predict_batches(lambda t: clone.predict_physical(t)[0], xv), pred, atol=1e-5)


def test_resume_continues_from_last_checkpoint(tmp_path):
    x, y = _linear_data(500, 0)
    xv, yv = _linear_data(100, 1)
    cfg = TrainConfig(max_epochs=2, batch_size=64, progress=False, accelerator="cpu", devices=1, patience=50)
    module = RegressionTask(mlp([3, 8, 1]), y.mean(0), y.std(0))
    fit(module, as_dataset(x, y), as_dataset(xv, yv), tmp_path, cfg)
    (tmp_path / "model.pt").unlink()  # as if the run had been killed after its last checkpoint
    cfg.max_epochs = 4
    module = RegressionTask(mlp([3, 8, 1]), y.mean(0), y.std(0))
    res = fit(module, as_dataset(x, y), as_dataset(xv, yv), tmp_path, cfg, resume=True)
    assert res.resumed
    assert res.history["epoch"] == [0, 1, 2, 3]  # the first two epochs came back from the checkpoint


def test_same_seed_same_weights(tmp_path):
    x, y = _linear_data(300, 0)
    cfg = TrainConfig(max_epochs=2, batch_size=32, progress=False, accelerator="cpu", devices=1, seed=7)
    outs = []
    for i in range(2):
        torch.manual_seed(0)  # the runner seeds before building modules; fit seeds the training itself
        module = RegressionTask(mlp([3, 8, 1]), y.mean(0), y.std(0))
        fit(module, as_dataset(x, y), as_dataset(x[:50], y[:50]), tmp_path / str(i), cfg)
        outs.append(predict_batches(module, x))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_classification_task_and_convnet_shapes():
    net = ConvNet(1, 3, 28, (8, 16), coord_channels=True)
    assert net(torch.zeros(4, 1, 28, 28)).shape == (4, 3)
    task = ClassificationTask(net)
    loss = task.loss((torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 0])))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_coordinate_grid_orientation():
    g = coordinate_grid(3, 5)
    assert g.shape == (2, 3, 5)
    assert g[0, 0, 0] == -1 and g[0, 0, -1] == 1  # x grows along columns
    assert g[1, 0, 0] == -1 and g[1, -1, 0] == 1  # y grows along rows


def test_random_d4_gives_only_and_all_views_of_the_square():
    from astrobench.core.training import d4_views, random_d4

    torch.manual_seed(0)
    x = torch.arange(16.0).reshape(1, 1, 4, 4).expand(400, -1, -1, -1).contiguous()
    out = random_d4(x)
    views = [v[0] for v in d4_views(x[:1])]
    matches = [[torch.equal(o, v) for v in views].index(True) for o in out]  # each output is one of the 8 views
    assert set(matches) == set(range(8))  # and flips and rotations really happen


def test_d4_average_is_invariant_to_rotations_and_flips():
    from astrobench.core.training import d4_average

    torch.manual_seed(0)
    net = ConvNet(1, 3, 28, (8, 16)).eval()
    averaged = d4_average(net)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        ref = averaged(x)
        for k in range(1, 4):
            torch.testing.assert_close(averaged(torch.rot90(x, k, dims=(-2, -1))), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(averaged(x.flip(-1)), ref, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(net(torch.rot90(x, 1, dims=(-2, -1))), net(x), atol=1e-5)  # the net alone is not


def test_lightning_owns_the_trained_module(tmp_path):
    """load_module: the hyperparameters come back from the checkpoint (only the networks are handed in), the weights
    are those fit selected, and predict_module (Trainer.predict) gives what the module gave; a broken checkpoint is
    one DataFormatError line naming it."""
    import pytest

    from astrobench.core.io import DataFormatError
    from astrobench.core.training import load_module, predict_module

    x, y = _linear_data(400, 0)
    xv, yv = _linear_data(100, 1)
    y2 = np.concatenate([y, -y], 1)
    module = RegressionTask(mlp([3, 16, 4]), y2.mean(0), y2.std(0), loss="moment", lr=3e-3, weight_decay=0.0)
    cfg = TrainConfig(max_epochs=3, batch_size=64, progress=False, accelerator="cpu", devices=1)
    fit(module, as_dataset(x, y2), as_dataset(xv, np.concatenate([yv, -yv], 1)), tmp_path, cfg)
    expected = predict_batches(lambda t: module.predict_physical(t)[0], xv)

    clone = load_module(RegressionTask, tmp_path, backbone=mlp([3, 16, 4]), target_mean=np.zeros(2),
                        target_std=np.ones(2))
    assert (clone.loss_name, clone.lr, clone.weight_decay) == ("moment", 3e-3, 0.0)  # from the checkpoint
    mean, sigma = predict_module(clone, xv, lambda m, t: m.predict_physical(t), batch_size=32)
    np.testing.assert_allclose(mean, expected, atol=1e-5)
    assert sigma.shape == (len(xv), 2) and (sigma > 0).all()

    (tmp_path / "best.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataFormatError, match="best.ckpt: cannot load this checkpoint") as err:
        load_module(RegressionTask, tmp_path, backbone=mlp([3, 16, 4]), target_mean=[0.0], target_std=[1.0])
    assert "\n" not in str(err.value)
