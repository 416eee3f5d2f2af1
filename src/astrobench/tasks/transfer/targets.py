"""The transfer targets: what is learnt, from which pre-trained sources, with which backbone.

- ``photoz`` (1-D, regression): the ``photoz`` task's simulated 3D-HST-like catalogue and its ``colors`` features
  (asinh magnitudes, colours, S/N, size); the target is z_spec of galaxies at z >= 1, the ``in_domain`` source
  the galaxies at z < 1 (the issue's "z < 1 -> z > 1"). No ImageNet model reads photometry, so ``imagenet`` does
  not apply. Backbone: an MLP (features -> 128 -> 128).
- ``allsky`` (images, classification): the ``allsky`` task's simulated frames at 64 x 64, three classes. The
  target is a second camera (square 320 x 320 frames, another seed: a different pixel scale and star and noise
  texture), the ``in_domain`` source the default camera's frames (256 x 344). Backbone: torchvision MobileNetV2's
  features with global average pooling (1,280 features). ``imagenet`` reads torchvision's ImageNet weights from a
  local file; ``in_domain`` starts from them and trains on the source camera's frames, as in-domain pre-training
  is done in practice (Walmsley et al.'s Zoobot starts from ImageNet too). The three input channels are the allsky
  loader's stretched mean, stretched maximum and log rate, normalised with ImageNet's channel means and standard
  deviations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from astrobench.core.task import RunContext

TARGETS = ("photoz", "allsky")


@dataclass
class TargetData:
    """A target: a pool to draw training sets from, a fixed test set, and a source set for pre-training."""

    name: str
    kind: str  # "classification" or "regression"
    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_source: np.ndarray
    y_source: np.ndarray
    n_outputs: int
    sources: tuple[str, ...]
    make_backbone: Callable[[], tuple[nn.Module, int]]
    augment: Callable | None = None
    info: dict = field(default_factory=dict)
    pool_ids: np.ndarray | None = None  # positions of the pool and the test set in the target's own data set:
    test_ids: np.ndarray | None = None  # disjoint by construction (checked in the tests)
    make_small: Callable[[], nn.Module] | None = None  # a from-scratch network sized for the data (None: scratch only)
    small_name: str = ""


def metrics(kind: str, y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Test metrics of one cell; ``output`` holds logits/probabilities (classification) or predictions
    (regression, physical units). The first key is the primary metric (lower is better)."""
    from astrobench.core import metrics as M
    from astrobench.tasks.photoz.task import POINT_METRICS

    if kind == "classification":
        accuracy = M.accuracy(y_true, output.argmax(1))
        return {"error_rate": 1 - accuracy, "accuracy": accuracy}
    return {"sigma_nmad": float(POINT_METRICS["sigma_nmad"](y_true, output)),
            "outlier_fraction": float(POINT_METRICS["outlier_frac"](y_true, output)), "rmse": M.rmse(y_true, output)}


PRIMARY = {"classification": "error_rate", "regression": "sigma_nmad"}


# --- photoz -----------------------------------------------------------------------------------------------------

class MLPBackbone(nn.Sequential):
    def __init__(self, n_in: int, width: int = 128):
        super().__init__(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())


def photoz_target(ctx: RunContext, pool_size: int, n_test: int) -> TargetData:
    from astrobench.tasks.photoz.data import FeatureTransform, hello_universe_rows
    from astrobench.tasks.photoz.task import load_for_run

    opts = ctx.options
    cat = load_for_run(ctx)
    rows = hello_universe_rows(cat)
    z = cat["z_spec"][rows]
    source_rows, target_rows = rows[z < opts["z_split"]], rows[z >= opts["z_split"]]
    # the feature scales (asinh softenings) come from the source galaxies: the pre-trained model's view of the data
    transform = FeatureTransform.fit(cat, source_rows, "colors")
    x_all, names = transform.transform(cat, rows)
    # missing bands are NaN: median-imputed and standardised with the source galaxies' statistics (the networks
    # and the frozen-feature models need finite inputs; the missing-band flags stay among the features)
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source_idx = np.flatnonzero(z < opts["z_split"])
    scaler = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
    x_all = scaler.fit(x_all[source_idx]).transform(x_all).astype(np.float32)
    rng = np.random.default_rng([ctx.seed, 47])
    target_idx = rng.permutation(np.flatnonzero(z >= opts["z_split"]))
    if len(target_idx) < n_test + pool_size:
        from astrobench.core.io import ConfigError

        raise ConfigError(f"option sizes: the pool of {pool_size} galaxies (4 x the largest size) and the test set "
                          f"({n_test}) need {n_test + pool_size} galaxies at z >= {opts['z_split']}, the catalogue "
                          f"has {len(target_idx)}; lower sizes or raise n_galaxies")
    test, pool = target_idx[:n_test], target_idx[n_test:n_test + pool_size]
    info = {"n_source": len(source_rows), "n_target_available": len(target_rows), "n_pool": len(pool),
            "n_test": len(test), "features": len(names), "z_split": opts["z_split"]}
    n_in = x_all.shape[1]
    return TargetData("photoz", "regression", x_all[pool], z[pool], x_all[test], z[test], x_all[source_idx],
                      z[source_idx], 1, ("in_domain",), lambda: (MLPBackbone(n_in), 128), None, info,
                      pool_ids=pool, test_ids=test)


# --- allsky -----------------------------------------------------------------------------------------------------

class MobileNetBackbone(nn.Module):
    """MobileNetV2 features (ImageNet-normalised 3-channel input) + global average pooling -> 1,280 features."""

    def __init__(self, weights=None):
        super().__init__()
        from torchvision.models import mobilenet_v2

        from astrobench.tasks.allsky.models import IMAGENET_MEAN, IMAGENET_STD

        net = mobilenet_v2(weights=None)
        if weights is not None:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.features = net.features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x):
        return self.features((x - self.mean) / self.std).mean((2, 3))


TARGET_CAMERA_SHAPE = (320, 320)


def small_cnn(n_outputs: int, image_size: int) -> nn.Module:
    """The from-scratch network sized for 64-pixel frames: the allsky task's own CNN (four conv blocks of 16-64
    channels, 0.4 M parameters at 64 px, against MobileNetV2's 2.2 M) with a plain class head."""
    from astrobench.core.nets import ConvNet

    return ConvNet(in_channels=3, n_outputs=n_outputs, image_size=image_size, widths=(16, 32, 64, 64), hidden=256,
                   dropout=0.2)


def allsky_target(ctx: RunContext, pool_size: int, n_test: int) -> TargetData:
    from astrobench.core.training import random_d4
    from astrobench.tasks.allsky.task import simulated_frames

    opts = ctx.options
    source = simulated_frames(ctx, opts["n_source_frames"], ctx.seed, camera="fixed")
    target = simulated_frames(ctx, pool_size + n_test, ctx.seed + 500, camera={"shape": list(TARGET_CAMERA_SHAPE)})
    order = np.random.default_rng([ctx.seed, 53]).permutation(len(target))
    test, pool = order[:n_test], order[n_test:]
    info = {"n_source": len(source), "n_pool": len(pool), "n_test": len(test), "classes": target.class_names,
            "source_camera": "256 x 344 (allsky default)", "target_camera": "320 x 320, another seed",
            "image_px": int(target.images.shape[-1])}
    n_classes, size = len(target.class_names), int(target.images.shape[-1])
    return TargetData("allsky", "classification", target.images[pool], target.labels[pool], target.images[test],
                      target.labels[test], source.images, source.labels, n_classes,
                      ("imagenet", "in_domain"), lambda: (MobileNetBackbone(), 1280), random_d4, info,
                      pool_ids=pool, test_ids=test, make_small=lambda: small_cnn(n_classes, size),
                      small_name="allsky CNN")
