"""The training loop: epochs, batches, reports, callbacks -> ``History``.

A step never waits for the device: losses and accuracies are summed on the
device and read back only at report points (every ``print_every`` steps and
at the end), where the divergence guard also looks.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _xp
from .. import metrics as metrics_
from .._typing import Array, Namespace
from .guard import Guard, guard_for
from .step import Plan, evaluate_sums, train_step
from .stream import Streamed

__all__ = ["History", "batches", "fit"]


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


@dataclass
class _Run:
    """The loop's position and running sums since the start of the epoch (device arrays)."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    loss_sum: Any = 0.0
    correct_sum: Any = 0
    seen: int = 0
    compared: int = 0
    pending: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # epoch figures still on the device


def fit(plan: Plan, X: Array, y: Array, *, epochs: int, batch_size: int | None, print_every: int,
        validation_data: tuple[Array, Array] | None, shuffle: bool, seed: int | None, verbose: bool,
        callback: Callable[[dict[str, Any]], None] | None, step: Callable[..., Any] = train_step,
        parallel: Any = None, callbacks: Any = None, metrics: list[Any] | None = None) -> History:
    """Train ``plan`` on checked data; see ``Model.train``.

    ``step``: ``train_step`` or a compiled one; ``parallel``: a
    ``distributed.DataParallel`` (every rank runs this loop on the same global batches).
    """
    optimizer = plan.optimizer
    assert optimizer is not None
    # Shuffle orders are drawn on the host (one index vector an epoch, sent once):
    # the same seed gives the same order on every backend.
    rng = np.random.default_rng(seed)
    if validation_data is not None and _xp.is_lazy(validation_data[0]):
        # a validation set is evaluated every epoch: brought into memory once
        validation_data = (validation_data[0].compute(), validation_data[1].compute())
    scored = scoring(plan, metrics, X, y, validation_data, batch_size)
    if not _xp.is_lazy(X):
        source = _InMemory(plan, X, y, batch_size, shuffle, rng)
        return _loop(plan, source, _xp.namespace(X), guard_for(X, plan.network, optimizer), epochs=epochs,
                     batch_size=batch_size, print_every=print_every, validation_data=validation_data,
                     verbose=verbose, callback=callback, step=step, parallel=parallel, callbacks=callbacks,
                     scored=scored)
    # Dask: stream windows of blocks into their own library (training/stream.py); the parameters and state
    # move there for the call and back to Dask arrays after it
    streamed = Streamed(plan, X, y, batch_size, shuffle, rng)
    local = streamed.first_block()
    plan.network.to(local)
    plan.accuracy.to(local)
    try:
        return _loop(plan, streamed, _xp.namespace(local), guard_for(local, plan.network, optimizer),
                     epochs=epochs, batch_size=batch_size, print_every=print_every,
                     validation_data=validation_data, verbose=verbose, callback=callback, step=step,
                     parallel=parallel, callbacks=callbacks, scored=scored)
    finally:
        plan.network.to(X)
        plan.accuracy.to(X)
        xp, dev = _xp.namespace(X), _xp.array_device(X)
        for p in plan.parameters:  # the book's dweight/dbias: the last step's gradients, as Dask arrays too
            if p.grad is not None:
                p.grad = _xp.move(p.grad, xp, dev)


def _loop(plan: Plan, source: Any, xp: Namespace, guard: Guard, *, epochs: int, batch_size: int | None,
          print_every: int, validation_data: tuple[Array, Array] | None, verbose: bool,
          callback: Callable[[dict[str, Any]], None] | None, step: Callable[..., Any], parallel: Any,
          callbacks: Any, scored: Any = None) -> History:
    """The epochs and steps over ``source``'s batches: reports, the guard, interrupts."""
    history = History()
    steps = source.steps
    total_steps = epochs * steps
    validation = None
    if validation_data is not None:
        Xv, yv = validation_data
        validation = (Xv, *prepared_targets(plan, _xp.namespace(Xv), yv), batches(int(Xv.shape[0]), batch_size))
    run = _Run()
    with StepBoundaryInterrupts() as interrupts:
        for epoch in range(1, epochs + 1):
            run.epoch, run.loss_sum, run.correct_sum, run.seen, run.compared = epoch, 0.0, 0, 0, 0
            for i, (xb, ylb, yab) in enumerate(source.epoch(lambda y: prepared_targets(plan, xp, y))):
                run.step, run.global_step = i + 1, run.global_step + 1
                guard.at(epoch, i + 1)
                if parallel is None:
                    batch_loss, correct, compared = step(plan, xb, ylb, yab, guard.before_update)
                    stop = interrupts.pending
                else:  # a rank's Ctrl-C travels in the step's all-reduce: every rank stops after the same step
                    batch_loss, correct, compared, stop = parallel.step(plan, xb, ylb, yab, guard.before_update,
                                                                        interrupts.pending)
                guard.after_step(batch_loss)
                run.loss_sum, run.correct_sum = run.loss_sum + batch_loss, run.correct_sum + correct
                run.seen, run.compared = run.seen + int(xb.shape[0]), run.compared + compared
                if i == steps - 1:
                    if parallel is not None:  # the epoch's validation figures use the ranks' common statistics
                        parallel.average_buffers(plan.network)
                    accuracy = xp.astype(run.correct_sum, batch_loss.dtype) / run.compared
                    run.pending.append((epoch, _epoch_figures(plan, run.loss_sum / run.seen, accuracy, validation,
                                                              scored)))
                at_report = run.global_step % print_every == 0 or run.global_step == total_steps
                epoch_end = bool(callbacks) and i == steps - 1  # callbacks see every epoch's figures
                finished: list[tuple[int, dict[str, float]]] = []
                if at_report or stop or epoch_end:
                    finished = _report(plan, xp, history, run, guard, verbose and at_report, callback, total_steps)
                    if parallel is not None:
                        parallel.check_in_step(plan.network, f"epoch {epoch}, step {i + 1}")
                if callbacks and True in [callbacks.epoch_end(e, logs) for e, logs in finished]:
                    guard.at_end()
                    return history  # a callback stopped training, cleanly, at an epoch's end
                if parallel is None:
                    stop = interrupts.pending  # a Ctrl-C during the report counts at this step too
                if stop:
                    interrupted = KeyboardInterrupt(
                        f"Model.train: interrupted; the model is at the end of epoch {epoch}, step {i + 1} "
                        f"({run.global_step} of {total_steps} steps); the exception's .history holds the figures")
                    interrupted.history = history  # type: ignore[attr-defined]
                    raise interrupted
    guard.at_end()
    return history


class _InMemory:
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


def _epoch_figures(plan: Plan, data_loss: Array, accuracy: Array, validation: Any,
                   scored: Any = None) -> dict[str, Any]:
    reg = plan.loss.regularization_loss()
    figures = {"data_loss": data_loss, "regularization_loss": reg, "loss": data_loss + reg,
               "accuracy": accuracy, "learning_rate": plan.optimizer.current_learning_rate}  # type: ignore[union-attr]
    if validation is not None:
        figures["val_loss"], figures["val_accuracy"] = evaluate_sums(plan, *validation)
    if scored is not None:
        figures["metrics"] = (scored, scored.counts(plan))  # device arrays: read back at the next report point
    return figures


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


def _report(plan: Plan, xp: Namespace, history: History, run: _Run, guard: Guard, verbose: bool,
            callback: Any, total_steps: int) -> list[tuple[int, dict[str, float]]]:
    """The one host sync: read figures back, check for divergence, record, print, call back."""
    keys = [(i, k) for i, (_, figs) in enumerate(run.pending) for k in figs if k != "metrics"]
    values = [run.pending[i][1][k] for i, k in keys]
    guarded = guard.pending()
    host = _xp.to_host(xp, [*values, *guarded, run.loss_sum, run.correct_sum])
    guard.check(host[len(keys):len(keys) + len(guarded)])
    by_epoch: dict[int, dict[str, float]] = {}
    for (i, k), value in zip(keys, host, strict=False):
        by_epoch.setdefault(run.pending[i][0], {})[k] = value
    for epoch, figs in run.pending:
        if "metrics" in figs:
            scored, counts = figs["metrics"]
            by_epoch[epoch].update(scored.values(counts))
    for epoch, figs in by_epoch.items():
        history.epoch.append(epoch)
        history.record(figs)
    run.pending.clear()
    loss, acc = host[-2] / run.seen, host[-1] / run.compared
    lr = plan.optimizer.current_learning_rate  # type: ignore[union-attr]
    info = {"epoch": run.epoch, "step": run.step, "global_step": run.global_step,
            "total_steps": total_steps, "loss": loss, "accuracy": acc, "learning_rate": lr}
    if history.regularization_loss:
        info["regularization_loss"] = history.regularization_loss[-1]
    if history.val_loss:
        info["val_loss"], info["val_accuracy"] = history.val_loss[-1], history.val_accuracy[-1]
    emit(info, verbose, callback)
    return list(by_epoch.items())


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
