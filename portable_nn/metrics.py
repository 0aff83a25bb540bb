"""Metrics for ``Model.evaluate(X, y, metrics=[...])`` and ``Model.train(..., metrics=[...])``, from counts.

Each metric sums counts over the batches (device arrays, no host sync) and
turns them into its value once, on the host, at the end (``train``: at report
points, each epoch's counts read back with the loss and accuracy):

* ``Precision(average="macro")``: ``tp_c / (tp_c + fp_c)`` per class, averaged (``average=None``: per class);
* ``Recall``: ``tp_c / (tp_c + fn_c)``; ``F1``: ``2 p r / (p + r)`` per class, then averaged;
  a class never predicted (or never present) scores 0, as scikit-learn's ``zero_division=0``;
* ``TopKAccuracy(k)``: the share of rows whose true class is among the ``k`` highest outputs
  (ties counted in the class's favour);
* ``MAE``: ``mean |output - y|`` over every element (regression).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import _xp
from ._typing import Array

__all__ = ["F1", "MAE", "Metric", "Precision", "Recall", "TopKAccuracy"]


class Metric:
    """``counts(xp, output, y)`` -> device arrays summed over batches; ``value(host counts)`` -> the figure."""

    name: ClassVar[str] = "metric"
    needs: ClassVar[str] = "classes"  # "classes" (integer labels) or "values" (regression targets)
    greater_is_better: ClassVar[bool] = True  # the direction callbacks in mode="auto" take (MAE: lower)
    # every metric class by its ``name``: what a callback's mode="auto" looks a monitored name up in
    by_name: ClassVar[dict[str, type[Metric]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            Metric.by_name[cls.name] = cls

    def counts(self, xp: Any, output: Array, y: Array) -> list[Array]:  # pragma: no cover - abstract
        raise NotImplementedError

    def value(self, counts: list[np.ndarray]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _per_class(xp: Any, output: Array, y: Array) -> list[Array]:
    """``[tp, predicted, actual]`` per class from the outputs' argmax and the labels."""
    n_classes = int(output.shape[1])
    predicted = xp.argmax(output, axis=1)
    dtype = output.dtype
    p = _xp.one_hot(xp, predicted, n_classes, dtype)
    t = _xp.one_hot(xp, xp.astype(y, predicted.dtype), n_classes, dtype)  # the labels, as the argmax's dtype
    return [xp.sum(p * t, axis=0), xp.sum(p, axis=0), xp.sum(t, axis=0)]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
    return out


class _Averaged(Metric):
    def __init__(self, average: str | None = "macro") -> None:
        if average not in ("macro", None):
            raise ValueError(f"{type(self).__name__}: average must be 'macro' or None (per class), got {average!r}")
        self.average = average

    def counts(self, xp: Any, output: Array, y: Array) -> list[Array]:
        return _per_class(xp, output, y)

    def per_class(self, tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract

    def value(self, counts: list[np.ndarray]) -> Any:
        scores = self.per_class(*(np.asarray(c, dtype=np.float64) for c in counts))
        return float(np.mean(scores)) if self.average == "macro" else scores

    def __repr__(self) -> str:
        return f"{type(self).__name__}(average={self.average!r})"


class Precision(_Averaged):
    """``tp / (tp + fp)`` per class, macro-averaged over all output columns (``average=None``: per class)."""

    name = "precision"

    def per_class(self, tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
        return _ratio(tp, predicted)


class Recall(_Averaged):
    """``tp / (tp + fn)`` per class, macro-averaged over all output columns (``average=None``: per class)."""

    name = "recall"

    def per_class(self, tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
        return _ratio(tp, actual)


class F1(_Averaged):
    """``2 p r / (p + r)`` per class, macro-averaged over all output columns (``average=None``: per class)."""

    name = "f1"

    def per_class(self, tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
        p, r = _ratio(tp, predicted), _ratio(tp, actual)
        return _ratio(2 * p * r, p + r)


class TopKAccuracy(Metric):
    """The fraction of rows whose label is among the ``k`` highest outputs (a tie with the k-th counts as a hit)."""

    name = "top_k_accuracy"

    def __init__(self, k: int = 5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"TopKAccuracy: k must be a positive integer, got {k!r}")
        self.k = k

    def counts(self, xp: Any, output: Array, y: Array) -> list[Array]:
        labels = xp.astype(y, _xp.default_int(xp, _xp.array_device(output)))
        onehot = _xp.one_hot(xp, labels, int(output.shape[1]), output.dtype)
        true_score = xp.sum(output * onehot, axis=1, keepdims=True)
        above = xp.sum(xp.astype(output > true_score, output.dtype), axis=1)
        hits = xp.sum(xp.astype(above < self.k, output.dtype))
        return [hits, xp.asarray(float(output.shape[0]), dtype=output.dtype, device=_xp.array_device(output))]

    def value(self, counts: list[np.ndarray]) -> Any:
        return float(counts[0] / counts[1])

    def __repr__(self) -> str:
        return f"TopKAccuracy(k={self.k})"


class MAE(Metric):
    """Mean absolute error over all outputs, for regression models."""

    name = "mae"
    needs = "values"
    greater_is_better = False

    def counts(self, xp: Any, output: Array, y: Array) -> list[Array]:
        y = xp.reshape(xp.astype(y, output.dtype), output.shape)
        size = float(output.shape[0] * output.shape[1])
        return [xp.sum(xp.abs(output - y)), xp.asarray(size, dtype=output.dtype, device=_xp.array_device(output))]

    def value(self, counts: list[np.ndarray]) -> Any:
        return float(counts[0] / counts[1])


def _binary(loss: Any, n_outputs: int | None) -> bool:
    """One sigmoid output read as two classes (0 and 1): what the class metrics score for a binary model."""
    return loss is not None and loss.target_kind == "binary" and n_outputs == 1


def check_metrics(what: str, metrics: Any, loss: Any, n_outputs: int | None = None) -> list[Metric]:
    """``metrics`` (one or a list) as ``Metric`` objects that fit the loss's targets (TypeError/ValueError).

    Class metrics need class labels: a categorical loss, or a binary one with one output (classes 0 and 1).
    """
    checked: list[Metric] = []
    for given in [metrics] if isinstance(metrics, Metric | str) else list(metrics):
        metric = given
        if isinstance(given, str):  # by name, as Keras takes them: "f1", "precision", "mae", ...
            if given not in Metric.by_name:
                raise ValueError(f"Model.{what}: unknown metric {given!r}; known: {sorted(Metric.by_name)}")
            metric = Metric.by_name[given]()
        if not isinstance(metric, Metric):
            raise TypeError(f"Model.{what}: metrics must be portable_nn.metrics objects or their names, got "
                            f"{metric!r}")
        if metric.needs == "classes" and loss is not None and loss.target_kind != "classes" \
                and not _binary(loss, n_outputs):
            raise ValueError(f"Model.{what}: {metric!r} needs class labels (a categorical loss, or a binary one "
                             f"with one output); this model's loss is {loss!r} with {n_outputs} outputs")
        if metric.needs == "values" and loss is not None and loss.target_kind != "values":
            raise ValueError(f"Model.{what}: {metric!r} compares outputs with regression targets; this model's "
                             f"loss {loss!r} takes {loss.target_kind} (use accuracy, precision, recall or F1)")
        checked.append(metric)
    return checked


def labels_for(loss: Any, xp: Any, y: Array) -> Array:
    """What the metrics compare with: class indices (one-hot rows become their argmax; a binary model's
    ``(n, 1)`` targets become ``(n,)``) or the targets."""
    if loss is not None and loss.target_kind == "classes" and y.ndim == 2:
        return xp.argmax(y, axis=1)
    if loss is not None and loss.target_kind == "binary" and y.ndim == 2 and y.shape[1] == 1:
        return xp.reshape(y, (-1,))
    return y


def class_scores(loss: Any, xp: Any, output: Array) -> Array:
    """The outputs the class metrics rank: a binary model's one probability ``p`` becomes ``[1 - p, p]``."""
    if _binary(loss, int(output.shape[1])):
        return xp.concat([1 - output, output], axis=1)
    return output


def metric_counts(metrics: list[Metric], xp: Any, outputs: list[tuple[Array, Array]]) -> list[list[Array]]:
    """Each metric's counts summed over ``(output, y)`` batches: device arrays, no host sync."""
    sums = []
    for metric in metrics:
        total: list[Any] | None = None
        for output, y in outputs:
            counts = metric.counts(xp, output, y)
            total = counts if total is None else [a + b for a, b in zip(total, counts, strict=True)]
        sums.append(total or [])
    return sums


# What the training figures are, beside the metrics: True where higher is better.
FIGURES = {"loss": False, "data_loss": False, "regularization_loss": False, "accuracy": True}


def greater_is_better(name: str) -> bool | None:
    """The direction of a figure or metric named ``name`` (``val_`` prefix and ``_<i>`` suffix aside), or None
    when the name is unknown."""
    base = name[4:] if name.startswith("val_") else name
    for candidate in (base, base.rsplit("_", 1)[0] if base.rsplit("_", 1)[-1].isdigit() else base):
        if candidate in FIGURES:
            return FIGURES[candidate]
        if candidate in Metric.by_name:
            return Metric.by_name[candidate].greater_is_better
    return None


def metric_values(metrics: list[Metric], counts: list[list[Array]], prefix: str = "") -> dict[str, Any]:
    """The metrics' values from their counts (one read-back each), named ``prefix + name``."""
    results: dict[str, Any] = {}
    for i, (metric, total) in enumerate(zip(metrics, counts, strict=True)):
        name = prefix + (metric.name if prefix + metric.name not in results else f"{metric.name}_{i}")
        results[name] = metric.value([np.asarray(_xp.to_numpy(a)) for a in total])
    return results


def evaluate_metrics(metrics: list[Metric], xp: Any, outputs: list[tuple[Array, Array]]) -> dict[str, Any]:
    """Each metric's value over ``(output, y)`` batches: counts summed on the device, one read-back."""
    return metric_values(metrics, metric_counts(metrics, xp, outputs))
