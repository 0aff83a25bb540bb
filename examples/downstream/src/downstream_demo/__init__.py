"""An array-agnostic function of another project, built on portable_nn.

``standardize`` works on any array API library; ``fit_classifier`` trains a
small portable_nn model on standardized features of the caller's library and
device, and returns the model with its training accuracy.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

import portable_nn as pnn

__all__ = ["fit_classifier", "standardize"]


def standardize(X: Any) -> Any:
    """Each column to mean 0 and standard deviation 1 (a constant column stays 0), in X's own library."""
    xp = array_namespace(X)
    mean = xp.mean(X, axis=0, keepdims=True)
    std = xp.std(X, axis=0, keepdims=True)
    return (X - mean) / xp.where(std > 0, std, xp.ones_like(std))


def fit_classifier(X: Any, y: Any, *, n_classes: int, epochs: int = 200, seed: int = 0) -> tuple[Any, float]:
    """A 64-unit ReLU network trained with Adam on standardized ``X``: ``(model, training accuracy)``."""
    Xs = standardize(X)
    model = pnn.Model()
    model.add(pnn.Dense(int(X.shape[1]), 64, seed=seed, initializer="he_uniform", dtype=X.dtype))
    model.add(pnn.ReLU())
    model.add(pnn.Dense(64, n_classes, seed=seed + 1, dtype=X.dtype)).add(pnn.Softmax())
    model.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.02)).finalize()
    model.train(Xs, y, epochs=epochs, verbose=False)
    _, accuracy = model.evaluate(Xs, y)
    return model, accuracy
