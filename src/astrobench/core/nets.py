"""Network blocks that several tasks share (images are (B, C, H, W); conditions are (B, D))."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std with the statistics stored as buffers, so a saved state_dict carries them."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU; keeps the spatial size."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
    )


def coordinate_grid(height: int, width: int, device=None) -> torch.Tensor:
    """(2, H, W) pixel-centre coordinates (x = column, y = row) scaled to [-1, 1]."""
    ys = torch.linspace(-1, 1, height, device=device)
    xs = torch.linspace(-1, 1, width, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy])


class AddCoords(nn.Module):
    """Append x and y coordinate channels (CoordConv, Liu et al. 2018): positions become easy to regress."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = coordinate_grid(x.shape[-2], x.shape[-1], x.device).expand(x.shape[0], -1, -1, -1)
        return torch.cat([x, grid], dim=1)


class ConvNet(nn.Module):
    """Conv blocks with 2x2 max pooling between them, then an MLP head on the flattened features.

    Input (B, in_channels, S, S) -> output (B, n_outputs). ``coord_channels`` adds CoordConv channels;
    ``global_pool`` averages the last feature map over positions before the head.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_outputs: int = 2,
        image_size: int = 28,
        widths: Sequence[int] = (32, 64, 128),
        hidden: int = 256,
        coord_channels: bool = False,
        dropout: float = 0.1,
        global_pool: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = [AddCoords()] if coord_channels else []
        c, size = in_channels + (2 if coord_channels else 0), image_size
        for i, w in enumerate(widths):
            layers.append(conv_block(c, w))
            c = w
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        if global_pool:  # translation-invariant features: mean over positions
            layers.append(nn.AdaptiveAvgPool2d(1))
            size = 1
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), mlp([c * size * size, hidden, n_outputs], dropout=dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
