"""Physics shared by more than one task: a tabulated flat Lambda-CDM cosmology and the quiet import of bagpipes
(stellar populations). A task that needs these imports them from here, never from another task."""

from astrobench.physics.cosmology import Distances, flat_lcdm
from astrobench.physics.stellar_pops import quiet_bagpipes

__all__ = ["Distances", "flat_lcdm", "quiet_bagpipes"]
