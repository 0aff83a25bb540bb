"""Accuracies: the fraction of predictions that match, as a 0-d array."""

from __future__ import annotations

from typing import Any, ClassVar

import array_api_extra as xpx

from . import _xp, registries
from ._repr import config_repr
from ._typing import Array, Namespace

__all__ = ["Accuracy", "CategoricalAccuracy", "RegressionAccuracy"]


class Accuracy:
    """``calculate(predictions, y) = mean(compare(predictions, y))`` (no host sync)."""

    registry: ClassVar[dict[str, type[Accuracy]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registries.register(Accuracy.registry, cls, "accuracy")

    def prepare_targets(self, xp: Namespace, y: Array) -> Array:
        """Targets in the form ``compare`` wants, once per call (default: as given)."""
        return y

    def to(self, like: Array) -> None:
        """Move any array the accuracy keeps to ``like``'s library and device (``Model.to``)."""

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

    def __repr__(self) -> str:
        return config_repr(self)


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

    def prepare_targets(self, xp: Namespace, y: Array) -> Array:
        """Class labels as the predictions' integer dtype (one-hot rows as indices)."""
        if self.binary or _xp.is_lazy(y):
            return y
        if y.ndim == 2:
            y = xp.argmax(xp.astype(y, xp.int8) if y.dtype == xp.bool else y, axis=1)
        int_dtype = _xp.default_int(xp, _xp.array_device(y))
        return y if y.dtype == int_dtype else xp.astype(y, int_dtype)

    def get_config(self) -> dict[str, Any]:
        return {"binary": self.binary}


class RegressionAccuracy(Accuracy):
    """``|prediction - y| < precision`` with ``precision = std(y) / 250`` (the book's)."""

    def __init__(self) -> None:
        self.precision: Any = None

    def init(self, y: Any, reinit: bool = False) -> None:
        if self.precision is None or reinit:
            xp = _xp.namespace(y)
            self.precision = xp.std(self.prepare_targets(xp, y)) / 250

    def prepare_targets(self, xp: Namespace, y: Array) -> Array:
        """Integer or bool targets as the namespace's default floating dtype (std and differences need floats)."""
        if xp.isdtype(y.dtype, "real floating"):
            return y
        return xp.astype(y, xpx.default_dtype(xp, device=_xp.array_device(y)))

    def to(self, like: Array) -> None:
        if self.precision is not None:
            self.precision = _xp.move(self.precision, _xp.namespace(like), _xp.array_device(like))

    def compare(self, predictions: Any, y: Any) -> Any:
        xp = _xp.namespace(predictions)
        if self.precision is None:
            self.init(y)
        y = _like_predictions(xp, predictions, y)
        return xp.abs(predictions - y) < self.precision
