"""The list of tasks: a new task is one line here plus its folder under ``tasks/``."""

from __future__ import annotations

from importlib import import_module

from astrobench.core.io import ConfigError
from astrobench.core.task import Task

TASKS: dict[str, str] = {
    "rings": "astrobench.tasks.rings.task:RingsTask",
    "cluster_mass": "astrobench.tasks.cluster_mass.task:ClusterMassTask",
    "sn_lasso": "astrobench.tasks.sn_lasso.task:SNLassoTask",
    "camels": "astrobench.tasks.camels.task:CamelsTask",
    "photoz": "astrobench.tasks.photoz.task:PhotozTask",
    "spectra": "astrobench.tasks.spectra.task:SpectraTask",
    "allsky": "astrobench.tasks.allsky.task:AllskyTask",
    "gan_latent": "astrobench.tasks.gan_latent.task:GanLatentTask",
    "transfer": "astrobench.tasks.transfer.task:TransferTask",
}


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(import_module(module), cls)()


def task_or_none(name: str):
    """The registered task called ``name``, or None (a run of a task this version does not know)."""
    return get_task(name) if name in TASKS else None
