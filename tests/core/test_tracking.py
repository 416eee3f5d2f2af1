"""Experiment tracking: a CSV log always, TensorBoard event files and an MLflow run on request, one-line refusals."""

import socket
import time

import pytest

from astrobench.cli import main
from astrobench.core.tracking import flat_metrics
from astrobench.runner import Execution, run

SMALL = {"size": "smoke", "methods": ["lm_total", "cnn"]}  # one network and one non-network method


def test_flat_metrics_keeps_finite_numbers_by_path():
    tree = {"a": {"cnn": {"rmse": 0.2, "rmse_err": 0.01, "ok": True, "name": "x", "bad": float("nan")}}}
    assert flat_metrics(tree) == {"a.cnn.rmse": 0.2, "a.cnn.rmse_err": 0.01, "a.cnn.ok": 1.0}


def test_mlflow_run_holds_config_curves_results_and_artifacts(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = run("cluster_mass", out=tmp_path, name="tracked", seed=0, overrides=SMALL,
                  execution=Execution(logger="mlflow"))
    assert (tmp_path / "mlflow.db").is_file()  # the default store: beside the run folders
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (found,) = mlflow.search_runs(experiment_names=["astrobench-cluster_mass"], output_format="list")
    assert found.info.run_name == "tracked" and found.info.status == "FINISHED"
    assert found.data.params["seed"] == "0" and found.data.params["options.methods"] == "['lm_total', 'cnn']"
    metrics = found.data.metrics
    assert metrics["mass.lm_total.scatter_dex"] > 0 and metrics["mass.cnn.scatter_dex"] > 0  # both kinds of method
    assert any(k.endswith("-val_loss") and "cnn" in k for k in metrics), sorted(metrics)  # a training curve
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(found.info.run_id)}
    assert {"report.html", "metrics.json", "figures"} <= artifacts
    assert list((run_dir / "checkpoints").rglob("metrics.csv"))  # the CSV log is there too


def test_tensorboard_writes_event_files_in_the_run_folder(tmp_path):
    pytest.importorskip("tensorboard")
    run_dir = run("cluster_mass", out=tmp_path, name="board", seed=0, overrides=SMALL,
                  execution=Execution(logger="tensorboard"))
    events = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert any("results" in str(e) for e in events) and any("cnn" in str(e) for e in events)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_logger_and_tracking_uri_are_one_line_exit_2(tmp_path, capsys):
    base = ["run", "sn_lasso", "--out", str(tmp_path), "--set", "size='smoke'"]
    assert main([*base, "--logger", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert "--logger must be one of csv, tensorboard, mlflow" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--tracking-uri", "http://127.0.0.1:5000"]) == 2
    assert "add --logger mlflow" in capsys.readouterr().err
    if pytest.importorskip("mlflow"):
        start = time.monotonic()
        assert main([*base, "--logger", "mlflow", "--tracking-uri", f"http://127.0.0.1:{_free_port()}"]) == 2
        err = capsys.readouterr().err
        assert "no tracking server answers" in err and len(err.strip().splitlines()) == 1
        assert time.monotonic() - start < 10  # no hang
    assert not any(tmp_path.iterdir())  # nothing was created
