"""The command's ``--plot``: decision boundary (2-D data) or fit (sine), and training curves, to a PNG."""

from __future__ import annotations

from typing import Any

import numpy as np

from .model import Model

__all__ = ["plot"]


def plot(model: Model, history: Any, X: np.ndarray, y: np.ndarray, dataset: str, path: str) -> None:
    """Decision boundary (2-D data) or fit (sine), and the loss/accuracy curves, to a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'portable_nn[plot]'") from None
    model.to(like=X)  # plotting happens on the host
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.5))
    if X.shape[1] == 2:
        pad = 0.1
        xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, 300, dtype=np.float32)
        ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, 300, dtype=np.float32)
        gx, gy = np.meshgrid(xs, ys)
        grid = np.c_[gx.ravel(), gy.ravel()].astype(np.float32)
        out = np.asarray(model.predict(grid, batch_size=20000))
        classes = (out[:, 0] > 0.5).astype(int) if out.shape[1] == 1 else out.argmax(axis=1)
        ax0.contourf(gx, gy, classes.reshape(gx.shape), alpha=0.3, cmap="brg")
        ax0.scatter(X[:, 0], X[:, 1], c=y.ravel(), s=8, cmap="brg", edgecolors="k", linewidths=0.2)
        ax0.set_title(f"{dataset}: decision boundary")
    elif dataset == "sine":
        ax0.plot(X[:, 0], y[:, 0], label="sin(2πx)")
        ax0.plot(X[:, 0], np.asarray(model.predict(X))[:, 0], "--", label="model")
        ax0.legend()
        ax0.set_title("sine: fit")
    else:
        ax0.axis("off")
        ax0.text(0.5, 0.5, f"{dataset}: {X.shape[1]} features", ha="center")
    ax1.plot(history.epoch, history.loss, label="loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax2 = ax1.twinx()
    ax2.plot(history.epoch, history.accuracy, color="tab:orange", label="accuracy")
    ax2.set_ylabel("accuracy")
    lines = ax1.get_lines() + ax2.get_lines()
    ax1.legend(lines, [line.get_label() for line in lines], loc="center right")
    ax1.set_title("training")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
