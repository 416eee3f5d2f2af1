"""The rings task's networks: classifier and regressor backbones, and the label -> image generators."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from astrobench.core.nets import ConvNet, Standardize, mlp


def ring_classifier(n_classes: int, image_size: int = 28, widths=(16, 32, 64)) -> ConvNet:
    """CNN: (B, 1, S, S) images in [0, 1] -> (B, n_classes) logits."""
    return ConvNet(1, n_classes, image_size, widths)


def ring_regressor(image_size: int = 28, widths=(16, 32, 64)) -> ConvNet:
    """CoordConv CNN: (B, 1, S, S) images -> (B, 5) standardised x, y, radius, thickness, deformation."""
    return ConvNet(1, 5, image_size, widths, coord_channels=True)


class RingDecoder(nn.Module):
    """[z (latent_dim), labels (x, y, radius, thickness, deformation in pixels)] -> (B, 1, S, S) logits.

    Translation-equivariant by construction: every pixel sees its own offset from the conditioned centre
    (dx, dy and the distance from the ring, in pixels) beside the standardised labels and z; per-pixel layers
    (1x1 convolutions) and one 3x3 convolution for local texture map them to a logit. It is a learned
    network: nothing of the simulator's drawing procedure is inside.
    """

    def __init__(self, latent_dim: int, label_mean, label_std, image_size: int = 28, width: int = 32,
                 depth: int = 3):
        super().__init__()
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.standardize = Standardize(label_mean, label_std)
        # pixel i covers [i, i + 1) in the label coordinates (PIL's convention), so its centre is i + 0.5
        centres = torch.arange(image_size, dtype=torch.float32) + 0.5
        self.register_buffer("cols", centres[None, None, :].expand(1, image_size, image_size).clone())
        self.register_buffer("rows", centres[None, :, None].expand(1, image_size, image_size).clone())
        self.inputs = nn.Conv2d(5 + 3, width, 1)
        # z enters through its own zero-initialised layer: training starts from the pure conditional model and
        # z only gains weight where it explains what the labels do not (else the decoder leans on z for the
        # ring's position, and prior samples misplace rings).
        self.latent_input = nn.Linear(latent_dim, width, bias=False) if latent_dim else None
        if self.latent_input is not None:
            nn.init.zeros_(self.latent_input.weight)
        layers: list[nn.Module] = [nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 1), nn.ReLU()]
        layers += [nn.Conv2d(width, width // 2, 3, padding=1), nn.ReLU(), nn.Conv2d(width // 2, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        z, labels = v[:, : self.latent_dim], v[:, self.latent_dim :]
        s = self.image_size
        dx = self.cols - labels[:, 0, None, None]
        dy = self.rows - labels[:, 1, None, None]
        from_ring = torch.sqrt(dx**2 + dy**2) - labels[:, 2, None, None]
        geometry = torch.stack([dx / s, dy / s, from_ring / 3.0], dim=1)  # (B, 3, S, S), O(1) values
        per_object = self.standardize(labels)[:, :, None, None].expand(-1, -1, s, s)
        h = self.inputs(torch.cat([geometry, per_object], dim=1))
        if self.latent_input is not None:
            h = h + self.latent_input(z)[:, :, None, None]
        return self.net(h)


class RingEncoder(nn.Module):
    """(image, labels) -> (B, 2 * latent_dim): mean and log-variance of the CVAE posterior."""

    def __init__(self, latent_dim: int, label_mean, label_std, image_size: int = 28, widths=(16, 32, 64)):
        super().__init__()
        self.standardize = Standardize(label_mean, label_std)
        self.features = ConvNet(1, 64, image_size, widths, coord_channels=True, dropout=0.0)
        self.head = mlp([64 + 5, 64, 2 * latent_dim])

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([torch.relu(self.features(x)), self.standardize(labels)], dim=1))


class CircleFit:
    """Classical baseline: algebraic least-squares circle fit (Kasa 1976) to the lit pixels of each image.

    ``fit`` only learns the constant offset between the fit and the labels on the training images (the
    pixel convention: the tutorial's PIL drawing truncates coordinates, shifting rings by about half a pixel).
    ``predict`` returns (N, 3) x, y, radius in pixels.
    """

    def __init__(self):
        self.offset_ = None
        self.fallback_ = None

    @staticmethod
    def _raw_fit(images: np.ndarray) -> np.ndarray:
        out = np.full((len(images), 3), np.nan)
        for i, img in enumerate(images):
            rows, cols = np.nonzero(img)
            if len(rows) < 3:
                continue
            design = np.column_stack([cols, rows, np.ones(len(rows))])
            (a, b, c), *_ = np.linalg.lstsq(design, cols**2.0 + rows**2.0, rcond=None)
            cx, cy = a / 2, b / 2
            out[i] = cx, cy, np.sqrt(max(c + cx**2 + cy**2, 0.0))
        return out

    def fit(self, images: np.ndarray, params: np.ndarray) -> CircleFit:
        raw = self._raw_fit(images)
        self.offset_ = np.nanmean(params[:, :3] - raw, axis=0)
        self.fallback_ = np.nanmean(params[:, :3], axis=0)  # the answer for an image without lit pixels
        return self

    def predict(self, images: np.ndarray) -> np.ndarray:
        if self.offset_ is None:
            raise RuntimeError("CircleFit is not fitted")
        pred = self._raw_fit(images) + self.offset_
        return np.where(np.isnan(pred), self.fallback_, pred)
