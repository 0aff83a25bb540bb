"""Losses: categorical and binary cross-entropy, MSE, MAE, fused softmax-CE.

``forward(y_pred, y_true)`` returns per-sample losses ``(n,)``;
``calculate`` their mean as a 0-d array (no host sync); ``backward(y_pred,
y_true)`` returns ``dinput``, already divided by the number of samples.
Labels of any integer or bool dtype are cast to the predictions' floating
dtype before any arithmetic (the seed's uint8 ``-y_true`` trap).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

from . import _xp, registries
from ._repr import config_repr
from ._typing import Array, Namespace
from .accuracy import Accuracy, CategoricalAccuracy, RegressionAccuracy
from .activations import Softmax, softmax_parts
from .layers import Layer

__all__ = [
    "Loss",
    "CategoricalCrossentropy",
    "BinaryCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "HuberLoss",
    "SoftmaxCategoricalCrossentropy",
    "fused_loss",
]

EPS = 1e-7  # the seed's clip: predictions live in [1e-7, 1 - 1e-7]


class Loss:
    """Base: mean of per-sample losses, regularization of remembered layers.

    A loss says what it computes with, so the model needs no type checks:
    ``target_kind`` is ``"classes"`` (indices or one-hot rows), ``"binary"``
    (0/1 targets per output) or ``"values"``; ``input_kind`` is
    ``"probabilities"``, ``"logits"`` or ``"values"`` (for ``check_all``).
    """

    registry: ClassVar[dict[str, type[Loss]]] = {}
    target_kind: ClassVar[str] = "values"
    input_kind: ClassVar[str] = "values"
    dinput: Any = None
    output: Any = None  # a fused loss keeps the probabilities its forward computed here
    trainable_layers: tuple[Any, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registries.register(Loss.registry, cls, "loss")

    def default_accuracy(self) -> Accuracy:
        """The accuracy a model uses with this loss when none is set."""
        if self.target_kind == "classes":
            return CategoricalAccuracy()
        if self.target_kind == "binary":
            return CategoricalAccuracy(binary=True)
        return RegressionAccuracy()

    def prepare_targets(self, xp: Namespace, y: Array, n_outputs: int | None, dtype: Any) -> Array:
        """Targets in the form this loss computes with, once per ``train`` call (not per step).

        Class indices become one-hot rows and every target is cast to the
        model's floating dtype: the per-step label work of the loss is then a no-op.
        """
        if n_outputs is None or dtype is None or _xp.is_lazy(y):
            return y
        dtype = _xp.float_dtype(xp, dtype)
        if self.target_kind == "classes" and y.ndim == 1:
            return _xp.one_hot(xp, y, n_outputs, dtype)
        if y.ndim == 1 and n_outputs == 1:
            y = xp.reshape(y, (-1, 1))
        return y if y.dtype == dtype else xp.astype(y, dtype)

    def remember_trainable_layers(self, layers: Any) -> None:
        self.trainable_layers = tuple(layers)

    def regularization_loss(self) -> Any:
        """Sum of the L1/L2 penalties of the remembered layers (0-d array or 0.0)."""
        total: Any = 0.0
        for layer in self.trainable_layers:
            total = total + layer.regularization_loss()
        return total

    def calculate(self, y_pred: Any, y_true: Any, *, include_regularization: bool = False) -> Any:
        """Mean per-sample loss, a 0-d array; ``(data, regularization)`` if asked."""
        xp = _xp.namespace(y_pred)
        data_loss = xp.mean(self.forward(y_pred, y_true))
        if include_regularization:
            return data_loss, self.regularization_loss()
        return data_loss

    def __repr__(self) -> str:
        return config_repr(self)

    def get_config(self) -> dict[str, Any]:
        return {}

    def forward_backward(self, y_pred: Array, y_true: Array, sample_weight: Array | None = None) -> tuple[Array, Array]:
        """The training step's loss work: ``(sum of per-sample losses, dL/dy_pred)``.

        With ``sample_weight`` (``(n,)``): ``(sum_i w_i L_i, w_i * dL_i/dy_pred_i)`` -- the loss is
        ``sum_i w_i L_i / n`` (Keras's: divided by the batch's size, not by the weights' sum), and as sample
        ``i``'s loss depends on row ``i`` only, its gradient is row ``i`` of the unweighted one times ``w_i``.
        A fused loss overrides it (it then works on logits and stores the probabilities in ``.output``).
        """
        xp = _xp.namespace(y_pred)
        losses, dinput = self.forward(y_pred, y_true), self.backward(y_pred, y_true)
        if sample_weight is None:
            return xp.sum(losses), dinput
        self.dinput = dinput * xp.reshape(sample_weight, (-1, 1))
        return xp.sum(losses * sample_weight), self.dinput

    def value_and_grad(self, y_pred: Array, y_true: Array,
                       sample_weight: Array | None = None) -> tuple[Array, Array, Array]:
        """``forward_backward`` as a function: ``(loss sum, dL/dy_pred, output)`` -- ``output`` is the
        probabilities of a fused loss, else ``y_pred``.  Runs on a shallow copy: the loss keeps nothing."""
        work = copy.copy(self)
        loss_sum, dinput = work.forward_backward(y_pred, y_true, sample_weight)
        return loss_sum, dinput, work.output if self.input_kind == "logits" else y_pred

    def forward(self, y_pred: Any, y_true: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, y_pred: Any, y_true: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- label forms -------------------------------------------------------
    def _prepare(self, y_pred: Any, y_true: Any) -> tuple[Any, Any]:
        xp = _xp.namespace(y_pred)
        name = type(self).__name__
        _xp.check_floating(xp, y_pred, f"{name}: y_pred")
        if y_pred.ndim != 2:
            raise ValueError(f"{name}: y_pred must have shape (n_samples, n_outputs), got {tuple(y_pred.shape)}")
        y = _xp.labels_as(xp, y_true, y_pred, name)
        if y.shape[0] != y_pred.shape[0]:
            raise ValueError(
                f"{name}: y_true has {y.shape[0]} samples but y_pred has {y_pred.shape[0]}"
            )
        return xp, y

    def _categorical(self, y_pred: Any, y_true: Any) -> tuple[Any, Any]:
        """Labels as one-hot rows of y_pred's dtype: from indices (n,) or one-hot (n, k)."""
        xp, y = self._prepare(y_pred, y_true)
        if y_true.ndim == 1:
            return xp, _xp.one_hot(xp, y_true, y_pred.shape[1], y_pred.dtype)
        if tuple(y.shape) != tuple(y_pred.shape):
            raise ValueError(
                f"{type(self).__name__}: one-hot y_true must have y_pred's shape "
                f"{tuple(y_pred.shape)}, got {tuple(y.shape)}"
            )
        return xp, y

    def _elementwise(self, y_pred: Any, y_true: Any) -> tuple[Any, Any]:
        """Targets shaped like y_pred: (n,) targets for (n, 1) predictions, or (n, k)."""
        xp, y = self._prepare(y_pred, y_true)
        if y.ndim == 1 and y_pred.shape[1] == 1:
            y = xp.reshape(y, (-1, 1))
        if tuple(y.shape) != tuple(y_pred.shape):
            raise ValueError(
                f"{type(self).__name__}: y_true must have shape {tuple(y_pred.shape)} "
                f"(or (n,) for one output), got {tuple(y_true.shape)}"
            )
        return xp, y


class CategoricalCrossentropy(Loss):
    """``L_i = -sum_j y_ij log(p_ij)``; backward ``dinput = -y / p / n``.

    ``p`` is clipped to ``[1e-7, 1 - 1e-7]`` so exact 0 and 1 stay finite.
    """

    target_kind = "classes"
    input_kind = "probabilities"

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._categorical(y_pred, y_true)
        clipped = xp.clip(y_pred, EPS, 1 - EPS)
        return -xp.log(xp.sum(clipped * y, axis=1))

    def backward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._categorical(y_pred, y_true)
        clipped = xp.clip(y_pred, EPS, 1 - EPS)
        self.dinput = -y / clipped / y_pred.shape[0]
        return self.dinput


class SoftmaxCategoricalCrossentropy(Loss):
    """Softmax and cross-entropy fused: ``L_i = logsumexp(z_i) - sum_j y_ij z_ij``.

    Backward w.r.t. the logits: ``dinput = (S - y) / n``, with ``S`` the
    probabilities that ``forward`` stores in ``.output``.  Finite for logits
    of +-1e4 (log-sum-exp after subtracting the row max).
    """

    target_kind = "classes"
    input_kind = "logits"
    output: Any = None

    def forward(self, logits: Any, y_true: Any) -> Any:
        xp, y = self._categorical(logits, y_true)
        shifted, total, self.output = softmax_parts(xp, logits)
        log_prob = shifted - xp.log(total)
        return -xp.sum(log_prob * y, axis=1)

    def backward(self, y_pred: Any, y_true: Any) -> Any:
        _, y = self._categorical(y_pred, y_true)
        self.dinput = (y_pred - y) / y_pred.shape[0]
        return self.dinput

    def forward_backward(self, logits: Any, y_true: Any, sample_weight: Any = None) -> tuple[Any, Any]:
        """The training step's loss work in one pass: ``(sum of losses, dL/dlogits)``; stores ``.output``
        and ``.dinput`` (the book's protocol over ``value_and_grad``)."""
        loss_sum, self.dinput, self.output = self.value_and_grad(logits, y_true, sample_weight)
        return loss_sum, self.dinput

    def value_and_grad(self, logits: Array, y_true: Array,
                       sample_weight: Array | None = None) -> tuple[Array, Array, Array]:
        """``(sum of losses, dL/dlogits, probabilities)``, pure: the loss keeps nothing.

        ``sum_i L_i = sum_i log(sum_j exp(z_ij - m_i)) - sum_ij y_ij (z_ij - m_i)``: two
        whole-array reductions instead of a per-row one.  With ``sample_weight``:
        ``sum_i w_i L_i`` and ``dinput = w_i (S_i - y_i) / n``.
        """
        xp, y = self._categorical(logits, y_true)
        shifted, total, output = softmax_parts(xp, logits)
        if sample_weight is None:
            loss_sum = xp.sum(xp.log(total)) - xp.sum(shifted * y)
            return loss_sum, (output - y) / logits.shape[0], output
        w = xp.reshape(sample_weight, (-1, 1))
        loss_sum = xp.sum(w * (xp.log(total) - xp.sum(shifted * y, axis=1, keepdims=True)))
        return loss_sum, (output - y) * (w / logits.shape[0]), output


class BinaryCrossentropy(Loss):
    """``L_i = mean_j -(y log p + (1 - y) log(1 - p))``.

    Backward ``dinput = -(y / p - (1 - y) / (1 - p)) / k / n`` with ``p``
    clipped to ``[1e-7, 1 - 1e-7]``.
    """

    target_kind = "binary"
    input_kind = "probabilities"

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._elementwise(y_pred, y_true)
        p = xp.clip(y_pred, EPS, 1 - EPS)
        return xp.mean(-(y * xp.log(p) + (1 - y) * xp.log(1 - p)), axis=1)

    def backward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._elementwise(y_pred, y_true)
        p = xp.clip(y_pred, EPS, 1 - EPS)
        n, k = y_pred.shape
        self.dinput = -(y / p - (1 - y) / (1 - p)) / (k * n)
        return self.dinput


class MeanSquaredError(Loss):
    """``L_i = mean_j (y - p)**2``; backward ``dinput = -2 (y - p) / k / n``."""

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._elementwise(y_pred, y_true)
        diff = y - y_pred
        return xp.mean(diff * diff, axis=1)

    def backward(self, y_pred: Any, y_true: Any) -> Any:
        _, y = self._elementwise(y_pred, y_true)
        n, k = y_pred.shape
        self.dinput = (-2.0 / (k * n)) * (y - y_pred)
        return self.dinput


class MeanAbsoluteError(Loss):
    """``L_i = mean_j |y - p|``; backward ``dinput = sign(p - y) / k / n``.

    (Note the sign: d|y - p|/dp = sign(p - y); a finite-difference test pins it.)
    """

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._elementwise(y_pred, y_true)
        return xp.mean(xp.abs(y - y_pred), axis=1)

    def backward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._elementwise(y_pred, y_true)
        n, k = y_pred.shape
        self.dinput = xp.sign(y_pred - y) / (k * n)
        return self.dinput


class HuberLoss(Loss):
    """``L_i = mean_j h(p - y)``, ``h(r) = r**2 / 2`` where ``|r| <= delta``, else ``delta (|r| - delta / 2)``.

    Backward: ``dinput = clip(p - y, -delta, delta) / k / n`` -- the residual itself near zero (as squared
    error), its sign times ``delta`` beyond (as absolute error): robust to outliers, smooth at zero.
    """

    def __init__(self, delta: float = 1.0) -> None:
        delta = float(delta)
        if not math.isfinite(delta) or delta <= 0:
            raise ValueError(f"HuberLoss: delta must be a finite number > 0, got {delta!r}")
        self.delta = delta

    def get_config(self) -> dict[str, Any]:
        return {"delta": self.delta}

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._elementwise(y_pred, y_true)
        r = xp.abs(y_pred - y)
        quadratic = xp.minimum(r, xp.full_like(r, self.delta))
        # r**2/2 inside, delta (r - delta/2) outside, written once: q**2/2 + delta (r - q)
        return xp.mean(0.5 * quadratic * quadratic + self.delta * (r - quadratic), axis=1)

    def backward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._elementwise(y_pred, y_true)
        n, k = y_pred.shape
        self.dinput = xp.clip(y_pred - y, -self.delta, self.delta) / (k * n)
        return self.dinput


# Declared pairings: (last layer, loss) -> a loss that computes both at once.
FUSED: dict[tuple[type[Layer], type[Loss]], type[Loss]] = {
    (Softmax, CategoricalCrossentropy): SoftmaxCategoricalCrossentropy,
}


def fused_loss(last_layer: Layer, loss: Loss) -> Loss | None:
    """The fused loss replacing ``last_layer`` followed by ``loss``, if a pairing is declared."""
    fused = FUSED.get((type(last_layer), type(loss)))
    return None if fused is None else fused()
