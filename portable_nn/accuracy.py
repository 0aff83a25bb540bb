"""Accuracies: the fraction of predictions that match, as a 0-d array."""

from __future__ import annotations

from typing import Any

from . import _xp

__all__ = ["Accuracy", "CategoricalAccuracy", "RegressionAccuracy"]


class Accuracy:
    """``calculate(predictions, y) = mean(compare(predictions, y))`` (no host sync)."""

    def init(self, y: Any, reinit: bool = False) -> None:
        """Learn what the comparison needs from the targets (regression: a precision)."""

    def compare(self, predictions: Any, y: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def calculate(self, predictions: Any, y: Any) -> Any:
        xp = _xp.namespace(predictions)
        # float32 counts 0/1 values exactly up to 2**24 samples per call
        return xp.mean(xp.astype(self.compare(predictions, y), xp.float32))

    def get_config(self) -> dict[str, Any]:
        return {}


def _like_predictions(xp: Any, predictions: Any, y: Any) -> Any:
    """(n,) targets for (n, 1) predictions become (n, 1)."""
    if y.ndim == 1 and predictions.ndim == 2 and predictions.shape[1] == 1:
        return xp.reshape(y, (-1, 1))
    return y


class CategoricalAccuracy(Accuracy):
    """Class predictions equal to the labels (one-hot labels are argmaxed first).

    ``binary=True``: element-wise 0/1 predictions against 0/1 targets.
    """

    def __init__(self, *, binary: bool = False) -> None:
        self.binary = bool(binary)

    def compare(self, predictions: Any, y: Any) -> Any:
        xp = _xp.namespace(predictions)
        if not self.binary and y.ndim == 2:
            y = xp.argmax(y, axis=1)
        y = _like_predictions(xp, predictions, y)
        if y.dtype != predictions.dtype:
            y = xp.astype(y, predictions.dtype)
        return predictions == y

    def get_config(self) -> dict[str, Any]:
        return {"binary": self.binary}


class RegressionAccuracy(Accuracy):
    """``|prediction - y| < precision`` with ``precision = std(y) / 250`` (the book's)."""

    def __init__(self) -> None:
        self.precision: Any = None

    def init(self, y: Any, reinit: bool = False) -> None:
        if self.precision is None or reinit:
            xp = _xp.namespace(y)
            self.precision = xp.std(y) / 250

    def compare(self, predictions: Any, y: Any) -> Any:
        xp = _xp.namespace(predictions)
        if self.precision is None:
            self.init(y)
        y = _like_predictions(xp, predictions, y)
        return xp.abs(predictions - y) < self.precision
