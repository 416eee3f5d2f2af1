"""Figure helpers (matplotlib, Agg backend); every figure is written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from astrobench.core.io import atomic_path  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` as PNG at ``dpi`` dots per inch (atomically), close it; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def loss_curves(history: dict[str, list[float]], title: str, path: str | Path) -> Path:
    """Training and validation loss per epoch."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = np.asarray(history["epoch"]) + 1
    ax.plot(epochs, history["train_loss"], "o-", label="training")
    ax.plot(epochs, history["val_loss"], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def confusion_matrices(matrices: dict[str, np.ndarray], class_names: list[str], path: str | Path) -> Path:
    """One confusion-matrix panel per method (rows: true class, columns: predicted class)."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.6 * len(matrices), 3.4), squeeze=False)
    for ax, (name, cm) in zip(axes[0], matrices.items()):
        cm = np.asarray(cm)
        ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(class_names)), class_names)
        ax.set_yticks(range(len(class_names)), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    fig.tight_layout()
    return save_figure(fig, path)


def image_grid(rows: dict[str, np.ndarray], path: str | Path, ncols: int = 8, overlays=None) -> Path:
    """Rows of images (each (n, H, W)) under row titles; ``overlays[row](ax, i)`` may draw on a panel."""
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.3 * ncols, 1.45 * len(rows)), squeeze=False)
    for r, (title, images) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                if overlays and title in overlays:
                    overlays[title](ax, c)
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
