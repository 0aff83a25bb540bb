"""Callbacks for ``Model.train(..., callbacks=[...])``: code that runs at each epoch's end, on the host.

The protocol (Keras' names): ``set_model(model)``, ``on_train_begin(logs)``,
``on_epoch_end(epoch, logs)`` and ``on_train_end(logs)``.  ``logs`` holds the
epoch's figures as host floats: ``loss``, ``data_loss``,
``regularization_loss``, ``accuracy``, ``learning_rate`` and, with
validation data, ``val_loss`` and ``val_accuracy``.  A callback stops
training cleanly by returning True from ``on_epoch_end`` (or by setting
``model.stop_training = True``): ``train`` returns the ``History`` so far.

With callbacks, every epoch ends with a report point (one read-back an
epoch), eagerly, compiled (one epoch per dispatch) and in data-parallel
training (every rank runs them with the same figures, so every rank makes
the same decision; ``ModelCheckpoint`` writes on rank 0 only).
"""

from __future__ import annotations

import math
import string
import sys
from typing import Any

import numpy as np

from . import _xp, metrics

__all__ = ["Callback", "CallbackList", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau"]


class Callback:
    """The protocol, with hooks that do nothing."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Before the first step of a ``train`` call."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        """After each epoch, with its figures; True stops training."""
        return None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """After the last step (also after a callback stopped training)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"

    def get_config(self) -> dict[str, Any]:
        return {}


def _direction(owner: str, monitor: str) -> str:
    """``"max"`` or ``"min"`` for ``mode="auto"``: what the figure or metric named ``monitor`` declares."""
    greater = metrics.greater_is_better(monitor)
    if greater is None:
        raise ValueError(f"{owner}: mode='auto' cannot tell whether {monitor!r} should go up or down (known: "
                         f"{', '.join(sorted([*metrics.FIGURES, *metrics.Metric.by_name]))}, each also as val_*); "
                         f"pass mode='max' or mode='min'")
    return "max" if greater else "min"


class _Monitor(Callback):
    """Tracks the best value of ``monitor``, with Keras 3's rules (``MonitorCallback``): the first value is the
    best so far (a ``baseline`` stands in for it); a value improves on a reference when ``value + min_delta <
    reference`` (mode "min") or ``value - min_delta > reference`` ("max"), ``min_delta`` taken by its
    absolute value; a NaN never improves (except as the first value, as in Keras)."""

    def __init__(self, owner: str, monitor: str, min_delta: float, mode: str, verbose: bool = False) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        min_delta = float(min_delta)
        if not math.isfinite(min_delta):
            raise ValueError(f"{owner}: min_delta must be a finite number, got {min_delta!r}")
        self.owner, self.monitor, self.min_delta = owner, str(monitor), abs(min_delta)  # Keras: |min_delta|
        self.mode = mode if mode != "auto" else _direction(owner, self.monitor)
        self.verbose = bool(verbose)
        self.best: float | None = None

    def reset(self) -> None:
        self.best = None

    def value(self, logs: dict[str, float]) -> float:
        if self.monitor not in logs:
            raise ValueError(f"{self.owner}: monitor={self.monitor!r} is not among this run's figures "
                             f"{sorted(logs)} (val_* figures need validation_data)")
        return float(logs[self.monitor])

    def is_improvement(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        return value + self.min_delta < reference if self.mode == "min" else value - self.min_delta > reference

    def improved(self, value: float) -> bool:
        """Whether ``value`` improves on the best so far (and records it if so)."""
        if self.is_improvement(value, self.best):
            self.best = value
            return True
        return False

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"{self.owner}: {text}", file=sys.stdout)


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs -- epoch by
    epoch as Keras 3 decides (tested against it on the same sequences of values).

    ``baseline``: the wait restarts only on values that also beat it; ``start_from_epoch``: the first epochs
    (that many) are not monitored.  ``restore_best``: at the end, the parameters of the best epoch come back
    (copies taken with ``get_parameters``: a real copy on every backend).  ``verbose``: says when it stopped
    and what it restored.
    """

    def __init__(self, monitor: str = "val_loss", *, patience: int = 0, min_delta: float = 0.0,
                 restore_best: bool = True, mode: str = "auto", baseline: float | None = None,
                 start_from_epoch: int = 0, verbose: bool = False) -> None:
        super().__init__("EarlyStopping", monitor, min_delta, mode, verbose)
        for name, count in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"EarlyStopping: {name} must be an integer >= 0, got {count!r}")
        self.patience, self.restore_best, self.start_from_epoch = patience, bool(restore_best), start_from_epoch
        self.baseline = None if baseline is None else float(baseline)
        self.wait = 0
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.best_parameters: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.reset()
        self.wait, self.best_epoch, self.stopped_epoch, self.best_parameters = 0, None, None, None

    def _keep(self, epoch: int) -> None:
        self.best_epoch = epoch
        if self.restore_best:  # the running statistics too (BatchNorm): buffers are rebound, never written
            self.best_parameters = (self.model.get_parameters(), self.model.network.buffer_values())

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        current = self.value(logs)
        if epoch - 1 < self.start_from_epoch:  # Keras counts epochs from 0
            return None
        if self.restore_best and self.best_parameters is None:
            self._keep(epoch)
        self.wait += 1
        if self.improved(current):
            self._keep(epoch)
            if self.baseline is None or self.is_improvement(current, self.baseline):
                self.wait = 0
            return None
        if self.wait >= self.patience and epoch > 1:
            self.stopped_epoch = epoch
            return True
        return None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        restored = self.restore_best and self.best_parameters is not None
        if self.stopped_epoch is not None or restored:
            stopped = f"stopped at epoch {self.stopped_epoch}" if self.stopped_epoch is not None else "did not stop"
            self.say(f"{stopped}" + (f", restored epoch {self.best_epoch}" if restored else ""))
        if restored:
            parameters, buffers = self.best_parameters
            self.model.set_parameters(parameters)  # moved to where the model lives now (Dask: back home)
            current = self.model.network.buffer_values()
            self.model.network.set_buffer_values([_xp.move(b, _xp.namespace(c), _xp.array_device(c))
                                                  for b, c in zip(buffers, current, strict=True)])

    def get_config(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta,
                "restore_best": self.restore_best, "mode": self.mode, "baseline": self.baseline,
                "start_from_epoch": self.start_from_epoch}


class ModelCheckpoint(_Monitor):
    """Save the model (the model file format, written atomically) at each epoch's end.

    ``save_best_only``: only when ``monitor`` improved.  ``path`` may hold
    ``{epoch}`` and the epoch's figures (``"ck-{epoch:02d}-{val_loss:.2f}.npz"``,
    Keras's pattern), formatted with the epoch's logs.  In data-parallel
    training only rank 0 writes.
    """

    def __init__(self, path: Any, monitor: str = "val_loss", *, save_best_only: bool = True,
                 min_delta: float = 0.0, mode: str = "auto") -> None:
        super().__init__("ModelCheckpoint", monitor, min_delta, mode)
        self.path, self.save_best_only = path, bool(save_best_only)
        self.saved: list[str] = []
        self.fields = _fields("ModelCheckpoint", str(path))

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        if (self.improved(self.value(logs)) or not self.save_best_only) and getattr(self.model, "rank", 0) == 0:
            missing = sorted(self.fields - {"epoch", *logs})
            if missing:
                raise ValueError(f"ModelCheckpoint: path {str(self.path)!r} names {missing}, which are not among "
                                 f"this run's figures {sorted(logs)} (val_* figures need validation data)")
            path = str(self.path).format(**{**logs, "epoch": epoch})
            self.model.save(path)
            self.saved.append(path)
        return None

    def get_config(self) -> dict[str, Any]:
        return {"path": str(self.path), "monitor": self.monitor, "save_best_only": self.save_best_only}


def _fields(owner: str, path: str) -> set[str]:
    """The names a path pattern formats (``{epoch:02d}``, ``{val_loss:.2f}``); a malformed pattern is refused."""
    hint = "use names in braces, e.g. 'ck-{epoch:02d}-{val_loss:.2f}.npz'"
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(path) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{owner}: path {path!r} is not a valid pattern ({exc}); {hint}") from None
    if "" in fields or any(name.isdigit() for name in fields):
        raise ValueError(f"{owner}: path {path!r} has a positional field; {hint}")
    try:
        path.format(**dict.fromkeys(fields, 1.0) | {"epoch": 1})
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(f"{owner}: path {path!r} is not a valid pattern ({exc}); {hint}") from None
    return fields


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs, then
    wait ``cooldown`` epochs before counting again -- epoch by epoch as Keras 3 decides (tested against it).

    Both ``learning_rate`` (what decay starts from) and ``current_learning_rate`` are scaled, never below
    ``min_lr`` (no reduction once the rate is there); on JAX the rates are traced inputs, so nothing recompiles.
    ``verbose``: says each change (``ReduceLROnPlateau: learning rate 0.001 -> 0.0005``).
    """

    def __init__(self, monitor: str = "val_loss", *, factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, min_lr: float = 0.0, mode: str = "auto", cooldown: int = 0,
                 verbose: bool = False) -> None:
        super().__init__("ReduceLROnPlateau", monitor, min_delta, mode, verbose)
        factor = float(factor)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}")
        for name, count in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"ReduceLROnPlateau: {name} must be an integer >= 0, got {count!r}")
        self.factor, self.patience, self.min_lr, self.cooldown = factor, patience, float(min_lr), cooldown
        self.wait = self.cooldown_counter = 0
        self.reductions: list[tuple[int, float]] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.reset()
        self.wait = self.cooldown_counter = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> bool | None:
        current = self.value(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.improved(current):
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                self._reduce(epoch)
        return None

    def _reduce(self, epoch: int) -> None:
        optimizer = self.model.optimizer
        old = optimizer.current_learning_rate
        if old > float(np.float32(self.min_lr)):  # as Keras compares, in float32
            new = max(old * self.factor, self.min_lr)
            optimizer.learning_rate = max(self.min_lr, optimizer.learning_rate * self.factor) or \
                optimizer.learning_rate
            optimizer.current_learning_rate = new
            self.reductions.append((epoch, new))
            self.say(f"learning rate {old:.6g} -> {new:.6g} at epoch {epoch}")
            self.cooldown_counter, self.wait = self.cooldown, 0

    def get_config(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "factor": self.factor, "patience": self.patience,
                "min_delta": self.min_delta, "min_lr": self.min_lr, "cooldown": self.cooldown}


class CallbackList:
    """The callbacks of one ``train`` call, as the loop calls them."""

    def __init__(self, callbacks: Any, model: Any) -> None:
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not callable(getattr(cb, "on_epoch_end", None)):
                raise TypeError(f"Model.train: callbacks must have on_epoch_end(epoch, logs) (see "
                                f"portable_nn.callbacks.Callback), got {type(cb).__name__}")
        self.callbacks, self.model = callbacks, model

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def begin(self) -> None:
        self.model.stop_training = False
        for cb in self.callbacks:
            if hasattr(cb, "set_model"):
                cb.set_model(self.model)
            if hasattr(cb, "on_train_begin"):
                cb.on_train_begin({})

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> bool:
        """Run every callback (all of them, even after one asked to stop); whether training should stop."""
        stop = False
        for cb in self.callbacks:
            stop = bool(cb.on_epoch_end(epoch, dict(logs))) or stop
        return stop or bool(getattr(self.model, "stop_training", False))

    def end(self) -> None:
        for cb in self.callbacks:
            if hasattr(cb, "on_train_end"):
                cb.on_train_end({})
