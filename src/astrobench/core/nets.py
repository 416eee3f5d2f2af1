"""Network blocks that several tasks share (images are (B, C, H, W); conditions are (B, D))."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
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


# --- D4 group convolutions (Cohen & Welling 2016): exact on the pixel grid, no dependency -------------------
#
# D4 is the symmetry group of the square: 4 rotations by 90 degrees, each with or without a mirror flip.
# Element g = 4 * flip + quarter_turns acts on an image by an optional left-right flip, then the rotation.
# Feature maps of a group-convolutional layer are (B, C, 8, H, W): one copy per group element.

D4_ORDER = 8


def d4_transform(x: torch.Tensor, g: int) -> torch.Tensor:
    """Apply D4 element ``g`` to the last two (square) dimensions of ``x``."""
    flip, quarter_turns = divmod(int(g), 4)
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, quarter_turns, dims=(-2, -1))


def _d4_tables() -> tuple[list[list[int]], list[int]]:
    """Multiplication table ``mul[a][b]`` (apply b, then a) and inverses, read off an asymmetric test image."""
    probe = torch.arange(9.0).reshape(3, 3)
    images = [d4_transform(probe, g) for g in range(D4_ORDER)]
    mul = [[next(c for c in range(D4_ORDER) if torch.equal(d4_transform(images[b], a), images[c]))
            for b in range(D4_ORDER)] for a in range(D4_ORDER)]
    inv = [next(b for b in range(D4_ORDER) if mul[a][b] == 0) for a in range(D4_ORDER)]
    return mul, inv


D4_MUL, D4_INV = _d4_tables()


class D4LiftingConv(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, 8, H, W): the same filter in all 8 orientations ('same' padding)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("D4 convolutions need an odd kernel size (a centre pixel)")
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_out, c_in, k, _ = self.weight.shape
        filters = torch.stack([d4_transform(self.weight, g) for g in range(D4_ORDER)], dim=1)  # (C_out, 8, C_in, k, k)
        bias = None if self.bias is None else self.bias.repeat_interleave(D4_ORDER)
        out = F.conv2d(x, filters.reshape(c_out * D4_ORDER, c_in, k, k), bias, padding=k // 2)
        return out.unflatten(1, (c_out, D4_ORDER))


class D4GroupConv(nn.Module):
    """(B, C_in, 8, H, W) -> (B, C_out, 8, H, W), equivariant: out(g) = sum_h f(h) * T_g W(g^-1 h)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("D4 convolutions need an odd kernel size (a centre pixel)")
        self.weight = nn.Parameter(torch.empty(c_out, c_in, D4_ORDER, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        # index[g][h] = g^-1 h: which of the filter's group slices meets input slice h for output element g
        self.register_buffer("index", torch.tensor([[D4_MUL[D4_INV[g]][h] for h in range(D4_ORDER)]
                                                    for g in range(D4_ORDER)]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_out, c_in, _, k, _ = self.weight.shape
        filters = torch.stack([d4_transform(self.weight[:, :, self.index[g]], g) for g in range(D4_ORDER)], dim=1)
        bias = None if self.bias is None else self.bias.repeat_interleave(D4_ORDER)
        out = F.conv2d(x.flatten(1, 2), filters.reshape(c_out * D4_ORDER, c_in * D4_ORDER, k, k), bias,
                       padding=k // 2)
        return out.unflatten(1, (c_out, D4_ORDER))


class D4MaxPool(nn.Module):
    """2x2 max pooling of every group slice; equivariant for even image sizes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x.flatten(1, 2), 2).unflatten(1, x.shape[1:3])


class GroupSpatialMean(nn.Module):
    """(B, C, 8, H, W) -> (B, C): the mean over group elements and positions, invariant under D4."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


def d4_features(in_channels: int, widths: Sequence[int], batch_norm: bool = True,
                pool_after_last: bool = False) -> nn.Sequential:
    """D4-invariant features (B, in_channels, S, S) -> (B, widths[-1]): a lifting convolution, then group
    convolutions, each followed by (batch norm and) ReLU, with 2x2 max pooling between them (and after the last
    with ``pool_after_last``), then :class:`GroupSpatialMean`. Batch norm shares its statistics over the group
    axis, which keeps it equivariant; without it the convolutions carry biases."""
    layers: list[nn.Module] = []
    c = in_channels
    for i, w in enumerate(widths):
        layers.append(D4LiftingConv(c, w, bias=not batch_norm) if i == 0 else D4GroupConv(c, w, bias=not batch_norm))
        layers += [nn.BatchNorm3d(w), nn.ReLU()] if batch_norm else [nn.ReLU()]
        if i < len(widths) - 1 or pool_after_last:
            layers.append(D4MaxPool())
        c = w
    return nn.Sequential(*layers, GroupSpatialMean())


class D4ConvNet(nn.Module):
    """D4-invariant CNN: lifting conv, group convs with max pooling, then a mean over group and positions.

    Input (B, in_channels, S, S), S divisible by 2^(len(widths) - 1); output (B, n_outputs), unchanged (to
    float rounding) when the input is rotated by 90 degrees or flipped. Batch norm shares its statistics over
    the group axis, which keeps it equivariant.
    """

    def __init__(self, in_channels: int = 1, n_outputs: int = 1, widths: Sequence[int] = (6, 12, 24),
                 head: Sequence[int] = (200, 100, 20), dropout: float = 0.1):
        super().__init__()
        self.features = d4_features(in_channels, widths)
        self.head = nn.Sequential(nn.Dropout(dropout), mlp([widths[-1], *head, n_outputs], dropout=dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
