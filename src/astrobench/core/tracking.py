"""Experiment tracking through Lightning's loggers: a CSV log of every training run always, TensorBoard event files
or an MLflow run on request (``--logger``, ``--tracking-uri``; ``pip install 'astrobench[track]'``).

With MLflow, one astrobench run is one MLflow run: its parameters are the resolved configuration, its metrics the
training curves of every network (prefixed by the model's checkpoint folder, ``classify/cnn-val_loss``) and the
flattened results of every method, networks or not; its artifacts the report, ``metrics.json`` and the figures.
Without ``--tracking-uri`` (or ``MLFLOW_TRACKING_URI``) the store is a SQLite file beside the runs,
``OUT/mlflow.db``, with artifacts in ``OUT/mlartifacts``: ``mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db``.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from astrobench.core.io import ConfigError

LOGGERS = ("csv", "tensorboard", "mlflow")
CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Tracking:
    """Where training curves go besides ``history.json``: ``logger`` (csv, tensorboard or mlflow), the MLflow
    ``tracking_uri``, the run folder and, once the run has started, the MLflow ``run_id``."""

    logger: str = "csv"
    tracking_uri: str | None = None
    run_dir: str | None = None
    run_id: str | None = None


def check_tracking(logger: str, tracking_uri: str | None) -> None:
    """Refuse an unknown logger, a logger whose package is missing, a tracking URI without ``--logger mlflow``, and
    an http(s) tracking server that does not answer (within 3 s), before anything is created."""
    if logger not in LOGGERS:
        raise ConfigError(f"--logger must be one of {', '.join(LOGGERS)}, got {logger!r}")
    if tracking_uri and logger != "mlflow":
        raise ConfigError(f"--tracking-uri is where MLflow logs; add --logger mlflow (got --logger {logger})")
    package = {"tensorboard": "tensorboard", "mlflow": "mlflow"}.get(logger)
    if package:
        try:
            __import__(package)
        except ImportError:
            raise ConfigError(f"--logger {logger} needs {package}: pip install 'astrobench[track]'") from None
    if logger == "mlflow":
        _check_reachable(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "")


def _check_reachable(uri: str) -> None:
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "localhost", port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(f"--tracking-uri {uri}: no tracking server answers at {parsed.hostname}:{port} "
                          f"({err.strerror or err})") from None


def store_uri(tracking: Tracking) -> str:
    """The MLflow tracking URI: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///OUT/mlflow.db``
    beside the run folders (OUT is the run folder's grandparent, ``OUT/TASK/NAME``)."""
    if tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        return str(tracking.tracking_uri or os.environ["MLFLOW_TRACKING_URI"])
    return f"sqlite:///{Path(str(tracking.run_dir)).resolve().parent.parent / 'mlflow.db'}"


def training_loggers(tracking: Tracking | None, ckpt_dir: Path) -> list[Any]:
    """The Lightning loggers of one :func:`~astrobench.core.training.fit`: a CSV log (``ckpt_dir/metrics.csv``)
    always; TensorBoard event files under ``RUN/tensorboard/<model>``, or the run's MLflow run with the model's
    name as prefix."""
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(save_dir=ckpt_dir, name="", version="")]
    if tracking is None or tracking.logger == "csv" or tracking.run_dir is None:
        return loggers
    model = _model_name(Path(tracking.run_dir), ckpt_dir)
    if tracking.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=Path(tracking.run_dir) / "tensorboard", name=model, version=""))
    elif tracking.logger == "mlflow" and tracking.run_id:
        from lightning.pytorch.loggers import MLFlowLogger

        loggers.append(MLFlowLogger(tracking_uri=store_uri(tracking), run_id=tracking.run_id, prefix=model))
    return loggers


def _model_name(run_dir: Path, ckpt_dir: Path) -> str:
    try:
        return Path(ckpt_dir).resolve().relative_to((run_dir / "checkpoints").resolve()).as_posix()
    except ValueError:  # a rank that does not own the run trains beside the owner's checkpoints
        return Path(ckpt_dir).name


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf of a nested mapping."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def flat_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """Every finite number of a results tree, keyed by its dotted path (booleans as 0/1)."""
    return {path: float(value) for path, value in _leaves(results)
            if isinstance(value, (int, float)) and math.isfinite(float(value))}


def start_run(tracking: Tracking, config: Mapping[str, Any], run_name: str) -> Tracking:
    """Open the MLflow run of an astrobench run (experiment ``astrobench-<task>``) with the resolved configuration as
    its parameters; return ``tracking`` with the run's id. A no-op for the other loggers."""
    if tracking.logger != "mlflow":
        return tracking
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(tracking))
    name = f"astrobench-{config['task']}"
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        artifacts = None
        if not (tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
            artifacts = (Path(str(tracking.run_dir)).resolve().parent.parent / "mlartifacts").as_uri()
        experiment_id = client.create_experiment(name, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
    run = client.create_run(experiment_id, run_name=run_name, tags={"astrobench.run_dir": str(tracking.run_dir)})
    params = [Param(k, str(v)[:6000]) for k, v in _leaves(config) if k != "progress"]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
        client.log_batch(run.info.run_id, params=params[i:i + 100])
    return Tracking(tracking.logger, tracking.tracking_uri, tracking.run_dir, run.info.run_id)


def finish_run(tracking: Tracking, results: Mapping[str, Any] | None, run_dir: Path) -> None:
    """Log the final results (every method's numbers), the report, metrics.json and the figures, and close the run
    (``FAILED`` when ``results`` is None). TensorBoard gets the final results as scalars under ``results``."""
    if tracking.logger == "tensorboard" and results is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        board = TensorBoardLogger(save_dir=run_dir / "tensorboard", name="results", version="")
        board.log_metrics(flat_metrics(results))
        board.finalize("success")
    if tracking.logger != "mlflow" or not tracking.run_id:
        return
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(tracking))
    if results is not None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in flat_metrics(results).items()]
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(tracking.run_id, metrics=metrics[i:i + 1000])
        for name in ("report.html", "metrics.json", "config.json"):
            if (run_dir / name).exists():
                client.log_artifact(tracking.run_id, str(run_dir / name))
        if (run_dir / "figures").is_dir():
            client.log_artifacts(tracking.run_id, str(run_dir / "figures"), "figures")
    client.set_terminated(tracking.run_id, "FINISHED" if results is not None else "FAILED")
