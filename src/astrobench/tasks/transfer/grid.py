"""One cell of the transfer grid: a strategy trained on ``n`` target examples with one seed, scored on the target's
test set.

Strategies (``STRATEGIES``):

- ``scratch``: the architecture with random weights, every layer trained;
- ``linear_probe``: the pre-trained backbone frozen; a linear model on its features (logistic regression or ridge,
  scikit-learn, regularisation chosen by internal cross-validation on the ``n`` examples);
- ``finetune``: the pre-trained backbone and a new head, every layer trained with one learning rate;
- ``finetune_discriminative``: the same with the backbone's learning rate ``backbone_lr_factor`` times smaller
  (Howard & Ruder 2018);
- ``frozen_knn``: no training at all: the pre-trained features and k nearest neighbours (the "use it directly"
  question).

Trained strategies are trained to convergence by :func:`astrobench.core.training.fit_small` (the transfer task
calls it; it holds out part of each cell's examples and stops on their validation loss). ``train_steps`` below is a
fixed number of optimiser steps: the allsky task's few-shot adaptation on ten real frames uses it, where no
validation split can be spared.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from astrobench.core.training import param_groups, small_data_loss

STRATEGIES = ("scratch", "linear_probe", "finetune", "finetune_discriminative", "frozen_knn")
TRAINED = ("scratch", "finetune", "finetune_discriminative")
FEATURE_BASED = ("linear_probe", "frozen_knn")


@dataclass
class StepConfig:
    steps: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_factor: float = 0.1
    weight_decay: float = 1e-4


class Predictor(nn.Module):
    """A backbone (features, ``feature_dim`` wide) and a linear head."""

    def __init__(self, backbone: nn.Module, feature_dim: int, n_outputs: int):
        super().__init__()
        self.backbone, self.head = backbone, nn.Linear(feature_dim, n_outputs)

    def forward(self, x):
        return self.head(self.backbone(x))


def train_steps(model: nn.Module, x: np.ndarray, y: np.ndarray, kind: str, cfg: StepConfig, seed: int,
                backbone_lr_factor: float = 1.0, augment: Callable | None = None, loss: Callable | None = None,
                augment_pair: Callable | None = None, freeze_norm: bool = False) -> nn.Module:
    """``cfg.steps`` AdamW steps on minibatches drawn with replacement-free reshuffles of (x, y); returns the model in
    eval mode. ``backbone_lr_factor`` scales the backbone's learning rate (1: plain fine-tuning) of a model with a
    ``backbone`` and a ``head``; any other model trains all its parameters at ``cfg.lr``. ``loss(out, y)`` replaces
    the kind's loss; ``augment(x)`` or ``augment_pair(x, y)`` transform each batch; ``freeze_norm`` keeps batch-norm
    statistics as they are (a few-shot set is too small to re-estimate them)."""
    torch.manual_seed(seed)
    gen = np.random.default_rng([seed, 43])
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, backbone_lr_factor), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    loss = loss or small_data_loss(kind)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    batch = min(cfg.batch_size, len(x))
    order = np.empty(0, dtype=np.int64)
    model.train()
    if freeze_norm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    for _ in range(cfg.steps):
        if len(order) < batch:
            order = np.r_[order, gen.permutation(len(x))]
        idx, order = order[:batch], order[batch:]
        xb, yb = xt[idx], yt[idx]
        if augment is not None:
            xb = augment(xb)
        if augment_pair is not None:
            xb, yb = augment_pair(xb, yb)
        opt.zero_grad()
        value = loss(model(xb), yb)
        value.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    return np.concatenate([model(torch.as_tensor(x[i:i + batch_size], dtype=torch.float32)).numpy()
                           for i in range(0, len(x), batch_size)])


def feature_model(kind: str, n: int, seed: int, strategy: str, groups: np.ndarray | None = None):
    """The scikit-learn model behind ``linear_probe`` / ``frozen_knn`` (standardised features). ``groups`` (one
    label per row) makes the internal cross-validation hold out whole groups, so that rows of one example (the maps of
    one simulation) never choose the regularisation by predicting each other."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import GroupKFold
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if strategy == "frozen_knn":
        k = int(min(5, max(1, n // 4)))
        est = KNeighborsClassifier(k) if kind == "classification" else KNeighborsRegressor(k)
        return make_pipeline(StandardScaler(), est)
    if groups is not None:
        folds = min(5, len(np.unique(groups)))
        cv = list(GroupKFold(folds).split(np.zeros(len(groups)), groups=groups))
    elif kind == "classification":
        cv = min(3, n // 4) if n >= 8 else 2
    else:
        cv = None  # efficient leave-one-out
    if kind == "classification":
        est = LogisticRegressionCV(Cs=8, cv=cv, max_iter=2000, random_state=seed)
    else:
        est = RidgeCV(alphas=np.logspace(-3, 3, 13), cv=cv)
    return make_pipeline(StandardScaler(), est)


def fresh(model: nn.Module) -> nn.Module:
    """A deep copy, so every cell starts from the same pre-trained weights."""
    return copy.deepcopy(model)
