"""What the training loop works with: ``History``, batches and prepared targets, the in-memory source of
batches, the metrics scored at epoch ends, the report line, and Ctrl-C at step boundaries.  The loop itself
is ``engine.py``; the runners that plug into it are ``runners.py``.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import _xp
from .. import metrics as metrics_
from .._typing import Array, Namespace
from .step import Plan

__all__ = ["History", "InMemory", "Scored", "StepBoundaryInterrupts", "batches", "emit", "prepared_targets",
           "scoring"]


@dataclass
class History:
    """Per-epoch figures of a ``train`` call (host floats)."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    data_loss: list[float] = field(default_factory=list)
    regularization_loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    # train(metrics=[...]): each metric's value per epoch, by name ("f1", "val_f1", ...)
    metrics: dict[str, list[Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, list[Any]]:
        out = {k: list(v) for k, v in self.__dict__.items() if k != "metrics"}
        out.update({k: list(v) for k, v in self.metrics.items()})
        return out

    def record(self, figures: dict[str, Any]) -> None:
        """Append one epoch's figures (a metric's name goes to ``metrics``)."""
        for k, v in figures.items():
            (getattr(self, k) if k in _FIELDS else self.metrics.setdefault(k, [])).append(v)


_FIELDS = {"epoch", "loss", "data_loss", "regularization_loss", "accuracy", "learning_rate", "val_loss",
           "val_accuracy"}


def batches(n: int, batch_size: int | None) -> list[slice]:
    """In-bounds row slices of ``batch_size`` (one slice for the full batch)."""
    if not batch_size:
        return [slice(0, n)]
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def prepared_targets(plan: Plan, xp: Namespace, y: Array, weights: Array | None = None) -> tuple[Array, Array]:
    """Targets for the loss and for the accuracy, built once per call.

    ``weights`` (per sample) become the last column of the loss targets: shuffles, batches, shards and
    compiled scans then carry them with no code of their own (``step.forward_backward`` splits them off).
    """
    net = plan.network
    y_loss = plan.loss.prepare_targets(xp, y, net.n_outputs(), net.dtype())
    if weights is not None:
        y_loss = xp.concat([y_loss, xp.reshape(xp.astype(weights, y_loss.dtype), (-1, 1))], axis=1)
    return y_loss, plan.accuracy.prepare_targets(xp, y)


class InMemory:
    """The batches of one epoch over in-memory arrays: slices of X (taken in a shuffled order if asked)."""

    def __init__(self, plan: Plan, X: Array, y: Array, batch_size: int | None, shuffle: bool, rng: Any) -> None:
        self.X, self.shuffle, self.rng = X, shuffle, rng
        self.xp = _xp.namespace(X)
        self.y_loss, self.y_acc = prepared_targets(plan, self.xp, y, plan.weights)  # once per call, not per step
        self.slices = batches(int(X.shape[0]), batch_size)
        self.steps = len(self.slices)

    def epoch(self, prepare: Any) -> Iterator[tuple[Array, Array, Array]]:
        xp, X = self.xp, self.X
        Xe, yle, yae = X, self.y_loss, self.y_acc
        if self.shuffle:
            order = xp.asarray(self.rng.permutation(int(X.shape[0])), device=_xp.array_device(X))
            Xe, yle, yae = (xp.take(a, order, axis=0) for a in (X, yle, yae))
        for rows in self.slices:
            yield Xe[rows, ...], yle[rows, ...], yae[rows, ...]


class StepBoundaryInterrupts:
    """Ctrl-C during ``train`` takes effect between two steps, never inside an update (main thread only).

    A second Ctrl-C stops at once.
    """

    def __init__(self) -> None:
        self.pending = False
        self.previous: Any = None

    def __enter__(self) -> StepBoundaryInterrupts:
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def scoring(plan: Plan, metrics: list[Any] | None, X: Array, y: Array, validation_data: Any,
            batch_size: int | None) -> Scored | None:
    """What ``train(metrics=[...])`` scores at each epoch's end (None without metrics): the training data with
    the model as it is then (not a running mean over the epoch's changing model, as Keras reports) and the
    validation data (named ``val_<name>``).  Streamed Dask training data are not read twice an epoch: only
    their validation data are scored."""
    if not metrics:
        return None
    sets = [] if _xp.is_lazy(X) else [("", X, y)]
    if validation_data is not None:
        sets.append(("val_", *validation_data))
    return Scored(plan, metrics, sets, batch_size)


class Scored:
    """Metrics over data sets ``[(prefix, X, y), ...]``: counts summed on the device over the batches (one
    inference pass over each set), values named ``prefix + name`` once the counts are read back."""

    def __init__(self, plan: Plan, metrics: list[Any], sets: list[tuple[str, Array, Array]],
                 batch_size: int | None) -> None:
        self.metrics, self.batch_size = list(metrics), batch_size
        self.sets = [(prefix, X, metrics_.labels_for(plan.loss, _xp.namespace(X), y)) for prefix, X, y in sets]

    def counts(self, plan: Plan) -> list[list[list[Array]]]:
        """Per data set, per metric, the summed counts (device arrays)."""
        out = []
        for _, X, labels in self.sets:
            xp = _xp.namespace(X)
            outputs = [(metrics_.class_scores(plan.loss, xp, plan.network.infer(X[s, ...])), labels[s, ...])
                       for s in batches(int(X.shape[0]), self.batch_size)]
            out.append(metrics_.metric_counts(self.metrics, xp, outputs))
        return out

    def values(self, counts: list[list[list[Array]]]) -> dict[str, Any]:
        """The metrics' values by name, from ``counts`` (read back here)."""
        values: dict[str, Any] = {}
        for (prefix, _, _), sums in zip(self.sets, counts, strict=True):
            values.update(metrics_.metric_values(self.metrics, sums, prefix))
        return values


def emit(info: dict[str, Any], verbose: bool, callback: Callable[[dict[str, Any]], None] | None) -> None:
    """A report: the book's line (``verbose``) and the user's callback."""
    if verbose:
        line = (f"epoch: {info['epoch']}, step: {info['step']}, acc: {info['accuracy']:.3f}, "
                f"loss: {info['loss']:.3f}, lr: {info['learning_rate']:.6g}")
        if "val_loss" in info:
            line += f", val_acc: {info['val_accuracy']:.3f}, val_loss: {info['val_loss']:.3f}"
        print(line, file=sys.stdout)
    if callback is not None:
        callback(info)
