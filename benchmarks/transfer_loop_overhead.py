"""Is Lightning's overhead acceptable for the transfer task's small cells? Steps per second of the task's own loop
(``core.training.train_steps``) against a Lightning ``Trainer.fit`` of the same model, optimiser and batches, with
a validation pass every ``val_every`` steps (what early stopping needs), on the two targets' cell shapes:

- photoz: the MLP backbone + head on 10 features, n = 128 and 2,048 training examples, batch 32;
- allsky: MobileNetV2 (random weights; the cost does not depend on them) on 3 × 64 × 64 images, n = 128, batch 32.

Usage: python benchmarks/transfer_loop_overhead.py [--steps 300]   (about 2 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn

from astrobench.core.nets import MobileNetBackbone
from astrobench.core.training import StepConfig, train_steps
from astrobench.tasks.transfer import grid as G
from astrobench.tasks.transfer.targets import MLPBackbone


def _lightning_cell(model: nn.Module, lr: float, steps: int):
    """The model as a LightningModule with the own loop's loss, optimiser and schedule (Lightning imported here, so
    only when measured)."""
    import lightning.pytorch as pl

    class Cell(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.mse_loss(self.model(x)[:, 0], y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.model(x)[:, 0], y))

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            return [opt], [{"scheduler": sched, "interval": "step"}]

    return Cell()


def hand_written(model: nn.Module, x: np.ndarray, y: np.ndarray, steps: int) -> float:
    start = time.perf_counter()
    train_steps(model, x, y, "regression", StepConfig(steps=steps, batch_size=32), seed=0)
    return steps / (time.perf_counter() - start)


def lightning(model: nn.Module, x: np.ndarray, y: np.ndarray, steps: int, val_every: int) -> float:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    n_val = max(8, len(x) // 5)
    train = TensorDataset(torch.as_tensor(x[n_val:], dtype=torch.float32), torch.as_tensor(y[n_val:]).float())
    val = TensorDataset(torch.as_tensor(x[:n_val], dtype=torch.float32), torch.as_tensor(y[:n_val]).float())
    trainer = pl.Trainer(max_steps=steps, val_check_interval=val_every, check_val_every_n_epoch=None,
                         accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    module = _lightning_cell(model, 1e-3, steps)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, DataLoader(train, batch_size=32, shuffle=True, drop_last=True),  # full batches, as ours
                    DataLoader(val, batch_size=256))
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--val-every", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = [("photoz MLP, n=128", lambda: G.Predictor(MLPBackbone(10), 128, 1), (128, 10), args.steps),
             ("photoz MLP, n=2048", lambda: G.Predictor(MLPBackbone(10), 128, 1), (2048, 10), args.steps),
             ("allsky MobileNetV2 64 px, n=128", lambda: G.Predictor(MobileNetBackbone(), 1280, 1), (128, 3, 64, 64),
              max(args.steps // 10, 20))]
    print(f"| cell | steps | hand-written loop [steps/s] | Lightning fit, validation every {args.val_every} steps "
          "[steps/s] | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, make, shape, steps in cases:
        x = rng.normal(size=shape).astype(np.float32)
        y = rng.normal(size=shape[0]).astype(np.float32)
        hand_written(make(), x, y, 5)  # warm-up: thread pools and allocator, not counted
        torch.manual_seed(0)
        ours = hand_written(make(), x, y, steps)
        torch.manual_seed(0)
        theirs = lightning(make(), x, y, steps, min(args.val_every, steps))
        print(f"| {name} | {steps} | {ours:.0f} | {theirs:.0f} | {theirs / ours:.2f} |")


if __name__ == "__main__":
    main()
