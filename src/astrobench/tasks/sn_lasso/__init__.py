"""Which variables model a Type Ia supernova's peak magnitude: LASSO with cross-validation (Uemura et al. 2015).

Notebook use::

    from astrobench.tasks import sn_lasso
    table = sn_lasso.load_sn_table("Pantheon+SH0ES.dat")          # or sn_lasso.simulate("sims", n=450)
    selection = sn_lasso.lasso_cv(table.X, table.y)
    selection.selected(selection.i_1se, table.names)
"""

from astrobench.tasks.sn_lasso.data import SNTable, load_sn_table, prepare_generic, prepare_pantheon
from astrobench.tasks.sn_lasso.models import eiv_fit, lasso_cv, ols_bootstrap, stability_selection
from astrobench.tasks.sn_lasso.simulate import simulate, simulate_sn_table

__all__ = ["SNTable", "eiv_fit", "lasso_cv", "load_sn_table", "ols_bootstrap", "prepare_generic",
           "prepare_pantheon", "simulate", "simulate_sn_table", "stability_selection"]
