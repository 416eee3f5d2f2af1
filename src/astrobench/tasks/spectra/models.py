"""Generative models of normalised galaxy spectra: PCA + Gaussian, PCA + normalising flow, VAE, VAE + flow.

Every generator has the same surface: ``fit(train, val)`` on :class:`SpectraBatch` objects and
``sample(n, cond, seed)`` returning noiseless normalised spectra (n, n_wave); with ``n_cond > 0`` it is conditional
and ``cond`` (n, n_cond) holds standardised conditions. Noise is added afterwards from the real data's inverse
variances (:func:`add_noise`), so generated and real spectra are compared at the same signal-to-noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from astrobench.core.nets import mlp
from astrobench.core.training import TaskModule, TrainConfig, as_dataset, fit, predict_batches

GENERATORS = ("pca_gauss", "pca_flow", "vae", "vae_flow")
AUTOENCODERS = ("vae",)


@dataclass
class SpectraBatch:
    """Normalised spectra ``flux`` (n, n_wave), their ``ivar`` and standardised conditions ``cond`` (n, n_cond)."""

    flux: np.ndarray
    ivar: np.ndarray
    cond: np.ndarray

    def __len__(self) -> int:
        return len(self.flux)


def chi2_per_pixel(flux: np.ndarray, model: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    """Inverse-variance weighted chi^2 per good pixel of each spectrum (1 for a fit at the noise level)."""
    return (ivar * (flux - model) ** 2).sum(1) / np.maximum((ivar > 0).sum(1), 1)


def add_noise(flux: np.ndarray, ivar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``flux`` plus Gaussian noise of variance 1/ivar; where ivar = 0 the value is interpolated from good
    neighbours, as the loader fills real spectra, so masks look alike on both sides."""
    from astrobench.tasks.spectra.data import fill_gaps

    sigma = np.where(ivar > 0, 1 / np.sqrt(np.maximum(ivar, 1e-30)), 0.0)
    noisy = flux + sigma * rng.standard_normal(flux.shape)
    return fill_gaps(noisy, ivar, np.arange(flux.shape[1], dtype=float)).astype(np.float32)


class PCABasis:
    """Principal components of normalised spectra (scikit-learn PCA on the training spectra)."""

    def __init__(self, n_components: int, seed: int = 0):
        self.n_components, self.seed = n_components, seed

    def fit(self, flux: np.ndarray) -> PCABasis:
        from sklearn.decomposition import PCA

        self.pca_ = PCA(self.n_components, svd_solver="randomized", random_state=self.seed).fit(flux)
        return self

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        return self.pca_.explained_variance_ratio_

    def transform(self, flux: np.ndarray, k: int) -> np.ndarray:
        return (flux - self.pca_.mean_) @ self.pca_.components_[:k].T

    def inverse(self, coeffs: np.ndarray) -> np.ndarray:
        k = coeffs.shape[1]
        return (coeffs @ self.pca_.components_[:k] + self.pca_.mean_).astype(np.float32)

    def reconstruct(self, flux: np.ndarray, k: int) -> np.ndarray:
        return self.inverse(self.transform(flux, k))


def _condition_design(cond: np.ndarray) -> np.ndarray:
    """[1, c, c^2, pairwise products]: a quadratic response surface of the conditions."""
    n, d = cond.shape
    pairs = [cond[:, i] * cond[:, j] for i in range(d) for j in range(i, d)]
    return np.column_stack([np.ones(n), cond, *pairs]) if d else np.ones((n, 1))


class PCAGauss:
    """A Gaussian over the first ``k`` PCA coefficients; conditional: its mean a quadratic function of the
    conditions (least squares) and the residual covariance shared (a linear-Gaussian model)."""

    name = "pca_gauss"

    def __init__(self, basis: PCABasis, k: int):
        self.basis, self.k = basis, k

    def fit(self, train: SpectraBatch, val: SpectraBatch | None = None, **_) -> PCAGauss:
        a = self.basis.transform(train.flux, self.k)
        design = _condition_design(train.cond)
        self.coef_, *_ = np.linalg.lstsq(design, a, rcond=None)
        resid = a - design @ self.coef_
        self.chol_ = np.linalg.cholesky(np.cov(resid.T) + 1e-9 * np.eye(self.k))
        return self

    def sample(self, n: int, cond: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        mean = _condition_design(cond) @ self.coef_
        return self.basis.inverse(mean + rng.standard_normal((n, self.k)) @ self.chol_.T)


# --- normalising flow (zuko) --------------------------------------------------------------------------------

class FlowModule(TaskModule):
    """A neural spline flow (Durkan et al. 2019, zuko's NSF) on standardised vectors, optionally conditional;
    batches are (x, cond) with cond of width 0 when unconditional. Loss: mean negative log-likelihood."""

    def __init__(self, features: int, context: int, transforms: int = 4, hidden: int = 128, lr: float = 1e-3):
        import zuko

        super().__init__(lr=lr, weight_decay=0.0)
        self.save_hyperparameters()
        self.context = context
        self.flow = zuko.flows.NSF(features, context=context, transforms=transforms, hidden_features=(hidden, hidden))

    def _dist(self, cond):
        return self.flow(cond) if self.context else self.flow()

    def loss(self, batch):
        x, cond = batch
        return -self._dist(cond).log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n: int, cond: np.ndarray, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        if self.context:
            return self._dist(torch.as_tensor(cond, dtype=torch.float32)).sample().numpy()
        return self._dist(None).sample((n,)).numpy()


def fit_flow(x_train, c_train, x_val, c_val, ckpt_dir: Path, cfg: TrainConfig, resume: bool = False,
             **kwargs) -> tuple[FlowModule, np.ndarray, np.ndarray, dict]:
    """Standardise ``x``, fit a :class:`FlowModule`; returns it with the standardisation and the loss history."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    module = FlowModule(x_train.shape[1], c_train.shape[1], **kwargs)
    result = fit(module, as_dataset((x_train - mean) / std, c_train), as_dataset((x_val - mean) / std, c_val),
                 ckpt_dir, cfg, resume=resume)
    return module, mean, std, result.history


class PCAFlow:
    """A normalising flow on the first ``k`` PCA coefficients (conditional on the conditions when they exist)."""

    name = "pca_flow"

    def __init__(self, basis: PCABasis, k: int, transforms: int = 4, hidden: int = 128, lr: float = 1e-3):
        self.basis, self.k, self.flow_kwargs = basis, k, dict(transforms=transforms, hidden=hidden, lr=lr)

    def fit(self, train: SpectraBatch, val: SpectraBatch, ckpt_dir: Path, cfg: TrainConfig, resume=False):
        a_train, a_val = (self.basis.transform(b.flux, self.k) for b in (train, val))
        self.flow_, self.mean_, self.std_, self.history_ = fit_flow(a_train, train.cond, a_val, val.cond, ckpt_dir,
                                                                    cfg, resume, **self.flow_kwargs)
        return self

    def sample(self, n: int, cond: np.ndarray, seed: int) -> np.ndarray:
        return self.basis.inverse(self.flow_.sample(n, cond, seed) * self.std_ + self.mean_)


# --- variational autoencoder --------------------------------------------------------------------------------

class SpectrumVAE(TaskModule):
    """A VAE of normalised spectra (MLP encoder and decoder, Portillo et al. 2020 use 6 latents) with the data's
    own noise as likelihood: -log p(x|z) = chi^2 / 2 with the inverse variances of each pixel, so masked pixels
    count for nothing and noisy ones for little. Conditional (a CVAE, Sohn et al. 2015) when ``n_cond > 0``: the
    encoder and decoder both see the conditions. Batches are (flux, ivar, cond); the loss is per pixel."""

    def __init__(self, n_wave: int, n_cond: int, latent_dim: int = 6, hidden: tuple[int, int] = (512, 256),
                 mean_flux: np.ndarray | None = None, beta: float = 1.0, lr: float = 1e-3):
        super().__init__(lr=lr, weight_decay=1e-5)
        self.save_hyperparameters(ignore=["mean_flux"])  # a buffer, saved in the state dict
        self.latent_dim, self.n_cond, self.beta = latent_dim, n_cond, beta
        self.encoder = mlp([n_wave + n_cond, hidden[0], hidden[1], 2 * latent_dim])
        self.decoder = mlp([latent_dim + n_cond, hidden[1], hidden[0], n_wave])
        mean = torch.zeros(n_wave) if mean_flux is None else torch.as_tensor(mean_flux, dtype=torch.float32)
        self.register_buffer("mean_flux", mean)

    def encode(self, flux, cond):
        mu, log_var = self.encoder(torch.cat([flux - self.mean_flux, cond], 1)).chunk(2, dim=1)
        return mu, log_var.clamp(-12, 6)

    def decode(self, z, cond):
        return self.mean_flux + self.decoder(torch.cat([z, cond], 1))

    def loss(self, batch):
        flux, ivar, cond = batch
        mu, log_var = self.encode(flux, cond)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        chi2 = (ivar * (flux - self.decode(z, cond)) ** 2).sum(1)
        kl = -0.5 * (1 + log_var - mu**2 - log_var.exp()).sum(1)
        return (0.5 * chi2 + self.beta * kl).mean() / flux.shape[1]


class VAEGenerator:
    """``vae``: decode draws from the N(0, 1) prior. ``vae_flow``: the same trained VAE, but latents drawn from a
    flow fitted to the training spectra's posterior means (a two-stage VAE, Dai & Wipf 2019), which closes the gap
    between the prior and where the encoder actually puts the data."""

    def __init__(self, name: str, latent_dim: int = 6, beta: float = 1.0, lr: float = 1e-3):
        self.name, self.latent_dim, self.beta, self.lr = name, latent_dim, beta, lr

    def fit(self, train: SpectraBatch, val: SpectraBatch, ckpt_dir: Path, cfg: TrainConfig, resume=False,
            vae: VAEGenerator | None = None, flow_cfg: TrainConfig | None = None):
        if vae is not None:  # vae_flow reuses the trained vae
            self.module_, self.history_ = vae.module_, {}  # its loss curve is the vae's
        else:
            self.module_ = SpectrumVAE(train.flux.shape[1], train.cond.shape[1], self.latent_dim,
                                       mean_flux=train.flux.mean(0), beta=self.beta, lr=self.lr)
            sets = [as_dataset(b.flux, b.ivar, b.cond) for b in (train, val)]
            self.history_ = fit(self.module_, *sets, ckpt_dir, cfg, resume=resume).history
        if self.name == "vae_flow":
            z_train, z_val = self.encode(train), self.encode(val)
            self.flow_, self.mean_, self.std_, self.flow_history_ = fit_flow(
                z_train, train.cond, z_val, val.cond, Path(ckpt_dir) / "latent_flow", flow_cfg or cfg, resume)
        return self

    def encode(self, batch: SpectraBatch) -> np.ndarray:
        m = self.module_
        x = np.concatenate([batch.flux, batch.cond], 1)
        return predict_batches(lambda t: m.encode(t[:, :batch.flux.shape[1]], t[:, batch.flux.shape[1]:])[0], x)

    def reconstruct(self, batch: SpectraBatch) -> np.ndarray:
        z = self.encode(batch)
        return self.decode(z, batch.cond)

    def decode(self, z: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """Noiseless normalised spectra for latents ``z`` (n, latent_dim) and conditions ``cond`` (n, n_cond)."""
        m, d = self.module_, z.shape[1]
        return predict_batches(lambda t: m.decode(t[:, :d], t[:, d:]), np.concatenate([z, cond], 1))

    def sample(self, n: int, cond: np.ndarray, seed: int) -> np.ndarray:
        if self.name == "vae_flow":
            z = self.flow_.sample(n, cond, seed) * self.std_ + self.mean_
        else:
            z = np.random.default_rng(seed).standard_normal((n, self.latent_dim)).astype(np.float32)
        return self.decode(z.astype(np.float32), cond)


# --- the re-measuring regressor ---------------------------------------------------------------------------

class ParameterRegressor:
    """Physical parameters from a normalised spectrum: PCA (64 whitened components) then an MLP, trained on real
    training spectra only; used to re-measure generated spectra."""

    def __init__(self, seed: int = 0, n_components: int = 64):
        self.seed, self.n_components = seed, n_components

    def fit(self, flux: np.ndarray, targets: np.ndarray) -> ParameterRegressor:
        import warnings

        from sklearn.decomposition import PCA
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor
        from sklearn.pipeline import make_pipeline

        self.mean_, self.std_ = targets.mean(0), targets.std(0) + 1e-12
        self.model_ = make_pipeline(
            PCA(self.n_components, whiten=True, random_state=self.seed),
            MLPRegressor(hidden_layer_sizes=(256, 128), alpha=1e-2, early_stopping=True, max_iter=500,
                         random_state=self.seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_.fit(flux, (targets - self.mean_) / self.std_)
        return self

    def predict(self, flux: np.ndarray) -> np.ndarray:
        out = self.model_.predict(flux)
        return out.reshape(len(flux), -1) * self.std_ + self.mean_
