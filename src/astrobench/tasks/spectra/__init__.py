"""Generative models of SDSS galaxy spectra: PCA + Gaussian, PCA + flow, VAE, conditioned on physical properties.

Notebook use::

    from astrobench.tasks import spectra
    path = spectra.simulate("sims", n=2000)                      # or the school's sdss_galaxy_spec.hdf5
    sf = spectra.read_spectra(path)
    prep = spectra.prepare(sf, np.flatnonzero(spectra.quality_mask(sf)))   # rest frame, normalised
    stats = spectra.summary_statistics(prep.wavelength_aa, prep.flux, prep.ivar)
"""

from astrobench.tasks.spectra.data import (
    FRAMES,
    Prepared,
    SpectraFile,
    fill_gaps,
    prepare,
    quality_mask,
    read_spectra,
    split_indices,
)
from astrobench.tasks.spectra.measure import summary_statistics
from astrobench.tasks.spectra.models import ParameterRegressor, SpectraBatch, SpectrumVAE, VAEGenerator, add_noise
from astrobench.tasks.spectra.simulate import SIMULATOR_VERSION, simulate, simulate_spectra
from astrobench.tasks.spectra.task import MIN_GALAXIES, read_for_run, spectra_simulation, tilt

__all__ = ["FRAMES", "MIN_GALAXIES", "SIMULATOR_VERSION", "ParameterRegressor", "Prepared", "SpectraBatch",
           "SpectraFile", "SpectrumVAE", "VAEGenerator", "add_noise", "fill_gaps", "prepare", "quality_mask",
           "read_for_run", "read_spectra", "simulate", "simulate_spectra", "spectra_simulation", "split_indices",
           "summary_statistics", "tilt"]
