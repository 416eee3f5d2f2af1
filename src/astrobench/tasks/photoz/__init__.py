"""Galaxy redshifts from 3D-HST HST photometry: the Hello Universe decision tree and the methods that beat it.

Notebook use::

    from astrobench.tasks import photoz
    path = photoz.simulate("sims", n=30000)                        # or the real 3dhst_master.phot.v4.1.cat
    cat = photoz.read_catalogue(path)
    rows = photoz.hello_universe_rows(cat)                         # lmass > 9, z_spec > 0
    X, names = photoz.feature_matrix(cat, rows, "colors")          # or "hello_universe"
    model = photoz.fit_point("gbm", X, cat["z_spec"][rows], seed=0, budget=photoz.SearchBudget(n_iter=10))
"""

from astrobench.tasks.photoz.data import (
    Catalogue,
    FeatureTransform,
    feature_matrix,
    hello_universe_rows,
    read_catalogue,
    split_indices,
)
from astrobench.tasks.photoz.models import KNNPDF, QuantileGBM, SearchBudget, fit_point
from astrobench.tasks.photoz.simulate import simulate, simulate_catalogue
from astrobench.tasks.photoz.task import catalogue_simulation

__all__ = ["KNNPDF", "Catalogue", "FeatureTransform", "QuantileGBM", "SearchBudget", "catalogue_simulation",
           "feature_matrix", "fit_point", "hello_universe_rows", "read_catalogue", "simulate", "simulate_catalogue",
           "split_indices"]
