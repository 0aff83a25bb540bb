"""Toy data sets of the book (same geometry as the ``nnfs`` package) and digits.

All return host NumPy arrays -- X float32, y uint8 for classification --
convert them once with the library you train on (``xp.asarray(X, device=...)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["spiral_data", "vertical_data", "sine_data", "load_digits"]


def _check(samples: int, classes: int) -> None:
    for name, value in (("samples", samples), ("classes", classes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if classes > 256:
        raise ValueError(f"classes must be at most 256 (labels are uint8), got {classes}")


def _by_class(samples: int, classes: int, points: Any) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` points of each class from ``points(c) -> (samples, 2)``; labels uint8."""
    X = np.zeros((samples * classes, 2), dtype=np.float32)
    y = np.zeros(samples * classes, dtype=np.uint8)
    for c in range(classes):
        ix = slice(samples * c, samples * (c + 1))
        X[ix] = points(c)
        y[ix] = c
    return X, y


def spiral_data(samples: int, classes: int, *, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` interleaved spiral arms of ``samples`` points each (X in [-1, 1]^2)."""
    _check(samples, classes)
    rng = np.random.default_rng(seed)
    r = np.linspace(0.0, 1.0, samples)

    def arm(c: int) -> np.ndarray:
        t = np.linspace(c * 4, (c + 1) * 4, samples) + rng.standard_normal(samples) * 0.2
        return np.column_stack([r * np.sin(t * 2.5), r * np.cos(t * 2.5)])

    return _by_class(samples, classes, arm)


def vertical_data(samples: int, classes: int, *, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` vertical clusters, centred at x = c/3, y = 0.5, spread 0.1."""
    _check(samples, classes)
    rng = np.random.default_rng(seed)

    def cluster(c: int) -> np.ndarray:
        return np.column_stack([rng.standard_normal(samples) * 0.1 + c / 3, rng.standard_normal(samples) * 0.1 + 0.5])

    return _by_class(samples, classes, cluster)


def sine_data(samples: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``y = sin(2 pi x)`` on ``x = arange(samples) / samples``; both (samples, 1) float32."""
    _check(samples, 1)
    X = (np.arange(samples).reshape(-1, 1) / samples).astype(np.float32)
    y = np.sin(2 * np.pi * X).astype(np.float32)
    return X, y


def load_digits(*, test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits: ``X_train, y_train, X_test, y_test``.

    X is scaled to [0, 1] (float32, 64 features), y uint8; a stratified split.
    Needs scikit-learn (``pip install portable_nn[sklearn]``).
    """
    try:
        from sklearn.datasets import load_digits as _load
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits needs scikit-learn: pip install 'portable_nn[sklearn]'") from exc
    data = _load()
    X = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.uint8)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    return X_train, y_train, X_test, y_test
