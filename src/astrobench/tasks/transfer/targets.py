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
- ``camels`` (images, regression; opt in with ``--set targets=[...]``): Omega_m from a CAMELS-like total-matter map
  (the ``camels`` task's simulator and loader). The target suite is IllustrisTNG, the ``in_domain`` source the
  SIMBA suite's maps (pre-trained on their Omega_m, starting from ImageNet), and ``imagenet`` applies. One example
  is one *simulation*: its ``camels_maps_per_sim`` maps share its Omega_m, so training sizes, validation splits and
  the test set are drawn by simulation, never by map (maps of one simulation are not independent). Input: log10
  Mtot standardised with the source suite's pixels, repeated on the three channels. From-scratch small network:
  the camels task's CMD network (Villaescusa-Navarro et al. 2022) with a single-value head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from astrobench.core.nets import MobileNetBackbone
from astrobench.core.task import RunContext

TARGETS = ("photoz", "allsky", "camels")
DEFAULT_TARGETS = ("photoz", "allsky")  # camels: opt in (its simulations cost minutes; RESULTS.md)


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
    primary: str = ""  # the metric the answers use (lower is better); default by kind
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None  # default: metrics(kind, ...)
    group_size: int = 1  # rows of x / y per example (camels: the maps of one simulation, consecutive)
    unit: str = "examples"

    def __post_init__(self):
        self.primary = self.primary or PRIMARY[self.kind]

    @property
    def n_pool(self) -> int:
        """Examples in the pool (a training-set size n counts these)."""
        return len(self.y_pool) // self.group_size

    def rows(self, examples: np.ndarray) -> np.ndarray:
        """The rows of x / y of the given examples (positions in the pool or the source set)."""
        return example_rows(examples, self.group_size)

    def evaluate(self, output: np.ndarray) -> dict[str, float]:
        """Test metrics of the outputs on ``x_test`` (the first key is ``primary``)."""
        return self.score(self.y_test, output) if self.score else metrics(self.kind, self.y_test, output)


def example_rows(examples: np.ndarray, group_size: int) -> np.ndarray:
    """Rows ``e * group_size ... e * group_size + group_size - 1`` of every example ``e``, in order."""
    return (np.asarray(examples)[:, None] * group_size + np.arange(group_size)).ravel()


def metrics(kind: str, y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Test metrics of one cell; ``output`` holds logits/probabilities (classification) or predictions
    (regression, physical units). The first key is the primary metric (lower is better)."""
    from astrobench.core import metrics as M

    if kind == "classification":
        accuracy = M.accuracy(y_true, output.argmax(1))
        return {"error_rate": 1 - accuracy, "accuracy": accuracy}
    z = M.REDSHIFT_POINT_METRICS
    return {"sigma_nmad": float(z["sigma_nmad"](y_true, output)),
            "outlier_fraction": float(z["outlier_frac"](y_true, output)), "rmse": M.rmse(y_true, output)}


PRIMARY = {"classification": "error_rate", "regression": "sigma_nmad"}


# --- photoz -----------------------------------------------------------------------------------------------------

class MLPBackbone(nn.Sequential):
    def __init__(self, n_in: int, width: int = 128):
        super().__init__(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())


def photoz_target(ctx: RunContext, pool_size: int, n_test: int) -> TargetData:
    from astrobench.core.task import simulated
    from astrobench.tasks.photoz import FeatureTransform, catalogue_simulation, hello_universe_rows, read_catalogue

    opts = ctx.options
    path = simulated(catalogue_simulation(opts["n_galaxies"], opts["n_templates"], ctx.seed, opts["n_jobs"]))
    ctx.data_info.setdefault("simulated", {})["photoz_catalogue"] = str(path)
    cat = read_catalogue(path)
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

TARGET_CAMERA_SHAPE = (320, 320)


def mobilenet_backbone() -> tuple[nn.Module, int]:
    """A MobileNetV2 backbone with random weights (the pre-trained ones are loaded per strategy) and its width."""
    return MobileNetBackbone(), MobileNetBackbone.feature_dim


def small_cnn(n_outputs: int, image_size: int) -> nn.Module:
    """The from-scratch network sized for 64-pixel frames: the allsky task's own CNN (four conv blocks of 16-64
    channels, 0.4 M parameters at 64 px, against MobileNetV2's 2.2 M) with a plain class head."""
    from astrobench.core.nets import ConvNet

    return ConvNet(in_channels=3, n_outputs=n_outputs, image_size=image_size, widths=(16, 32, 64, 64), hidden=256,
                   dropout=0.2)


def allsky_target(ctx: RunContext, pool_size: int, n_test: int) -> TargetData:
    from astrobench.core.training import random_d4
    from astrobench.tasks.allsky import simulated_frames

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
                      ("imagenet", "in_domain"), mobilenet_backbone, random_d4, info,
                      pool_ids=pool, test_ids=test, make_small=lambda: small_cnn(n_classes, size),
                      small_name="allsky CNN")


# --- camels -----------------------------------------------------------------------------------------------------

def camels_metrics(y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Omega_m per test map: mean relative error (the CMD paper's metric), r2 and rmse."""
    from astrobench.core import metrics as M

    return {"rel_err": float(np.mean(np.abs(output - y_true) / np.abs(y_true))), "r2": M.r2(y_true, output),
            "rmse": M.rmse(y_true, output)}


def camels_cnn(map_size: int) -> nn.Module:
    """The camels task's CMD network (3 input channels, hidden 4) with one output (Omega_m) instead of a mean and
    a log-sigma per parameter: trained with the same loss as every other transfer cell."""
    from astrobench.tasks.camels import cmd_cnn

    net = cmd_cnn(3, map_size, hidden=4, n_params=1)
    net[-1] = nn.Linear(net[-1].in_features, 1)
    return net


def camels_target(ctx: RunContext, pool_size: int, n_test: int) -> TargetData:
    """``pool_size`` + ``n_test`` IllustrisTNG simulations (the target) and as many SIMBA ones (the source)."""
    from astrobench.core.training import random_d4
    from astrobench.tasks.camels import MAPS_PER_SIM, channel_values, load_camels, simulated_folder

    opts = ctx.options
    k, size = opts["camels_maps_per_sim"], opts["camels_map_size"]
    folder = simulated_folder(pool_size + n_test, size, ctx.seed, opts["n_jobs"], ctx.progress)
    suites = load_camels(folder)
    picked = np.arange(0, MAPS_PER_SIM, MAPS_PER_SIM // k)[:k]  # spread over the three projection axes

    def maps(suite) -> np.ndarray:
        rows = (np.arange(suite.n_sims)[:, None] * MAPS_PER_SIM + picked).ravel()
        return channel_values(suite, "mtot", rows)

    source_maps, target_maps = maps(suites["simba"]), maps(suites["tng"])
    mu, sd = float(source_maps.mean()), float(source_maps.std())

    def inputs(log_maps: np.ndarray) -> np.ndarray:  # standardised, then on ImageNet's scale, on three channels
        x = 0.45 + 0.225 * (log_maps - mu) / sd
        return np.repeat(x[:, None], 3, axis=1).astype(np.float32)

    def omega_m(suite) -> np.ndarray:
        return np.repeat(suite.params[:, 0], k).astype(np.float32)

    order = np.random.default_rng([ctx.seed, 59]).permutation(suites["tng"].n_sims)
    test, pool = order[:n_test], order[n_test:]
    x_target, y_target = inputs(target_maps), omega_m(suites["tng"])
    pool_rows, test_rows = example_rows(pool, k), example_rows(test, k)
    info = {"n_source_sims": suites["simba"].n_sims, "n_pool_sims": len(pool), "n_test_sims": len(test),
            "maps_per_sim": k, "map_px": size, "target_suite": "IllustrisTNG", "source_suite": "SIMBA",
            "folder": str(folder)}
    return TargetData("camels", "regression", x_target[pool_rows], y_target[pool_rows], x_target[test_rows],
                      y_target[test_rows], inputs(source_maps), omega_m(suites["simba"]), 1,
                      ("imagenet", "in_domain"), mobilenet_backbone, random_d4, info,
                      pool_ids=pool, test_ids=test, make_small=lambda: camels_cnn(size), small_name="CMD CNN",
                      primary="rel_err", score=camels_metrics, group_size=k, unit=f"simulations ({k} maps each)")
