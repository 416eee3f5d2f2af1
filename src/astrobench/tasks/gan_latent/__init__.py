"""Interpreting generative latent spaces of galaxy spectra: WGAN-GP, VAE, conditional GAN, InfoGAN.

Notebook use::

    from astrobench.tasks import gan_latent, spectra
    sf = spectra.read_spectra(spectra.simulate("sims", n=2000))   # or the school's sdss_galaxy_spec.hdf5
    scores = gan_latent.interpret(latents, factors, names)        # MIG, SAP, DCI, correlation and MI matrices
"""

from astrobench.tasks.gan_latent.data import available_parameters, downsample, parameter_table
from astrobench.tasks.gan_latent.interpret import dci, interpret, mig, mutual_information_matrix, sap

__all__ = ["available_parameters", "dci", "downsample", "interpret", "mig", "mutual_information_matrix",
           "parameter_table", "sap"]
