"""CAMELS multifield maps: Omega_m and sigma_8 (and feedback) with the CMD CNN, across IllustrisTNG and SIMBA.

Public for other tasks: ``simulate`` (write the CMD files), ``simulated_folder`` (the cached simulated files),
``load_camels`` and ``channel_values`` (read them), ``cmd_cnn`` (the CMD network)."""

from astrobench.tasks.camels.data import channel_values, load_camels, simulated_folder
from astrobench.tasks.camels.models import cmd_cnn
from astrobench.tasks.camels.simulate import MAPS_PER_SIM, simulate

__all__ = ["MAPS_PER_SIM", "channel_values", "cmd_cnn", "load_camels", "simulate", "simulated_folder"]
