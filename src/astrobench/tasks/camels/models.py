"""The CMD benchmark network (Villaescusa-Navarro et al. 2022, CMD paper; their ``model_o3_err``), sized for
any power-of-two map: blocks of two 3x3 circular-padded convolutions and a 2x2 stride-2 convolution, each with
BatchNorm and LeakyReLU(0.2), doubling the channels while halving the map, down to 4x4; a 4x4 convolution to
one pixel; two fully connected layers with dropout. It returns a mean and a log-sigma per parameter, trained with
the moment loss (Jeffrey & Wandelt 2020) in :class:`~astrobench.core.training.RegressionTask`."""

from __future__ import annotations

import math

from torch import nn


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    act = nn.LeakyReLU(0.2)
    return [nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="circular", bias=True), nn.BatchNorm2d(c_out), act,
            nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="circular", bias=True), nn.BatchNorm2d(c_out), act,
            nn.Conv2d(c_out, c_out, 2, stride=2, bias=True), nn.BatchNorm2d(c_out), act]


def cmd_cnn(in_channels: int, map_size: int, hidden: int = 8, n_params: int = 6, dropout: float = 0.2) -> nn.Module:
    """The benchmark network for (B, in_channels, map_size, map_size) maps; output (B, 2 n_params)."""
    if map_size < 8 or map_size & (map_size - 1):
        raise ValueError(f"map_size must be a power of two >= 8, got {map_size}")
    n_blocks = int(math.log2(map_size)) - 2  # down to 4x4
    layers: list[nn.Module] = []
    c_in, c = in_channels, 2 * hidden
    for _ in range(n_blocks):
        layers += _block(c_in, c)
        c_in, c = c, 2 * c
    layers += [nn.Conv2d(c_in, c, 4), nn.BatchNorm2d(c), nn.LeakyReLU(0.2), nn.Flatten(), nn.Dropout(dropout),
               nn.Linear(c, c // 2), nn.LeakyReLU(0.2), nn.Dropout(dropout), nn.Linear(c // 2, 2 * n_params)]
    return nn.Sequential(*layers)
