"""Mass estimators of the cluster_mass task: the Ntampaka et al. 2019 CNN, a D4-invariant CNN and two
luminosity-mass estimators (aperture counts -> mass by a fitted power law)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from astrobench.core.nets import d4_features, mlp
from astrobench.tasks.cluster_mass.simulate import CORE_RADIUS, r500_kpc

CORE_EXCISED_APERTURE = (CORE_RADIUS, 1.0)  # R500 (Pratt et al. 2009; Maughan 2007)


class Log1p(nn.Module):
    """log(1 + counts): the networks read raw photon counts and see them on a log scale."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x.clamp_min(0.0))


def _ntampaka_head(c_in: int, dropout: float) -> list[nn.Module]:
    """Dropout-Dense(200)-Dropout-Dense(100)-Dense(20)-Dense(1) on globally pooled features."""
    return [nn.Dropout(dropout), nn.Linear(c_in, 200), nn.ReLU(), nn.Dropout(dropout), *mlp([200, 100, 20, 1])]


def ntampaka_cnn(dropout: float = 0.1) -> nn.Sequential:
    """Ntampaka et al. 2019 (the school notebook): Conv(16)-Pool-Conv(32)-Pool-Conv(64)-Pool-GlobalAvgPool-
    Dropout-Dense(200)-Dropout-Dense(100)-Dense(20)-Dense(1), 3x3 kernels, ReLU. Input (B, 1, S, S) counts."""
    layers: list[nn.Module] = [Log1p()]
    c = 1
    for width in (16, 32, 64):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), *_ntampaka_head(c, dropout))


def d4_cnn(widths: Sequence[int] = (6, 12, 24), dropout: float = 0.1) -> nn.Sequential:
    """The Ntampaka CNN with every convolution replaced by a D4 group convolution (lifting, then group-to-group;
    each filter in its 8 rotated/flipped copies) and the global average pool taken over group and positions, so
    the output is D4-invariant by construction. Nothing else differs (no batch norm, the same pools, dropout and
    head); widths (6, 12, 24) give about as many parameters as :func:`ntampaka_cnn` (53k vs 58k)."""
    features = d4_features(1, widths, batch_norm=False, pool_after_last=True)
    return nn.Sequential(Log1p(), *features, *_ntampaka_head(widths[-1], dropout))


def n_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def radius_map(image_size: int) -> np.ndarray:
    """(S, S) distance of each pixel centre from the image centre, in pixels."""
    c = (image_size - 1) / 2.0
    y, x = np.mgrid[:image_size, :image_size]
    return np.hypot(x - c, y - c)


class ApertureMass:
    """log10 M500 from background-subtracted counts in an aperture around the image centre, by a power law
    log M = a + b log10(counts) fitted to training images (the classical luminosity-mass estimator).

    ``aperture="total"``: the largest circle inside the image. ``aperture="core_excised"``: the annulus
    0.15-1 R500 (the part inside the image), with R500 iterated from the mass estimate: start from the
    total-aperture mass, then repeat counts(R500) -> mass -> R500 until it settles (Pratt et al. 2009;
    Ntampaka et al. 2019's comparison). Training uses the true R500.
    """

    def __init__(self, aperture: str, pixel_kpc: float, background_per_pixel: float, redshift: float,
                 n_iter: int = 30):
        if aperture not in ("total", "core_excised"):
            raise ValueError(f"unknown aperture {aperture!r}")
        self.aperture = aperture
        self.pixel_kpc = pixel_kpc
        self.background_per_pixel = background_per_pixel
        self.redshift = redshift
        self.n_iter = n_iter

    def _counts(self, images: np.ndarray, r500_px: np.ndarray | None) -> np.ndarray:
        r = radius_map(images.shape[-1])
        if self.aperture == "total":
            masks = np.broadcast_to(r <= images.shape[-1] / 2.0, images.shape)
        else:
            lo, hi = CORE_EXCISED_APERTURE
            rr = r[None] / r500_px[:, None, None]
            masks = (rr >= lo) & (rr <= hi)
        net = (images * masks).sum(axis=(1, 2)) - self.background_per_pixel * masks.sum(axis=(1, 2))
        return np.log10(np.clip(net, 1.0, None))

    def _r500_px(self, log_m: np.ndarray) -> np.ndarray:
        return r500_kpc(log_m, self.redshift) / self.pixel_kpc

    def fit(self, images: np.ndarray, log_m500: np.ndarray) -> ApertureMass:
        if self.aperture == "core_excised":
            self.start_ = ApertureMass("total", self.pixel_kpc, self.background_per_pixel, self.redshift)
            self.start_.fit(images, log_m500)
        log_c = self._counts(images, self._r500_px(log_m500) if self.aperture == "core_excised" else None)
        self.slope_, self.intercept_ = np.polyfit(log_c, log_m500, 1)
        return self

    def predict(self, images: np.ndarray) -> np.ndarray:
        """log10 M500 per image; for ``core_excised`` also sets ``unconverged_``: images whose R500 iteration
        still moved by more than 1e-3 dex after ``n_iter`` damped steps (pixels enter and leave the annulus one at
        a time, so small images can hop between two neighbouring estimates)."""
        if self.aperture == "total":
            return self.intercept_ + self.slope_ * self._counts(images, None)
        log_m = self.start_.predict(images)
        for _ in range(self.n_iter):
            new = self.intercept_ + self.slope_ * self._counts(images, self._r500_px(log_m))
            step = np.abs(new - log_m)
            if step.max() < 1e-5:
                break
            log_m = 0.5 * (log_m + new)  # damped: the annulus moves with the estimate
        self.unconverged_ = int((step > 1e-3).sum())
        return new


class CNNPredictor:
    """A trained :class:`~astrobench.core.training.RegressionTask` as a function (N, S, S) counts -> log10 M."""

    def __init__(self, module):
        self.module = module.eval()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        from astrobench.core.training import predict_batches

        return predict_batches(lambda x: self.module.predict_physical(x)[0], images[:, None])[:, 0]

    def saliency(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """|d log10 M / d log(1 + counts)| per pixel (Simonyan et al. 2014) for (N, S, S) count images."""
        backbone = self.module.backbone
        if not isinstance(backbone[0], Log1p):
            raise TypeError("saliency expects a network whose first layer is Log1p")
        maps = []
        for start in range(0, len(images), batch_size):
            x = torch.log1p(torch.as_tensor(images[start:start + batch_size, None], dtype=torch.float32))
            x.requires_grad_(True)
            backbone[1:](x).sum().backward()  # gradients with respect to the log image
            maps.append(x.grad.abs()[:, 0].numpy() * float(self.module.target_std))
        return np.concatenate(maps)
