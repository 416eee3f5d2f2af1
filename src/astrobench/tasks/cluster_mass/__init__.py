"""Galaxy-cluster masses from mock Chandra X-ray images (Ntampaka et al. 2019): simulate, load, estimate.

Notebook use::

    from astrobench.tasks import cluster_mass
    path = cluster_mass.simulate("my_clusters", n=100, n_projections=8)   # the school's FITS format
    data = cluster_mass.load_cluster_fits(path).rebinned(64)
"""

from astrobench.tasks.cluster_mass.data import (
    ClusterImages,
    cluster_folds,
    load_cluster_fits,
    split_clusters,
    write_cluster_fits,
)
from astrobench.tasks.cluster_mass.simulate import PARAMETERS, draw_clusters, simulate, simulate_cluster_images

_MODELS = ("ApertureMass", "d4_cnn", "ntampaka_cnn")


def __getattr__(name: str):
    # the models need PyTorch: imported on first use, so that the simulator's worker processes start without it
    if name in _MODELS:
        from astrobench.tasks.cluster_mass import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["PARAMETERS", "ApertureMass", "ClusterImages", "cluster_folds", "d4_cnn", "draw_clusters",
           "load_cluster_fits", "ntampaka_cnn", "simulate", "simulate_cluster_images", "split_clusters",
           "write_cluster_fits"]
