"""Sky-condition classifiers: one Lightning module for the two networks (frame class + 33 sub-region flags), the
networks (a small CNN; MobileNetV2 from ImageNet weights read from a local file), and Mommert's feature boosting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from astrobench.core import nets
from astrobench.core.nets import D4_ORDER, IMAGENET_MEAN, IMAGENET_STD, ConvNet, d4_transform
from astrobench.core.training import TaskModule
from astrobench.tasks.allsky.data import subregion_feature_rows
from astrobench.tasks.allsky.geometry import N_SUBREGIONS, d4_subregion_permutations


class SkyConditionTask(TaskModule):
    """Batches (x, label, flags); the backbone returns (B, n_classes + 33) logits: the frame's class, then one per
    sub-region. Loss: cross-entropy + ``flag_weight`` x binary cross-entropy over frames that have flags (rows of
    NaN flags are skipped).

    With ``d4`` each training image is rotated or flipped at random and its 33 flags permuted to match: the label
    rule is the same for every orientation of the sky, and the ring/sector grid maps onto itself exactly.
    """

    def __init__(self, backbone: nn.Module, n_classes: int, flag_weight: float = 1.0, lr: float = 1e-3,
                 weight_decay: float = 1e-4, d4: bool = True):
        super().__init__(lr, weight_decay)
        self.save_hyperparameters(ignore=["backbone"])  # its weights are in the state dict
        self.backbone = backbone
        self.n_classes = n_classes
        self.flag_weight = flag_weight
        self.d4 = d4
        self.register_buffer("perms", torch.as_tensor(d4_subregion_permutations()), persistent=False)

    def forward(self, x):
        return self.backbone(x)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if not (self.d4 and self.trainer.training):
            return batch
        x, y, flags = batch
        x, flags = self.random_view(x, flags)
        return [x, y, flags]

    def random_view(self, x: torch.Tensor, flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image under a random one of the 8 rotations and flips, its 33 flags permuted to match."""
        element = torch.randint(0, D4_ORDER, (x.shape[0],), device=x.device)
        x, flags = x.clone(), flags.clone()
        for g in range(1, D4_ORDER):
            chosen = element == g
            if chosen.any():
                x[chosen] = d4_transform(x[chosen], g)
                moved = torch.empty_like(flags[chosen])
                moved[:, self.perms[g]] = flags[chosen]
                flags[chosen] = moved
        return x, flags

    def loss(self, batch):
        x, y, flags = batch
        return self.output_loss(self(x), y, flags)

    def output_loss(self, out: torch.Tensor, y: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """The loss of network outputs ``out`` against classes ``y`` and flags (rows of NaN flags skipped)."""
        loss = F.cross_entropy(out[:, : self.n_classes], y)
        has = ~torch.isnan(flags).any(dim=1)
        if has.any() and self.flag_weight > 0:
            loss = loss + self.flag_weight * F.binary_cross_entropy_with_logits(out[has, self.n_classes:], flags[has])
        return loss

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """(B, n_classes + 33): class probabilities, then flag probabilities; with ``tta`` averaged over the 8
        rotations and flips (each view's flags mapped back to the original sub-regions)."""
        views = range(D4_ORDER) if tta else [0]
        total = 0
        for g in views:
            out = self(d4_transform(x, g))
            probs = torch.cat([torch.softmax(out[:, : self.n_classes], 1), torch.sigmoid(out[:, self.n_classes:])], 1)
            flags = probs[:, self.n_classes:][:, self.perms[g]]  # view sub-region perm[g, k] is original k
            total = total + torch.cat([probs[:, : self.n_classes], flags], 1)
        return total / len(views)


def sky_cnn(n_classes: int, image_size: int, widths=(16, 32, 64, 64), hidden: int = 256) -> ConvNet:
    """The from-scratch network: conv blocks with max pooling, flattened (positions matter for the 33 flags)."""
    return ConvNet(in_channels=3, n_outputs=n_classes + N_SUBREGIONS, image_size=image_size, widths=widths,
                   hidden=hidden, dropout=0.2)


def imagenet_weights_path(explicit: str | None = None) -> Path:
    """The local ImageNet MobileNetV2 weights file (:func:`astrobench.core.nets.imagenet_weights_path`)."""
    return nets.imagenet_weights_path(explicit, without="--set methods=[cnn,features_gbm] runs without it")


class MobileNetSky(nn.Module):
    """torchvision MobileNetV2 (ImageNet features) with a head that keeps positions for the 33 flags.

    Input (B, 3, S, S) in [0, 1] (stretched block mean, stretched block maximum, log rate) as the three ImageNet
    channels, upsampled to ``input_px`` when it differs and normalised with ImageNet's mean and std; the last
    feature map (1280 channels, input_px / 32 across) is reduced to 64 channels by a 1x1 convolution and flattened
    into the linear head.
    """

    def __init__(self, n_outputs: int, weights: str | Path | None = None, input_px: int = 96):
        super().__init__()
        self.features = nets.mobilenet_v2_features(weights)
        self.input_px = input_px
        side = -(-input_px // 32)
        self.head = nn.Sequential(nn.Conv2d(1280, 64, 1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(64 * side * side, n_outputs))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_px:
            x = F.interpolate(x, size=self.input_px, mode="bilinear", align_corners=False)
        return self.head(self.features((x - self.mean) / self.std))


class FeatureGBM:
    """Mommert (2020)'s classic method: gradient boosting on hand-made features (scikit-learn's histogram boosting,
    LightGBM's algorithm). One model per frame for the class (all 33 x 4 features), one per sub-region row for the
    flags (its own features, ring and sector, and the frame's means), as cloudynight trains it."""

    def __init__(self, max_iter: int = 300, learning_rate: float = 0.1, seed: int = 0):
        self.max_iter, self.learning_rate, self.seed = max_iter, learning_rate, seed
        self.frame_model = self.flag_model = None
        self.n_classes = 0

    def _booster(self):
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=self.max_iter, learning_rate=self.learning_rate,
                                              early_stopping=True, validation_fraction=0.1, n_iter_no_change=20,
                                              random_state=self.seed)

    def fit(self, features: np.ndarray, labels: np.ndarray, flags: np.ndarray, n_classes: int) -> FeatureGBM:
        self.n_classes = n_classes
        self.frame_model = self._booster().fit(features, labels)
        has = ~np.isnan(flags).any(axis=1)
        if has.any():
            rows = subregion_feature_rows(features[has])
            self.flag_model = self._booster().fit(rows.reshape(-1, rows.shape[-1]), flags[has].ravel().astype(int))
        return self

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, n_classes + 33) like :meth:`SkyConditionTask.probabilities` (flags NaN without a flag model)."""
        class_probs = np.zeros((len(features), self.n_classes))
        class_probs[:, self.frame_model.classes_] = self.frame_model.predict_proba(features)
        if self.flag_model is None:
            flag_probs = np.full((len(features), N_SUBREGIONS), np.nan)
        else:
            rows = subregion_feature_rows(features)
            p = self.flag_model.predict_proba(rows.reshape(-1, rows.shape[-1]))
            classes = list(self.flag_model.classes_)  # a training set without any cloudy sub-region has only 0
            flag_probs = (p[:, classes.index(1)] if 1 in classes else np.zeros(len(p))).reshape(-1, N_SUBREGIONS)
        return np.concatenate([class_probs, flag_probs], axis=1)
