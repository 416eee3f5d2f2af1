"""Wasserstein GANs of down-sampled galaxy spectra: unconditional, conditional (cGAN) and InfoGAN.

One LightningModule (:class:`SpectrumWGAN`) with manual optimisation (two optimisers) covers the three:

- the objective is WGAN-GP (Gulrajani et al. 2017): a critic without normalisation layers, gradient penalty 10,
  ``n_critic`` critic steps per generator step, Adam with betas (0, 0.9) as in the paper (the paper's lr 1e-4 and
  n_critic 5 are this class's defaults; the task trains with 5e-4 and 2, docs/tasks/gan_latent.md says why);
- the generator makes *noiseless* spectra; the data's own noise (the inverse variances of a real training
  spectrum) is added before the critic sees them (AmbientGAN, Bora et al. 2018), so real and generated spectra
  meet at the same signal-to-noise and the generator is not asked to invent noise;
- ``cgan``: generator and critic both see the standardised physical parameters (concatenated to their inputs;
  the critic also has a projection term after Miyato & Koyama 2018, here on the critic's last hidden layer
  before its activation);
- ``infogan`` (Chen et al. 2016): ``n_codes`` of the latent inputs are codes ~ U(-1, 1), and an auxiliary network Q
  recovers them from the *noisy* generated spectrum; its mean-squared error (the Gaussian bound on the mutual
  information, unit variance) is added to the generator's loss with weight ``info_weight``, so the codes must be
  visible above the noise.

Every GAN has the same number of inputs ``latent_dim``: gan = noise; infogan = codes + noise; cgan = parameters +
noise. :class:`GANGenerator` wraps training and sampling with the surface of the ``spectra`` generators.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from astrobench.core.training import TrainConfig, as_dataset, fit, predict_batches
from astrobench.tasks.spectra import SpectraBatch

GANS = ("gan", "cgan", "infogan")
MODELS = ("gan", "vae", "cgan", "infogan")


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with LeakyReLU(0.2) between them (no normalisation: the critic's gradient penalty acts per
    sample, which batch statistics would break)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class SpectrumWGAN(L.LightningModule):
    """WGAN-GP on standardised spectra; batches are (x, sigma, cond): the noisy standardised spectrum, its noise
    sigma in the same units (0 where a pixel has no data) and the standardised parameters (width 0 unless cgan).

    The logged ``train_loss`` / ``val_loss`` is the critic's Wasserstein estimate E[D(real)] - E[D(fake)], which
    falls as the generator improves (a curve to read, not a loss to select on; see ``fit(select_best=False)``).
    """

    hidden: tuple[int, int] = (256, 512)  # widths of the generator's and the critic's two hidden layers
    gp_weight = 10.0  # the gradient penalty's lambda (Gulrajani et al. 2017)

    def __init__(self, kind: str, n_wave: int, latent_dim: int, n_cond: int = 0, n_codes: int = 0, lr: float = 1e-4,
                 n_critic: int = 5, info_weight: float = 1.0):
        super().__init__()
        if kind not in GANS:
            raise ValueError(f"kind must be one of {GANS}, got {kind!r}")
        if kind == "cgan" and n_cond < 1 or kind != "cgan" and n_cond:
            raise ValueError("a cgan needs conditions and only a cgan takes them")
        if (kind == "infogan") != (n_codes > 0) or n_codes > latent_dim:
            raise ValueError("an infogan needs 1 <= n_codes <= latent_dim, the other kinds n_codes = 0")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.kind, self.latent_dim, self.n_cond, self.n_codes = kind, latent_dim, n_cond, n_codes
        self.lr, self.n_critic, self.info_weight = lr, n_critic, info_weight
        hidden = self.hidden
        self.noise_dim = latent_dim - n_cond - n_codes
        if self.noise_dim < (0 if kind == "infogan" else 1):
            raise ValueError(f"latent_dim {latent_dim} leaves no noise inputs beside {n_cond} conditions")
        self.generator = _mlp([latent_dim, hidden[0], hidden[1], n_wave])
        self.critic_body = _mlp([n_wave + n_cond, hidden[1], hidden[0]])
        self.critic_head = nn.Linear(hidden[0], 1)
        self.projection = nn.Linear(n_cond, hidden[0], bias=False) if n_cond else None
        self.q_net = _mlp([n_wave, hidden[1], hidden[0], n_codes]) if n_codes else None

    # --- the networks ---------------------------------------------------------------------------------------

    def draw_inputs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent inputs besides the conditions: codes ~ U(-1, 1) first (infogan), then noise ~ N(0, 1)."""
        codes = 2 * torch.rand(n, self.n_codes, generator=generator) - 1
        noise = torch.randn(n, self.noise_dim, generator=generator)
        return torch.cat([codes, noise], 1).to(self.device)

    def generate(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Noiseless standardised spectra from latent inputs (n, latent_dim - n_cond) and conditions (n, n_cond)."""
        return self.generator(torch.cat([cond, inputs], 1))

    def critic(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.critic_body(torch.cat([x, cond], 1))
        out = self.critic_head(F.leaky_relu(h, 0.2))[:, 0]
        if self.projection is not None:
            out = out + (self.projection(cond) * h).sum(1)
        return out

    @staticmethod
    def observe(clean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return clean + sigma * torch.randn_like(clean)

    def _gradient_penalty(self, real, fake, cond):
        eps = torch.rand(len(real), 1, device=real.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self.critic(mix, cond).sum(), mix, create_graph=True)
        return ((grad.norm(dim=1) - 1) ** 2).mean()

    # --- training --------------------------------------------------------------------------------------------

    def configure_optimizers(self):
        g_params = list(self.generator.parameters()) + (list(self.q_net.parameters()) if self.q_net else [])
        d_params = [p for n, p in self.named_parameters() if n.split(".")[0] in ("critic_body", "critic_head",
                                                                                 "projection")]
        betas = (0.0, 0.9)
        return [torch.optim.Adam(g_params, lr=self.lr, betas=betas),
                torch.optim.Adam(d_params, lr=self.lr, betas=betas)]

    def training_step(self, batch, batch_idx):
        x, sigma, cond = batch
        opt_g, opt_d = self.optimizers()
        inputs = self.draw_inputs(len(x))
        with torch.no_grad():
            fake = self.observe(self.generate(inputs, cond), sigma)
        d_real, d_fake = self.critic(x, cond), self.critic(fake, cond)
        loss_d = d_fake.mean() - d_real.mean() + self.gp_weight * self._gradient_penalty(x, fake, cond)
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        self.log("train_loss", (d_real.mean() - d_fake.mean()).detach(), on_step=False, on_epoch=True, prog_bar=True,
                 sync_dist=True)
        if (batch_idx + 1) % self.n_critic == 0:
            inputs = self.draw_inputs(len(x))
            fake = self.observe(self.generate(inputs, cond), sigma)
            loss_g = -self.critic(fake, cond).mean()
            if self.q_net is not None:
                info = F.mse_loss(self.q_net(fake), inputs[:, : self.n_codes])
                loss_g = loss_g + self.info_weight * info
                self.log("info_mse", info.detach(), on_step=False, on_epoch=True, sync_dist=True)
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            opt_g.step()

    def validation_step(self, batch, batch_idx):
        x, sigma, cond = batch
        fake = self.observe(self.generate(self.draw_inputs(len(x)), cond), sigma)
        self.log("val_loss", self.critic(x, cond).mean() - self.critic(fake, cond).mean(), on_step=False,
                 on_epoch=True, prog_bar=True, sync_dist=True)


class GANGenerator:
    """Fit a :class:`SpectrumWGAN` on :class:`~astrobench.tasks.spectra.models.SpectraBatch` objects and sample
    noiseless normalised spectra; ``cond`` is standardised parameters (width 0 unless ``kind == "cgan"``)."""

    def __init__(self, kind: str, latent_dim: int = 8, n_codes: int = 0, n_critic: int = 5, lr: float = 1e-4,
                 info_weight: float = 1.0):
        self.kind, self.name = kind, kind
        self.kwargs = dict(latent_dim=latent_dim, n_codes=n_codes, n_critic=n_critic, lr=lr, info_weight=info_weight)

    def _standardised(self, batch: SpectraBatch):
        sigma = np.where(batch.ivar > 0, 1 / np.sqrt(np.maximum(batch.ivar, 1e-30)), 0.0) / self.std_
        return as_dataset((batch.flux - self.mean_) / self.std_, sigma, batch.cond)

    def fit(self, train: SpectraBatch, val: SpectraBatch, ckpt_dir: Path, cfg: TrainConfig,
            resume: bool = False) -> GANGenerator:
        self.mean_ = train.flux.mean(0)
        self.std_ = train.flux.std(0) + 1e-6
        n_batches = len(train) // cfg.batch_size if len(train) > cfg.batch_size else 1
        if n_batches < self.kwargs["n_critic"]:
            raise ValueError(f"{n_batches} training batch(es) per epoch never reach a generator step "
                             f"(n_critic {self.kwargs['n_critic']}): use a smaller batch_size or more spectra")
        self.module_ = SpectrumWGAN(self.kind, train.flux.shape[1], n_cond=train.cond.shape[1], **self.kwargs)
        result = fit(self.module_, self._standardised(train), self._standardised(val), ckpt_dir, cfg, resume=resume,
                     select_best=False)
        self.history_ = result.history
        return self

    @property
    def input_dim(self) -> int:
        """Width of the latent inputs besides the conditions (codes first for infogan)."""
        return self.module_.latent_dim - self.module_.n_cond

    def draw_inputs(self, n: int, seed: int) -> np.ndarray:
        return self.module_.draw_inputs(n, torch.Generator().manual_seed(seed)).numpy()

    def decode(self, inputs: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """Noiseless normalised spectra for latent inputs (n, input_dim) and standardised conditions (n, n_cond)."""
        m, d = self.module_, inputs.shape[1]
        out = predict_batches(lambda t: m.generate(t[:, :d], t[:, d:]), np.concatenate([inputs, cond], 1))
        return (out * self.std_ + self.mean_).astype(np.float32)

    def sample(self, n: int, cond: np.ndarray, seed: int) -> np.ndarray:
        return self.decode(self.draw_inputs(n, seed), cond)

    def recover_codes(self, flux: np.ndarray) -> np.ndarray:
        """InfoGAN's Q network on (noisy) normalised spectra: the codes it reads from them."""
        if self.module_.q_net is None:
            raise ValueError(f"a {self.kind} has no code network")
        return predict_batches(self.module_.q_net, ((flux - self.mean_) / self.std_).astype(np.float32))
