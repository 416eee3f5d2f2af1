"""One Lightning helper for every task: generic task modules and a ``fit`` that owns the Trainer.

Task modules (TorchGeo style; a task writes its own LightningModule only for what is really new):

- :class:`ClassificationTask` - any backbone giving class logits; cross-entropy.
- :class:`RegressionTask` - any backbone; MSE on standardised targets, or a moment loss that also learns
  a per-object sigma (Jeffrey & Wandelt 2020).
- :class:`ConditionalDecoderTask` - deterministic condition -> image decoder trained with MSE.
- :class:`ConditionalVAETask` - stochastic conditional generator (CVAE, Bernoulli or Gaussian likelihood).

:func:`fit` handles seed, devices (``--devices/--num-nodes/--strategy`` go straight to the Trainer), early
stopping on ``val_loss``, checkpoints (``last.ckpt`` for ``--resume``, ``best.ckpt`` for the result), a progress
bar and the loss history for the figures.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from astrobench.core.io import DataFormatError, atomic_path, write_json_atomic
from astrobench.core.nets import D4_ORDER, d4_transform
from astrobench.core.tracking import Tracking, training_loggers


@dataclass
class TrainConfig:
    """Training budget and hardware for :func:`fit` (the optimiser's settings belong to the task module)."""

    max_epochs: int = 20
    batch_size: int = 128
    patience: int = 5
    seed: int = 0
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    progress: bool = True
    num_workers: int = 0
    tracking: Tracking | None = None  # loggers besides the CSV log (TensorBoard, MLflow)


def random_d4(x: torch.Tensor) -> torch.Tensor:
    """Each image of a (B, C, H, W) batch under a random one of the 8 rotations and flips of the square.

    Exact on the pixel grid (no interpolation); draws from torch's global generator, so it follows the seed.
    """
    element = torch.randint(0, D4_ORDER, (x.shape[0],), device=x.device)
    out = x.clone()
    for g in range(1, D4_ORDER):
        chosen = element == g
        if chosen.any():
            out[chosen] = d4_transform(x[chosen], g)
    return out


def d4_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations and flips of a (B, C, H, W) batch, in the order of :func:`~astrobench.core.nets.d4_transform`."""
    return [d4_transform(x, g) for g in range(D4_ORDER)]


def d4_average(fn):
    """Test-time augmentation: ``fn`` averaged over the 8 rotations and flips of its input batch."""
    def averaged(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([fn(v) for v in d4_views(x)]).mean(0)

    return averaged


class TaskModule(L.LightningModule):
    """Shared optimiser and logging: AdamW with a cosine learning-rate decay over ``max_epochs``.

    ``augment`` (e.g. :func:`random_d4`) is applied to the inputs of training batches only.
    """

    def __init__(self, lr: float = 1e-3, weight_decay: float = 1e-4, augment=None):
        """``lr``, ``weight_decay``: AdamW's; ``augment``: a function on the inputs (B, ...) of training batches,
        or None."""
        super().__init__()
        self.lr = lr
        self.weight_decay = weight_decay
        self.augment = augment

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """Apply ``augment`` to the inputs of training batches, once they are on the device."""
        if self.augment is not None and self.trainer.training:
            x, *rest = batch
            return [self.augment(x), *rest]
        return batch

    def loss(self, batch) -> torch.Tensor:  # pragma: no cover - abstract
        """The scalar loss of a batch; each task module defines it."""
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        """Compute and log ``train_loss`` (epoch mean) for one training batch."""
        loss = self.loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        """Compute and log ``val_loss`` (epoch mean) for one validation batch."""
        loss = self.loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def predict_step(self, batch, batch_idx):
        """What :func:`predict_module` asks of one batch (x,): ``self.predict_fn(self, x)`` when set, else the
        forward pass."""
        fn = getattr(self, "predict_fn", None)
        return fn(self, batch[0]) if fn is not None else self(batch[0])

    def configure_optimizers(self):
        """AdamW with a cosine learning-rate decay over ``max_epochs``."""
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.trainer.max_epochs))
        return {"optimizer": opt, "lr_scheduler": sched}


class ClassificationTask(TaskModule):
    """Batches (x, y) with integer classes y; the backbone returns logits (B, n_classes)."""

    def __init__(self, backbone: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4, augment=None):
        """``backbone``: inputs (B, ...) -> logits (B, n_classes); the rest as in :class:`TaskModule`."""
        super().__init__(lr, weight_decay, augment)
        self.save_hyperparameters(ignore=["backbone", "augment"])  # the backbone's weights are in the state dict
        self.backbone = backbone

    def forward(self, x):
        """The backbone's logits (B, n_classes)."""
        return self.backbone(x)

    def loss(self, batch):
        """Cross-entropy of the logits against the integer classes y (B,) of a batch (x, y)."""
        x, y = batch
        return F.cross_entropy(self(x), y)


class RegressionTask(TaskModule):
    """Batches (x, y) with y (B, D) in physical units; the targets are standardised inside.

    ``loss="mse"``: the backbone returns (B, D). ``loss="moment"``: it returns (B, 2D), a mean and a
    log-sigma per target, trained with the moment loss log E[(y-mu)^2] + log E[((y-mu)^2 - sigma^2)^2].
    """

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, backbone: nn.Module, target_mean, target_std, loss: str = "mse", lr: float = 1e-3,
                 weight_decay: float = 1e-4, augment=None):
        """``target_mean``, ``target_std``: (D,) statistics of the targets, in their physical units; ``loss``:
        ``"mse"`` or ``"moment"``; the rest as in :class:`TaskModule`."""
        super().__init__(lr, weight_decay, augment)
        if loss not in ("mse", "moment"):
            raise ValueError(f"unknown regression loss {loss!r}")
        # the target statistics are buffers, saved in the state dict with the backbone's weights
        self.save_hyperparameters(ignore=["backbone", "augment", "target_mean", "target_std"])
        self.backbone = backbone
        self.loss_name = loss
        self.register_buffer("target_mean", torch.as_tensor(target_mean, dtype=torch.float32))
        self.register_buffer("target_std", torch.as_tensor(target_std, dtype=torch.float32).clamp_min(1e-8))

    def forward(self, x):
        """The backbone's output in standardised units: (B, D), or (B, 2D) mean and log-sigma for ``moment``."""
        return self.backbone(x)

    def loss(self, batch):
        """MSE, or the summed moment loss, on the standardised targets of a batch (x, y)."""
        x, y = batch
        z = (y - self.target_mean) / self.target_std
        out = self(x)
        if self.loss_name == "mse":
            return F.mse_loss(out, z)
        mu, log_sigma = out.chunk(2, dim=1)
        sq = (z - mu) ** 2
        return (torch.log(sq.mean(0) + 1e-8) + torch.log(((sq - torch.exp(2 * log_sigma)) ** 2).mean(0) + 1e-8)).sum()

    @torch.no_grad()
    def predict_physical(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean (B, D) in physical units, and sigma (B, D) for the moment loss (else None)."""
        out = self(x)
        if self.loss_name == "mse":
            return out * self.target_std + self.target_mean, None
        mu, log_sigma = out.chunk(2, dim=1)
        return mu * self.target_std + self.target_mean, torch.exp(log_sigma) * self.target_std


class ConditionalDecoderTask(TaskModule):
    """Batches (condition, x); a deterministic decoder maps the condition to x, trained with MSE.

    The decoder returns logits; outputs are ``sigmoid(logits)`` in [0, 1].
    """

    def __init__(self, decoder: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4):
        """``decoder``: conditions (B, D) -> logits of x (B, ...); AdamW's ``lr`` and ``weight_decay``."""
        super().__init__(lr, weight_decay)
        self.save_hyperparameters(ignore=["decoder"])
        self.decoder = decoder

    def forward(self, cond):
        """The decoded x for conditions ``cond`` (B, D): ``sigmoid(logits)`` in [0, 1]."""
        return torch.sigmoid(self.decoder(cond))

    def loss(self, batch):
        """MSE between the decoded and the true x of a batch (condition, x)."""
        cond, x = batch
        return F.mse_loss(self(cond), x)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The decoded x for ``cond`` (B, D), without gradients; deterministic, so ``generator`` is unused."""
        return self(cond)


class ConditionalVAETask(TaskModule):
    """Conditional VAE (Sohn et al. 2015): encoder(x, cond) -> (mu, log_var); decoder([z, cond]) -> logits.

    ``likelihood="bernoulli"`` for binary data (sampling draws each pixel from its Bernoulli probability,
    so the samples are binary like the data); ``"gaussian"`` for continuous data (unit variance).
    The loss is the negative ELBO per object with the KL term weighted by ``beta`` (a beta-VAE, Higgins et
    al. 2017, for ``beta > 1``: z is kept close to its prior, so prior samples stay on the data).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, likelihood: str = "bernoulli",
                 beta: float = 1.0, lr: float = 1e-3, weight_decay: float = 1e-4):
        """``encoder(x, cond)`` -> (B, 2 * latent_dim), mu and log-variance; ``decoder([z, cond])`` -> logits of x;
        ``likelihood``: ``"bernoulli"`` or ``"gaussian"``; ``beta``: the KL term's weight."""
        super().__init__(lr, weight_decay)
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"unknown likelihood {likelihood!r}")
        self.save_hyperparameters(ignore=["encoder", "decoder"])
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim, self.likelihood, self.beta = latent_dim, likelihood, beta

    def loss(self, batch):
        """Negative ELBO per object, averaged over a batch (condition, x): reconstruction plus ``beta`` times KL."""
        cond, x = batch
        mu, log_var = self.encoder(x, cond).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        out = self.decoder(torch.cat([z, cond], dim=1))
        if self.likelihood == "bernoulli":
            rec = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            rec = 0.5 * (out - x) ** 2
        kl = -0.5 * (1 + log_var - mu**2 - log_var.exp()).sum(1)
        return rec.flatten(1).sum(1).mean() + self.beta * kl.mean()

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Samples x (B, ...) for conditions ``cond`` (B, D), from z drawn from the prior with ``generator``: binary
        for the Bernoulli likelihood, the decoder's output (the mean) for the Gaussian one."""
        z = torch.randn(cond.shape[0], self.latent_dim, generator=generator, device=cond.device)
        out = self.decoder(torch.cat([z, cond], dim=1))
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(out), generator=generator)
        return out


class LossHistory(Callback):
    """Per-epoch train and validation loss; stored in checkpoints so a resumed run keeps its curve.

    ``spill``: a file rank 0 writes the history to when training ends. With a spawning strategy (``ddp_spawn``)
    training runs in child processes and this callback's copy in the calling process stays empty; :func:`fit`
    reads the history back from the file."""

    def __init__(self, spill: Path | None = None):
        """``spill``: the file rank 0 writes the history to when training ends, or None."""
        self.history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": []}
        self.spill = spill

    def on_train_end(self, trainer, pl_module):
        """On rank 0, write the history to ``spill`` when there is one."""
        if self.spill is not None and trainer.is_global_zero:
            write_json_atomic(self.spill, self.history)

    def on_train_epoch_end(self, trainer, pl_module):
        """Append the epoch, its ``train_loss`` and its ``val_loss`` (NaN if none) to the history."""
        metrics = trainer.callback_metrics
        if "train_loss" not in metrics:
            return
        self.history["epoch"].append(trainer.current_epoch)
        self.history["train_loss"].append(float(metrics["train_loss"]))
        self.history["val_loss"].append(float(metrics.get("val_loss", math.nan)))

    def state_dict(self):
        """The history, for the checkpoint."""
        return {"history": self.history}

    def load_state_dict(self, state_dict):
        """Restore the history from a checkpoint."""
        self.history = state_dict["history"]


class RankSeed(Callback):
    """With several training processes, each rank draws its own random numbers from the start of training on (the
    seed plus its rank): every rank is seeded alike, so otherwise each would draw the same augmentations and the
    same reparameterisation noise for its part of the batch. The weights are unaffected (DDP copies rank 0's to every
    rank before training); a one-process run is left as it is."""

    def __init__(self, seed: int):
        """``seed``: the run's seed."""
        self.seed = seed

    def on_train_start(self, trainer, pl_module):
        """With more than one rank, reseed torch with ``seed * 1009 + global rank``."""
        if trainer.world_size > 1:
            torch.manual_seed(int(self.seed) * 1009 + trainer.global_rank)


@dataclass
class FitResult:
    """What :func:`fit` did: the loss ``history`` (``epoch``, ``train_loss``, ``val_loss``), the number of
    ``epochs``, and whether it ``resumed`` an earlier run (reloaded a finished model or went on from
    ``last.ckpt``)."""
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int = 0
    resumed: bool = False


def as_dataset(*arrays: np.ndarray, dtypes: tuple | None = None) -> TensorDataset:
    """numpy arrays -> TensorDataset (float32 unless ``dtypes`` says otherwise)."""
    dtypes = dtypes or (torch.float32,) * len(arrays)
    return TensorDataset(*(torch.as_tensor(np.asarray(a), dtype=d) for a, d in zip(arrays, dtypes)))


def fit(module: L.LightningModule, train: Dataset, val: Dataset, ckpt_dir: str | Path, cfg: TrainConfig,
        resume: bool = False, select_best: bool = True) -> FitResult:
    """Train ``module`` in place; afterwards it holds the weights of the best validation epoch.

    ``select_best=False`` trains for all ``max_epochs`` and keeps the last weights (``best.ckpt`` is then the
    latest epoch): for a GAN, whose logged ``val_loss`` (a critic's estimate) is a curve to look at, not a quantity
    to minimise.

    ``ckpt_dir`` receives ``last.ckpt``, ``best.ckpt``, ``model.pt`` (final weights, loaded by ``predict``)
    and ``history.json``. With ``resume=True`` a finished model is reloaded instead of retrained, and an
    unfinished one continues from ``last.ckpt``.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final, history_path = ckpt_dir / "model.pt", ckpt_dir / "history.json"
    if resume and final.exists() and history_path.exists():
        load_weights(module, final)
        history = json.loads(history_path.read_text())
        return FitResult(history, len(history["epoch"]), resumed=True)

    _quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # ddp_spawn / ddp_fork / ddp_notebook train in child processes: the history comes back through a file
    spawned = any(kind in str(cfg.strategy) for kind in ("spawn", "fork", "notebook"))
    if spawned:
        history_path.unlink(missing_ok=True)
    history = LossHistory(spill=history_path if spawned else None)
    # without a monitor, top-1 is the latest epoch: that save is what makes save_last write last.ckpt every epoch
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss" if select_best else None, mode="min",
                           save_last=True, save_top_k=1, enable_version_counter=False)
    callbacks = [history, best, RankSeed(cfg.seed)]
    if select_best:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=cfg.patience, mode="min"))
    trainer = _trainer(cfg, ckpt_dir, callbacks)
    train_loader, val_loader = _loaders(train, val, cfg, trainer.world_size, spawned)
    last = ckpt_dir / "last.ckpt"
    ckpt_path = last if resume and last.exists() else None
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    if spawned and history_path.exists():
        history.history = json.loads(history_path.read_text())
    if select_best and best.best_model_path:
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    module.cpu().eval()
    if trainer.is_global_zero:
        if not spawned:
            write_json_atomic(history_path, history.history)
        with atomic_path(final) as tmp:  # model.pt marks a finished model: never half-written
            torch.save(module.state_dict(), tmp)
    return FitResult(history.history, len(history.history["epoch"]), resumed=ckpt_path is not None)


def _trainer(cfg: TrainConfig, ckpt_dir: Path, callbacks: list) -> L.Trainer:
    """The Lightning Trainer of :func:`fit`: the budget and hardware of ``cfg``, a CSV log in ``ckpt_dir`` (and the
    run's TensorBoard or MLflow logger, :mod:`astrobench.core.tracking`), deterministic kernels."""
    return L.Trainer(
        max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, callbacks=callbacks, logger=training_loggers(cfg.tracking, ckpt_dir),
        enable_progress_bar=cfg.progress,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=ckpt_dir,
        # batch-norm statistics over the whole global batch in DDP (Lightning applies it to parallel strategies
        # only; torch's SyncBatchNorm runs on GPUs only)
        sync_batchnorm=cfg.accelerator != "cpu" and torch.cuda.is_available(),
        # deterministic kernels where they exist; on a GPU some have none, which then warns instead of failing
        deterministic="warn",
    )


def _loaders(train: Dataset, val: Dataset, cfg: TrainConfig, world: int,
             spawned: bool) -> tuple[DataLoader, DataLoader]:
    """Training loader (shuffled from ``cfg.seed``) and validation loader of :func:`fit` for ``world`` processes."""
    # with several processes Lightning gives each rank 1/world_size of the data (a DistributedSampler, which
    # shuffles from the run's seed). Each rank takes batch_size / world_size of every batch, so the global batch,
    # the optimiser steps per epoch and the learning rate are the one-process run's (on GPUs batch norm is
    # synchronised too; on CPUs each rank normalises over its half of the batch). The last partial batch is dropped
    # only when every rank still has a full one.
    batch = max(1, cfg.batch_size // world)
    # A spawning strategy pickles the loaders into its processes, and a torch.Generator does not survive that under
    # torch's default file-descriptor sharing ("unable to resize file ... Invalid argument"): no generator there
    loader_gen = None if spawned else torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(train, batch_size=batch, shuffle=True, generator=loader_gen,
                              num_workers=cfg.num_workers, drop_last=len(train) // world > batch)  # type: ignore[arg-type]
    val_loader = DataLoader(val, batch_size=max(batch, 512), num_workers=cfg.num_workers)
    return train_loader, val_loader


# --- small training sets: a budget by convergence -------------------------------------------------------------

@dataclass
class SmallDataConfig:
    """Budget of :func:`fit_small`: train until the validation loss has not improved for ``patience`` validation
    checks, or until a cap; then keep the best state.

    - Validation runs every ``val_every`` optimiser steps, but never more often than once per epoch (a set of 24
      examples in batches of 32 is one step per epoch; 1,638 examples are 51).
    - The cap is ``max_epochs`` epochs, so its step count grows with the training set, but at least ``min_steps``
      and at most ``max_steps`` steps (:meth:`cap_steps`).
    - ``backbone_lr_factor`` scales the learning rate of a model's ``backbone`` (a model with a ``backbone`` and a
      ``head``; 1: every parameter at ``lr``). AdamW with a constant learning rate: the stopping point, not a
      schedule, ends training.
    """

    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    backbone_lr_factor: float = 1.0
    patience: int = 6
    val_every: int = 10
    max_epochs: int = 200
    min_steps: int = 300
    max_steps: int = 4000
    seed: int = 0

    def cap_steps(self, steps_per_epoch: int) -> int:
        """The cap in optimiser steps for a training set of ``steps_per_epoch`` batches."""
        return int(min(self.max_steps, max(self.min_steps, self.max_epochs * steps_per_epoch)))


@dataclass
class SmallFitResult:
    """What :func:`fit_small` did: optimiser ``steps`` and ``epochs`` run, the step of the best validation loss
    (the state kept), whether a cap (rather than the patience) ended training, and the validation curve
    (``history``: ``step``, ``val_loss``)."""

    steps: int
    epochs: int
    best_step: int
    best_val_loss: float
    capped: bool
    cap_steps: int
    history: dict[str, list[float]]


def small_data_loss(kind: str):
    """The loss of a model trained on (x, y): cross-entropy on class logits (``"classification"``), or MSE on the
    first output column (``"regression"``)."""
    if kind == "classification":
        return lambda out, y: F.cross_entropy(out, y.long())
    if kind == "regression":
        return lambda out, y: F.mse_loss(out[:, 0], y)
    raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")


def param_groups(model: nn.Module, lr: float, backbone_lr_factor: float = 1.0) -> list[dict]:
    """Optimiser groups: a model with a ``backbone`` and a ``head`` gets the backbone at ``lr * backbone_lr_factor``
    (discriminative fine-tuning, Howard & Ruder 2018); any other model trains every parameter at ``lr``."""
    backbone, head = getattr(model, "backbone", None), getattr(model, "head", None)
    if isinstance(backbone, nn.Module) and isinstance(head, nn.Module):
        return [{"params": backbone.parameters(), "lr": lr * backbone_lr_factor},
                {"params": head.parameters(), "lr": lr}]
    return [{"params": model.parameters(), "lr": lr}]


@dataclass
class StepConfig:
    """A fixed budget for :func:`train_steps`: ``steps`` AdamW steps of ``batch_size`` examples at learning rate
    ``lr`` (cosine-annealed to zero), the backbone's rate scaled by ``backbone_lr_factor`` (1: every layer alike),
    ``weight_decay``; ``freeze_norm`` keeps batch-norm statistics as they are (a few-shot set is too small to
    re-estimate them)."""

    steps: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_factor: float = 1.0
    weight_decay: float = 1e-4
    freeze_norm: bool = False


def train_steps(model: nn.Module, x: np.ndarray, y: np.ndarray, kind: str, cfg: StepConfig, seed: int,
                loss=None, augment=None) -> nn.Module:
    """Train ``model`` in place for exactly ``cfg.steps`` optimiser steps on minibatches of (x, y) drawn by
    replacement-free reshuffles; returns it in eval mode.

    The fixed-budget loop of the project, for where no validation split can be spared (the allsky task's few-shot
    adaptation on ten real frames); :func:`fit_small` is the one that stops on a validation loss. ``kind`` is
    ``"classification"`` or ``"regression"`` and picks the loss unless ``loss(out, y)`` is given; ``augment(x, y)``
    returns a transformed batch (x, y). A model with a ``backbone`` and a ``head`` gets the backbone's learning rate
    scaled by ``cfg.backbone_lr_factor``; any other model trains all its parameters at ``cfg.lr``."""
    torch.manual_seed(seed)
    gen = np.random.default_rng([seed, 43])
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.backbone_lr_factor), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    loss = loss or small_data_loss(kind)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    batch = min(cfg.batch_size, len(x))
    order = np.empty(0, dtype=np.int64)
    model.train()
    if cfg.freeze_norm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    for _ in range(cfg.steps):
        if len(order) < batch:
            order = np.r_[order, gen.permutation(len(x))]
        idx, order = order[:batch], order[batch:]
        xb, yb = xt[idx], yt[idx]
        if augment is not None:
            xb, yb = augment(xb, yb)
        opt.zero_grad()
        value = loss(model(xb), yb)
        value.backward()
        opt.step()
        sched.step()
    return model.eval()


class SmallDataModule(L.LightningModule):
    """A model trained on (x, y): cross-entropy on class logits (``kind="classification"``) or MSE on a single
    regression output (``kind="regression"``, targets standardised by the caller). ``augment`` transforms the
    inputs of training batches."""

    def __init__(self, model: nn.Module, kind: str, cfg: SmallDataConfig, augment=None):
        """``kind``: ``"classification"`` or ``"regression"`` (picks the loss); ``cfg``: the optimiser's
        settings; ``augment``: a function on the inputs (B, ...) of training batches, or None."""
        super().__init__()
        self.model, self.cfg, self.augment = model, cfg, augment
        self.loss = small_data_loss(kind)

    def forward(self, x):
        """The model's output for ``x``."""
        return self.model(x)

    def training_step(self, batch, batch_idx):
        """The loss of one training batch (x, y), ``augment`` applied to x."""
        x, y = batch
        if self.augment is not None:
            x = self.augment(x)
        return self.loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        """Log ``val_loss`` (epoch mean) for one validation batch."""
        x, y = batch
        self.log("val_loss", self.loss(self(x), y), on_step=False, on_epoch=True, batch_size=len(x))

    def configure_optimizers(self):
        """AdamW at a constant learning rate, the backbone's scaled by ``cfg.backbone_lr_factor``."""
        cfg = self.cfg
        groups = param_groups(self.model, cfg.lr, cfg.backbone_lr_factor)
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


class BestState(Callback):
    """Keeps an in-memory copy of the weights at the lowest ``val_loss`` and the validation curve (no file per
    improvement: a transfer grid fits hundreds of small models)."""

    def __init__(self):
        """No best state yet, an empty validation curve."""
        self.best, self.best_step, self.state = math.inf, 0, None
        self.history: dict[str, list[float]] = {"step": [], "val_loss": []}

    def on_validation_end(self, trainer, pl_module):
        """Record this check's ``val_loss`` and copy the model's weights when it is the lowest so far."""
        if trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics["val_loss"])
        self.history["step"].append(trainer.global_step)
        self.history["val_loss"].append(value)
        if value < self.best:
            self.best, self.best_step = value, trainer.global_step
            self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def validation_split(n: int, seed: int, fraction: float = 0.2, minimum: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(train, val)`` of a set of ``n`` examples: ``max(minimum, round(fraction * n))`` drawn for
    validation (from ``seed``), the rest for training. Raises ``ValueError`` when fewer than ``minimum`` training
    examples would be left."""
    n_val = max(minimum, int(round(fraction * n)))
    if n - n_val < minimum:
        raise ValueError(f"{n} examples cannot hold {n_val} for validation and {minimum} for training")
    order = np.random.default_rng([seed, 61]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fit_small(model: nn.Module, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, kind: str,
              cfg: SmallDataConfig, augment=None) -> SmallFitResult:
    """Train ``model`` in place on (x, y) with Lightning, validating on (x_val, y_val) (see
    :class:`SmallDataConfig` for the budget); afterwards ``model`` holds the state of the best validation check, in
    eval mode, on the CPU. Regression targets ``y`` should be standardised. One process, no files written:
    the caller saves what it needs (the transfer grid resumes per trained model, not inside one)."""
    if len(x) == 0 or len(x_val) == 0:
        raise ValueError("fit_small needs at least one training and one validation example")
    _quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    y_dtype = torch.long if kind == "classification" else torch.float32
    train = as_dataset(x, y, dtypes=(torch.float32, y_dtype))
    val = as_dataset(x_val, y_val, dtypes=(torch.float32, y_dtype))
    batch = min(cfg.batch_size, len(x))
    loader = DataLoader(train, batch_size=batch, shuffle=True, drop_last=len(x) > batch,
                        generator=torch.Generator().manual_seed(cfg.seed))
    steps_per_epoch = len(loader)
    cap = cfg.cap_steps(steps_per_epoch)
    early = EarlyStopping(monitor="val_loss", patience=cfg.patience, mode="min")
    best = BestState()
    trainer = L.Trainer(
        max_epochs=-1, max_steps=cap, accelerator="cpu", devices=1, logger=False,
        callbacks=[best, early], enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, check_val_every_n_epoch=None,
        val_check_interval=min(cap, max(cfg.val_every, steps_per_epoch)), deterministic="warn")
    module = SmallDataModule(model, kind, cfg, augment)
    trainer.fit(module, loader, DataLoader(val, batch_size=256))
    if best.state is not None:
        model.load_state_dict(best.state)
    from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

    capped = early.stopping_reason != EarlyStoppingReason.PATIENCE_EXHAUSTED
    return SmallFitResult(steps=int(trainer.global_step), epochs=int(trainer.current_epoch), best_step=best.best_step,
                          best_val_loss=float(best.best), capped=bool(capped), cap_steps=cap, history=best.history)


def _quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (hardware lines, tips) out of the user's terminal."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    # every module logs per epoch, so the step interval of the loggers does not matter
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # expected when resuming
    # every module here logs with sync_dist=True, and Lightning still printed this for the rings modules under ddp
    # on CPU processes: noise to a user
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


def load_weights(module: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``model.pt`` written by :func:`fit` (``weights_only=True``: no code runs from the file)."""
    try:
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFormatError(path, f"cannot load these weights into the model ({first_line})") from None
    return module.eval()


def load_module(cls: type[L.LightningModule], ckpt_dir: str | Path, **modules: Any) -> L.LightningModule:
    """The trained ``cls`` from ``ckpt_dir/best.ckpt`` (the weights :func:`fit` selected) through Lightning's
    ``load_from_checkpoint``: hyperparameters from the checkpoint, ``weights_only=True`` (no code runs from the
    file). ``modules``: the networks the module was built around (backbone, encoder, decoder), freshly made with the
    architecture the run recorded; their weights come from the checkpoint. A file that does not fit is one
    DataFormatError line."""
    path = Path(ckpt_dir) / "best.ckpt"
    if not path.is_file():
        raise DataFormatError(path, "not found (is the run finished?)")
    try:
        module = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True, **modules)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFormatError(path, f"cannot load this checkpoint into the model ({first_line})") from None
    return module.eval()


def predict_module(module: L.LightningModule, x: np.ndarray, fn=None, batch_size: int = 1024):
    """Apply a trained module to ``x`` (N, ...) through ``Trainer.predict`` on the CPU: ``fn(module, batch)`` ->
    a tensor or a tuple of tensors (default: the forward pass). Returns the outputs concatenated over batches, as
    arrays (a tuple of arrays for tuple outputs)."""
    _quiet_lightning()
    module.predict_fn = fn  # read by TaskModule.predict_step
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    loader = DataLoader(TensorDataset(torch.as_tensor(x, dtype=torch.float32)), batch_size=batch_size)
    try:
        trainer_outs = trainer.predict(module, loader)
    finally:
        module.predict_fn = None  # type: ignore[assignment]
    outs: list[Any] = list(trainer_outs or [])
    if outs and isinstance(outs[0], tuple):
        return tuple(torch.cat([o[j] for o in outs]).cpu().numpy() for j in range(len(outs[0])))
    return torch.cat(outs).cpu().numpy() if outs else np.empty((0,))


@torch.no_grad()
def predict_batches(fn, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Apply ``fn`` (tensor -> tensor) to ``x`` in batches, without gradients, on the CPU."""
    outs = [fn(torch.as_tensor(x[i : i + batch_size], dtype=torch.float32)).cpu().numpy()
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.empty((0,))
