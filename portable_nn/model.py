"""``Model``: the book's add / set / finalize / train / evaluate / predict.

A training step never waits for the device: losses and accuracies are summed
on the device and read back only at report points (every ``print_every``
steps and at the end), where divergence is also checked.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import _xp
from .accuracy import Accuracy, CategoricalAccuracy, RegressionAccuracy
from .activations import Softmax
from .layers import Dense, Dropout
from .losses import BinaryCrossentropy, CategoricalCrossentropy, Loss, SoftmaxCategoricalCrossentropy
from .optimizers import Optimizer

__all__ = ["Model", "History"]


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

    def as_dict(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in self.__dict__.items()}


def _positive_int(owner: str, name: str, value: Any, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


class Model:
    """A stack of layers trained with one loss, optimizer and accuracy."""

    def __init__(self) -> None:
        self.layers: list[Any] = []
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        self.accuracy: Accuracy | None = None
        self.trainable_layers: list[Any] = []
        self._fused: SoftmaxCategoricalCrossentropy | None = None
        self._finalized = False

    # -- building -----------------------------------------------------------
    def add(self, layer: Any) -> Model:
        if not (hasattr(layer, "forward") and hasattr(layer, "backward")):
            raise TypeError(f"Model.add: expected a layer with forward/backward, got {type(layer).__name__}")
        self.layers.append(layer)
        self._finalized = False
        return self

    def set(self, *, loss: Loss | None = None, optimizer: Optimizer | None = None,
            accuracy: Accuracy | None = None) -> Model:
        if loss is not None:
            self.loss = loss
        if optimizer is not None:
            self.optimizer = optimizer
        if accuracy is not None:
            self.accuracy = accuracy
        self._finalized = False
        return self

    def finalize(self) -> Model:
        """Link the layers; use the fused softmax-CE backward for Softmax + CCE."""
        if not self.layers:
            raise ValueError("Model.finalize: the model has no layers; call model.add(...) first")
        if self.loss is None:
            raise ValueError("Model.finalize: no loss; call model.set(loss=..., optimizer=..., accuracy=...) first")
        width = None
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                if width is not None and layer.n_inputs != width:
                    raise ValueError(
                        f"Model.finalize: layer {i} (Dense) expects {layer.n_inputs} inputs "
                        f"but the previous Dense layer has {width} neurons"
                    )
                width = layer.n_neurons
        if self.accuracy is None:
            self.accuracy = self._default_accuracy()
        self.trainable_layers = [layer for layer in self.layers if getattr(layer, "trainable", False)]
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                layer.need_dinput = i > 0  # nothing consumes dL/dX of the model's input
        self.loss.remember_trainable_layers(self.trainable_layers)
        fused = isinstance(self.layers[-1], Softmax) and isinstance(self.loss, CategoricalCrossentropy)
        self._fused = SoftmaxCategoricalCrossentropy() if fused else None
        self._finalized = True
        return self

    def _default_accuracy(self) -> Accuracy:
        if isinstance(self.loss, BinaryCrossentropy):
            return CategoricalAccuracy(binary=True)
        if isinstance(self.loss, CategoricalCrossentropy | SoftmaxCategoricalCrossentropy):
            return CategoricalAccuracy()
        return RegressionAccuracy()

    def _require(self, what: str, *, optimizer: bool = False) -> None:
        if not self._finalized:
            raise RuntimeError(f"Model.{what}: call model.set(loss=..., optimizer=...) and model.finalize() first")
        if optimizer and self.optimizer is None:
            raise RuntimeError(f"Model.{what}: no optimizer; call model.set(optimizer=...) and finalize()")

    # -- placement ----------------------------------------------------------
    def to(self, *, like: Any) -> Model:
        """Move parameters and optimizer state to the library and device of ``like``.

        DLPack where both libraries share memory, the host otherwise.  The
        explicit way to move a trained model (e.g. from CuPy to NumPy).
        """
        xp, dev = _xp.namespace(like), _xp.array_device(like)
        for layer in self.layers:
            if not hasattr(layer, "parameter_names"):
                continue
            for name in layer.state_attributes():
                value = getattr(layer, name, None)
                if value is not None:
                    setattr(layer, name, _xp.move(value, xp, dev))
            layer._placed = True
        return self

    def _place(self, like: Any) -> None:
        for layer in self.layers:
            if hasattr(layer, "place") and not layer._placed:
                layer.place(like)

    # -- forward / backward -------------------------------------------------
    def forward(self, x: Any, training: bool = False) -> Any:
        """The output of the last layer (probabilities for Softmax)."""
        return self._forward_through(self.layers, x, training)

    @staticmethod
    def _forward_through(layers: list[Any], x: Any, training: bool) -> Any:
        for layer in layers:
            x = layer.forward(x, training) if isinstance(layer, Dropout) else layer.forward(x)
        return x

    def _loss_and_output(self, x: Any, y: Any, training: bool) -> tuple[Any, Any]:
        """Per-sample losses and the output (fused softmax-CE when finalized so)."""
        if self._fused is not None:
            losses = self._fused.forward(self._forward_through(self.layers[:-1], x, training), y)
            self.layers[-1].output = self._fused.output
            return losses, self._fused.output
        out = self.forward(x, training)
        return self.loss.forward(out, y), out  # type: ignore[union-attr]

    def _loss_sum_and_grad(self, xp: Any, x: Any, y: Any) -> tuple[Any, Any, Any]:
        """Training: the summed loss, the output and dL/d(output) -- dL/d(logits) when fused."""
        if self._fused is not None:
            loss_sum, dvalue = self._fused.forward_backward(self._forward_through(self.layers[:-1], x, True), y)
            self.layers[-1].output = self._fused.output
            return loss_sum, self._fused.output, dvalue
        out = self.forward(x, True)
        loss_sum = xp.sum(self.loss.forward(out, y))  # type: ignore[union-attr]
        return loss_sum, out, self.loss.backward(out, y)  # type: ignore[union-attr]

    def _backward(self, dvalue: Any) -> None:
        """Backpropagate dL/d(output) -- or dL/d(logits) when fused, skipping the Softmax."""
        layers = self.layers[:-1] if self._fused is not None else self.layers
        for layer in reversed(layers):
            dvalue = layer.backward(dvalue)
            if dvalue is None:  # a first Dense layer skips the unused dL/dX
                break

    def _train_step(self, xp: Any, xb: Any, yb: Any, yb_loss: Any, check: Any) -> tuple[Any, Any, int]:
        """Forward, loss, accuracy, backward and update on one batch; sums stay on the device.

        ``check(loss_sum)`` runs between the loss and the update: on host
        backends it raises on a non-finite loss before any parameter changes.
        """
        batch_loss, output, dvalue = self._loss_sum_and_grad(xp, xb, yb_loss)
        check(batch_loss)
        correct = self.accuracy.compare(self.layers[-1].predictions(output), yb)  # type: ignore[union-attr]
        self._backward(dvalue)
        opt = self.optimizer
        opt.pre_update_params()  # type: ignore[union-attr]
        opt.update_all(self.trainable_layers)  # type: ignore[union-attr]
        opt.post_update_params()  # type: ignore[union-attr]
        if _xp.is_lazy(xb):
            self._persist()
        return batch_loss, xp.count_nonzero(correct), math.prod(correct.shape)

    def _accuracy_targets(self, xp: Any, y: Any) -> Any:
        """Class labels as the predictions' integer dtype (one-hot rows as indices), once per call."""
        acc = self.accuracy
        if not isinstance(acc, CategoricalAccuracy) or acc.binary or _xp.is_lazy(y):
            return y
        if y.ndim == 2:
            y = xp.argmax(y, axis=1)
        int_dtype = _xp.default_int(xp, _xp.array_device(y))
        return y if y.dtype == int_dtype else xp.astype(y, int_dtype)

    def _loss_targets(self, xp: Any, y: Any) -> Any:
        """Targets in the form the loss computes with, built once per call, not per step.

        Class indices become one-hot rows and every label is cast to the
        model's floating dtype -- the per-step label work of the loss is then
        a no-op.
        """
        width = self._n_outputs()
        dtype = next((l.weight.dtype for l in self.trainable_layers), None)
        if width is None or dtype is None or _xp.is_lazy(y):
            return y
        if isinstance(self.loss, CategoricalCrossentropy) and y.ndim == 1:
            labels = xp.astype(y, dtype)
            return _xp.one_hot(xp, labels, width, labels)
        if y.ndim == 1 and width == 1:
            y = xp.reshape(y, (-1, 1))
        return y if y.dtype == dtype else xp.astype(y, dtype)

    def _persist(self) -> None:
        """Dask: compute the new parameters now, or the graph would grow every step."""
        import dask

        refs = [(layer, name) for layer in self.trainable_layers for name in layer.state_attributes()]
        values = dask.persist(*[getattr(layer, name) for layer, name in refs])
        for (layer, name), value in zip(refs, values):
            setattr(layer, name, value)

    # -- data checks (once per call, never per step) -----------------------
    def _check_data(self, what: str, X: Any, y: Any) -> Any:
        """Shapes, dtypes, label ranges and finiteness of a call's data: one host sync per call."""
        if not _xp.array_api_compat.is_array_api_obj(X):
            raise TypeError(f"Model.{what}: X must be an array (NumPy, CuPy, PyTorch, ...), got {type(X).__name__}")
        xp = _xp.namespace(X)
        _xp.check_floating(xp, X, f"Model.{what}: X")
        if X.ndim != 2:
            raise ValueError(f"Model.{what}: X must have shape (n_samples, n_features), got {tuple(X.shape)}")
        # A column sum is finite iff every value is (NaN and inf propagate), unless
        # finite values overflow it: only then is the exact element-wise check run.
        # One pass over X and no X-sized temporary for the common, clean case.
        checks = {"X": xp.all(xp.isfinite(xp.sum(X, axis=0)))}
        n_out = self._n_outputs()
        if y is not None:
            if not _xp.array_api_compat.is_array_api_obj(y) or _xp.namespace(y) is not xp:
                raise TypeError(f"Model.{what}: y is a {_xp.describe(y)} but X is a {_xp.describe(X)}; use one library")
            if y.ndim == 0 or y.shape[0] != X.shape[0]:
                got = y.shape[0] if y.ndim else "a 0-d array"
                raise ValueError(f"Model.{what}: X has {X.shape[0]} samples but y has {got}")
            if not (xp.isdtype(y.dtype, "numeric") or y.dtype == xp.bool):
                raise TypeError(f"Model.{what}: y must be numeric or bool, got dtype {y.dtype}")
            categorical = isinstance(self.loss, (CategoricalCrossentropy, SoftmaxCategoricalCrossentropy))
            if y.ndim > 2 or (n_out is not None and y.ndim == 2 and y.shape[1] != n_out) or (
                    n_out is not None and y.ndim == 1 and n_out != 1 and not categorical):
                form = "(n,) class indices or (n, k) one-hot rows" if categorical else "(n,) or (n, k) targets"
                raise ValueError(
                    f"Model.{what}: y of shape {tuple(y.shape)} does not fit a model with {n_out} outputs "
                    f"(expected {form}, k = {n_out})"
                )
            if categorical and y.ndim == 1:
                if not xp.isdtype(y.dtype, "integral"):
                    raise TypeError(f"Model.{what}: class labels must be integers, got dtype {y.dtype}")
                checks["labels >= 0"] = xp.min(y) >= 0
                if n_out is not None:
                    checks[f"labels < {n_out}"] = xp.max(y) < n_out
            elif xp.isdtype(y.dtype, "real floating"):
                checks["y"] = xp.all(xp.isfinite(y))
        ok = dict(zip(checks, _xp.to_host(xp, list(checks.values()))))
        if not ok["X"]:  # a NaN/inf, or only an overflowing sum: decide exactly
            ok["X"] = _xp.to_host(xp, [xp.all(xp.isfinite(X))])[0]
        for name, passed in ok.items():
            if passed:
                continue
            if name in ("X", "y"):
                raise ValueError(f"Model.{what}: {name} contains NaN or infinite values")
            raise ValueError(
                f"Model.{what}: class labels must be in [0, {n_out}), the model has {n_out} outputs"
            )
        return xp

    def _n_outputs(self) -> int | None:
        for layer in reversed(self.layers):
            if isinstance(layer, Dense):
                return layer.n_neurons
        return None

    # -- training -----------------------------------------------------------
    def train(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = 1,
        batch_size: int | None = None,
        print_every: int = 1,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = False,
        seed: int | None = None,
        verbose: bool = True,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> History:
        """Train; return per-epoch loss, accuracy, learning rate and validation figures.

        Reports happen every ``print_every`` optimizer steps and at the last
        step; only they read values back from the device.  A non-finite loss
        raises ``FloatingPointError`` naming the epoch and step.  On host
        backends it is caught before that step's update, so the parameters
        keep their last finite values; on devices it is caught at the next
        report, the fused CuPy update having skipped every non-finite step,
        and other device backends are restored to the last report point.
        """
        self._require("train", optimizer=True)
        epochs = _positive_int("Model.train", "epochs", epochs)
        batch_size = _positive_int("Model.train", "batch_size", batch_size, allow_none=True)
        print_every = _positive_int("Model.train", "print_every", print_every)
        xp = self._check_data("train", X, y)
        if validation_data is not None:
            self._check_data("train (validation_data)", *validation_data)
        self._place(X)
        self.accuracy.init(y)  # type: ignore[union-attr]
        n = int(X.shape[0])
        steps = max(1, -(-n // batch_size)) if batch_size else 1
        total_steps = epochs * steps
        # Shuffle orders are drawn on the host (one index vector a epoch, sent once):
        # the same seed gives the same order on every backend, which keeps shuffled
        # runs comparable across libraries.
        rng = np.random.default_rng(seed)
        history = History()
        pending: list[tuple[int, dict[str, Any]]] = []  # epoch figures still on the device
        step_losses: list[tuple[int, int, Any]] = []  # (epoch, step, mean loss) since the last report
        snapshot = self._snapshot()
        running: dict[str, Any] = {}
        global_step = 0
        y_loss = self._loss_targets(xp, y)
        y = self._accuracy_targets(xp, y)
        where = {"epoch": 0, "step": 0}
        eager = _xp.cheap_sync(X)
        if eager:
            def check(batch_loss: Any) -> None:  # free on host arrays: every step, before the update
                value = float(batch_loss)
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"Model.train: the loss became {value} at epoch {where['epoch']}, step {where['step']}; "
                        "the parameters keep their last finite values (lower the learning rate, or check the data)"
                    )
        else:
            def check(batch_loss: Any) -> None:  # devices: an on-device flag, read at report points
                self.optimizer.finite_guard = xp.isfinite(batch_loss)  # type: ignore[union-attr]
        for epoch in range(1, epochs + 1):
            Xe, ye, yle = X, y, y_loss
            if shuffle:
                order = xp.asarray(rng.permutation(n), device=_xp.array_device(X))
                Xe, ye, yle = xp.take(X, order, axis=0), xp.take(y, order, axis=0), xp.take(y_loss, order, axis=0)
            loss_sum: Any = 0.0
            correct_sum: Any = 0  # an integer count on the device
            seen = compared = 0
            for step in range(steps):
                if batch_size:
                    rows = slice(step * batch_size, min((step + 1) * batch_size, n))  # in-bounds (strict)
                    xb, yb, ylb = Xe[rows, ...], ye[rows, ...], yle[rows, ...]
                else:
                    xb, yb, ylb = Xe, ye, yle
                where["epoch"], where["step"] = epoch, step + 1
                batch_loss, batch_correct, batch_compared = self._train_step(xp, xb, yb, ylb, check)
                batch_n = int(xb.shape[0])
                loss_sum, correct_sum = loss_sum + batch_loss, correct_sum + batch_correct
                seen, compared = seen + batch_n, compared + batch_compared
                global_step += 1
                if not eager:  # host backends were checked before the update already
                    step_losses.append((epoch, step + 1, batch_loss))
                running = {"epoch": epoch, "step": step + 1, "loss_sum": loss_sum, "seen": seen,
                           "correct_sum": correct_sum, "compared": compared}
                last = global_step == total_steps
                if step == steps - 1:
                    accuracy = xp.astype(correct_sum, batch_loss.dtype) / compared
                    pending.append((epoch, self._epoch_figures(xp, loss_sum / seen, accuracy,
                                                               validation_data, batch_size)))
                if global_step % print_every == 0 or last:
                    snapshot = self._report(xp, history, pending, step_losses, running, snapshot,
                                            verbose, callback, global_step, total_steps)
        return history

    def _epoch_figures(self, xp: Any, data_loss: Any, accuracy: Any, validation_data: Any,
                       batch_size: int | None) -> dict[str, Any]:
        reg = self.loss.regularization_loss()  # type: ignore[union-attr]
        figures = {"data_loss": data_loss, "regularization_loss": reg, "loss": data_loss + reg,
                   "accuracy": accuracy, "learning_rate": self.optimizer.current_learning_rate}  # type: ignore[union-attr]
        if validation_data is not None:
            figures["val_loss"], figures["val_accuracy"] = self._evaluate_device(*validation_data, batch_size)
        return figures

    def _report(self, xp: Any, history: History, pending: list[Any], step_losses: list[Any],
                running: dict[str, Any], snapshot: Any, verbose: bool, callback: Any,
                global_step: int, total_steps: int) -> Any:
        """The one host sync: read figures back, check for divergence, print."""
        keys = [(i, k) for i, (_, figs) in enumerate(pending) for k in figs]
        values = [pending[i][1][k] for i, k in keys]
        values += [s[2] for s in step_losses]
        values += [running["loss_sum"], running["correct_sum"]]
        host = _xp.to_host(xp, values)
        step_values = host[len(keys):len(keys) + len(step_losses)]
        for (epoch, step, _), value in zip(step_losses, step_values):
            if not math.isfinite(value):
                self._restore(snapshot)
                raise FloatingPointError(
                    f"Model.train: the loss became {value} at epoch {epoch}, step {step}; "
                    "the parameters are back at finite values (lower the learning rate, or check the data)"
                )
        step_losses.clear()
        by_epoch: dict[int, dict[str, float]] = {}
        for (i, k), value in zip(keys, host):
            by_epoch.setdefault(pending[i][0], {})[k] = value
        for epoch, figs in by_epoch.items():
            history.epoch.append(epoch)
            for k, v in figs.items():
                getattr(history, k).append(v)
        pending.clear()
        loss = host[-2] / running["seen"]
        acc = host[-1] / running["compared"]
        lr = self.optimizer.current_learning_rate  # type: ignore[union-attr]
        info = {"epoch": running["epoch"], "step": running["step"], "global_step": global_step,
                "total_steps": total_steps, "loss": loss, "accuracy": acc, "learning_rate": lr}
        if history.regularization_loss:
            info["regularization_loss"] = history.regularization_loss[-1]
        if history.val_loss:
            info["val_loss"], info["val_accuracy"] = history.val_loss[-1], history.val_accuracy[-1]
        if verbose:
            line = f"epoch: {info['epoch']}, step: {info['step']}, acc: {acc:.3f}, loss: {loss:.3f}, lr: {lr:.6g}"
            if "val_loss" in info:
                line += f", val_acc: {info['val_accuracy']:.3f}, val_loss: {info['val_loss']:.3f}"
            print(line, file=sys.stdout)
        if callback is not None:
            callback(info)
        return self._snapshot()

    def _snapshot(self) -> Any:
        """References to parameters and optimizer state (updates rebind, so no copies)."""
        layers = [{name: getattr(layer, name) for name in layer.state_attributes()}
                  for layer in self.trainable_layers]
        opt = self.optimizer
        return layers, (opt.iterations, opt.current_learning_rate) if opt else None

    def _restore(self, snapshot: Any) -> None:
        layers, opt_state = snapshot
        for layer, saved in zip(self.trainable_layers, layers):
            for name in layer.state_attributes():
                if name in saved:
                    setattr(layer, name, saved[name])
                else:
                    delattr(layer, name)
        if opt_state is not None:
            self.optimizer.iterations, self.optimizer.current_learning_rate = opt_state  # type: ignore[union-attr]

    # -- inference ------------------------------------------------------------
    def _batches(self, n: int, batch_size: int | None) -> list[slice]:
        if not batch_size:
            return [slice(0, n)]
        return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]

    def _evaluate_device(self, X: Any, y: Any, batch_size: int | None) -> tuple[Any, Any]:
        xp = _xp.namespace(X)
        loss_sum: Any = 0.0
        correct_sum: Any = 0
        compared = 0
        for s in self._batches(int(X.shape[0]), batch_size):
            losses, output = self._loss_and_output(X[s, ...], y[s, ...], training=False)
            correct = self.accuracy.compare(self.layers[-1].predictions(output), y[s, ...])  # type: ignore[union-attr]
            loss_sum = loss_sum + xp.sum(losses)
            correct_sum = correct_sum + xp.count_nonzero(correct)
            compared += math.prod(correct.shape)
        return loss_sum / X.shape[0], xp.astype(correct_sum, losses.dtype) / compared

    def evaluate(self, X: Any, y: Any, *, batch_size: int | None = None) -> tuple[float, float]:
        """Mean data loss and accuracy on ``(X, y)``, as host floats."""
        self._require("evaluate")
        batch_size = _positive_int("Model.evaluate", "batch_size", batch_size, allow_none=True)
        xp = self._check_data("evaluate", X, y)
        self._place(X)
        self.accuracy.init(y)  # type: ignore[union-attr]
        loss, acc = _xp.to_host(xp, list(self._evaluate_device(X, y, batch_size)))
        return loss, acc

    def predict(self, X: Any, *, batch_size: int | None = None) -> Any:
        """The model's output for ``X``, an array of X's library and device (lazy on Dask)."""
        if not self.layers:
            raise RuntimeError("Model.predict: the model has no layers")
        batch_size = _positive_int("Model.predict", "batch_size", batch_size, allow_none=True)
        xp = _xp.namespace(X)
        _xp.check_floating(xp, X, "Model.predict: X")
        self._place(X)
        outputs = [self.forward(X[s, ...], training=False) for s in self._batches(int(X.shape[0]), batch_size)]
        return outputs[0] if len(outputs) == 1 else xp.concat(outputs, axis=0)

    # -- parameters and files -----------------------------------------------
    def get_parameters(self) -> list[tuple[Any, ...]]:
        """``[(weight, bias), ...]`` of the trainable layers, in order."""
        layers = self.trainable_layers or [l for l in self.layers if getattr(l, "trainable", False)]
        return [tuple(getattr(layer, n) for n in layer.parameter_names) for layer in layers]

    def set_parameters(self, parameters: Any) -> None:
        """Assign ``[(weight, bias), ...]``; arrays move to where the model lives."""
        layers = self.trainable_layers or [l for l in self.layers if getattr(l, "trainable", False)]
        parameters = list(parameters)
        if len(parameters) != len(layers):
            raise ValueError(
                f"Model.set_parameters: the model has {len(layers)} trainable layers, got {len(parameters)} parameter sets"
            )
        for i, (layer, values) in enumerate(zip(layers, parameters)):
            values = tuple(values)
            if len(values) != len(layer.parameter_names):
                raise ValueError(f"Model.set_parameters: layer {i} takes {len(layer.parameter_names)} arrays, got {len(values)}")
            for name, value in zip(layer.parameter_names, values):
                current = getattr(layer, name)
                if tuple(value.shape) != tuple(current.shape):
                    raise ValueError(
                        f"Model.set_parameters: layer {i} {name} must have shape {tuple(current.shape)}, "
                        f"got {tuple(value.shape)}"
                    )
                xp = _xp.namespace(current)
                setattr(layer, name, _xp.move(value, xp, _xp.array_device(current), current.dtype))

    def save_parameters(self, path: Any) -> None:
        from .io import save_parameters

        save_parameters(self, path)

    def load_parameters(self, path: Any) -> None:
        from .io import load_parameters

        load_parameters(self, path)

    def save(self, path: Any) -> None:
        """Architecture (JSON), parameters and optimizer state in one ``.npz``; no pickle."""
        from .io import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path: Any) -> Model:
        from .io import load_model

        return load_model(path)
