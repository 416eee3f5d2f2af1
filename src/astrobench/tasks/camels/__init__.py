"""CAMELS multifield maps: Omega_m and sigma_8 (and feedback) with the CMD CNN, across IllustrisTNG and SIMBA."""

from astrobench.tasks.camels.simulate import simulate

__all__ = ["simulate"]
