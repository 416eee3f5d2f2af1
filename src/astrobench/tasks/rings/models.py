"""The rings task's networks: classifier and regressor backbones, and the label -> image generators."""

from __future__ import annotations

import torch
from torch import nn

from astrobench.core.nets import ConvNet, Standardize, SpatialBroadcastDecoder, mlp


def ring_classifier(n_classes: int, image_size: int = 28, widths=(16, 32, 64)) -> ConvNet:
    """CNN: (B, 1, S, S) images in [0, 1] -> (B, n_classes) logits."""
    return ConvNet(1, n_classes, image_size, widths)


def ring_regressor(image_size: int = 28, widths=(16, 32, 64)) -> ConvNet:
    """CoordConv CNN: (B, 1, S, S) images -> (B, 5) standardised x, y, radius, thickness, deformation."""
    return ConvNet(1, 5, image_size, widths, coord_channels=True)


class RingDecoder(nn.Module):
    """[z (latent_dim), labels (5, pixels)] -> (B, 1, S, S) logits; labels are standardised inside."""

    def __init__(self, latent_dim: int, label_mean, label_std, image_size: int = 28, width: int = 32):
        super().__init__()
        self.latent_dim = latent_dim
        self.standardize = Standardize(label_mean, label_std)
        self.net = SpatialBroadcastDecoder(latent_dim + 5, image_size, width, depth=3)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        z, labels = v[:, : self.latent_dim], v[:, self.latent_dim :]
        return self.net(torch.cat([z, self.standardize(labels)], dim=1))


class RingEncoder(nn.Module):
    """(image, labels) -> (B, 2 * latent_dim): mean and log-variance of the CVAE posterior."""

    def __init__(self, latent_dim: int, label_mean, label_std, image_size: int = 28, widths=(16, 32, 64)):
        super().__init__()
        self.standardize = Standardize(label_mean, label_std)
        self.features = ConvNet(1, 64, image_size, widths, coord_channels=True, dropout=0.0)
        self.head = mlp([64 + 5, 64, 2 * latent_dim])

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([torch.relu(self.features(x)), self.standardize(labels)], dim=1))
