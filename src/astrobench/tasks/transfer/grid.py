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
calls it; it holds out part of each cell's examples and stops on their validation loss).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

STRATEGIES = ("scratch", "linear_probe", "finetune", "finetune_discriminative", "frozen_knn")
TRAINED = ("scratch", "finetune", "finetune_discriminative")
FEATURE_BASED = ("linear_probe", "frozen_knn")


class Predictor(nn.Module):
    """A backbone (features, ``feature_dim`` wide) and a linear head."""

    def __init__(self, backbone: nn.Module, feature_dim: int, n_outputs: int):
        super().__init__()
        self.backbone, self.head = backbone, nn.Linear(feature_dim, n_outputs)

    def forward(self, x):
        return self.head(self.backbone(x))


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    return np.concatenate([model(torch.as_tensor(x[i:i + batch_size], dtype=torch.float32)).numpy()
                           for i in range(0, len(x), batch_size)])


def _logistic_cv_defaults() -> dict:
    """LogisticRegressionCV's defaults spelled out where scikit-learn 1.9 warns that they change in 1.10 / 1.11:
    accuracy scoring and a pure L2 penalty, as before; the fitted attributes in their new form (we use none)."""
    import inspect

    from sklearn.linear_model import LogisticRegressionCV

    kwargs: dict = {"scoring": "accuracy"}
    if "use_legacy_attributes" in inspect.signature(LogisticRegressionCV).parameters:  # scikit-learn >= 1.9
        kwargs.update(use_legacy_attributes=False, l1_ratios=(0.0,))  # l1_ratios=(0,): plain L2, as before
    return kwargs


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
        est = LogisticRegressionCV(Cs=8, cv=cv, max_iter=2000, random_state=seed, **_logistic_cv_defaults())
    else:
        est = RidgeCV(alphas=np.logspace(-3, 3, 13), cv=cv)
    return make_pipeline(StandardScaler(), est)


def fresh(model: nn.Module) -> nn.Module:
    """A deep copy, so every cell starts from the same pre-trained weights."""
    return copy.deepcopy(model)
