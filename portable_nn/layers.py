"""Layers with parameters or state: ``Dense`` and ``Dropout``.

Each class keeps ``forward`` and ``backward`` side by side; the formula is in
the docstring.  Parameters are drawn on the host from ``seed`` (bit-identical
on every backend) and moved once, at the first ``forward``, to the library,
device and dtype of the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _xp
from .random import Generator

__all__ = ["Layer", "Dense", "Dropout", "OPTIMIZER_STATE"]

# Optimizers keep their state on the layer as `<parameter>_<state>` (the book's habit).
OPTIMIZER_STATE = ("momentum", "cache")


class Layer:
    """Base of every layer and activation: ``forward`` stores, ``backward`` reads."""

    input: Any = None
    output: Any = None
    dinput: Any = None

    def _need_forward(self) -> None:
        if self.input is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for saving the architecture as JSON."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _check_factor(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


class Dense(Layer):
    """Fully connected layer: ``output = input @ weight + bias``.

    Backward: ``dweight = input.T @ dvalue``, ``dbias = sum(dvalue, axis=0)``,
    ``dinput = dvalue @ weight.T`` (plus ``l1*sign(w) + 2*l2*w`` on the
    parameter gradients when regularized).
    """

    trainable = True
    parameter_names = ("weight", "bias")
    need_dinput = True

    def __init__(
        self,
        n_inputs: int,
        n_neurons: int,
        *,
        weight_scale: float = 0.01,
        seed: int | None = None,
        dtype: Any = "float32",
        weight_regularizer_l1: float = 0.0,
        weight_regularizer_l2: float = 0.0,
        bias_regularizer_l1: float = 0.0,
        bias_regularizer_l2: float = 0.0,
    ) -> None:
        for name, size in (("n_inputs", n_inputs), ("n_neurons", n_neurons)):
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
                raise ValueError(f"Dense: {name} must be a positive integer, got {size!r}")
        self.n_inputs, self.n_neurons = int(n_inputs), int(n_neurons)
        self.weight_scale = _check_factor("Dense: weight_scale", weight_scale)
        self.seed = seed
        self.dtype = _xp.dtype_name(dtype)
        self.weight_regularizer_l1 = _check_factor("Dense: weight_regularizer_l1", weight_regularizer_l1)
        self.weight_regularizer_l2 = _check_factor("Dense: weight_regularizer_l2", weight_regularizer_l2)
        self.bias_regularizer_l1 = _check_factor("Dense: bias_regularizer_l1", bias_regularizer_l1)
        self.bias_regularizer_l2 = _check_factor("Dense: bias_regularizer_l2", bias_regularizer_l2)
        # Host draw in float64, then cast: the same seed gives the same bits everywhere.
        rng = np.random.default_rng(seed)
        standard = rng.standard_normal((self.n_inputs, self.n_neurons))
        self.weight: Any = (self.weight_scale * standard).astype(self.dtype)
        self.bias: Any = np.zeros((1, self.n_neurons), dtype=self.dtype)
        self.dweight: Any = None
        self.dbias: Any = None
        self._placed = False

    def get_config(self) -> dict[str, Any]:
        return {
            "n_inputs": self.n_inputs,
            "n_neurons": self.n_neurons,
            "weight_scale": self.weight_scale,
            "seed": self.seed,
            "dtype": self.dtype,
            "weight_regularizer_l1": self.weight_regularizer_l1,
            "weight_regularizer_l2": self.weight_regularizer_l2,
            "bias_regularizer_l1": self.bias_regularizer_l1,
            "bias_regularizer_l2": self.bias_regularizer_l2,
        }

    def state_attributes(self) -> list[str]:
        """Names of the parameters and of the optimizer state present on this layer."""
        names = list(self.parameter_names)
        for p in self.parameter_names:
            names += [f"{p}_{s}" for s in OPTIMIZER_STATE if getattr(self, f"{p}_{s}", None) is not None]
        return names

    def place(self, like: Any) -> None:
        """Move the host-held parameters (and optimizer state) to the library and device of ``like``.

        Only host NumPy arrays move (the seeded initialization, a loaded
        file); arrays a user assigned stay as they are (a mismatch is then
        reported by ``forward``).
        """
        xp = _xp.namespace(like)
        dev = _xp.array_device(like)
        dtype = _xp.float_dtype(xp, self.dtype)
        for name in self.state_attributes():
            value = getattr(self, name)
            if _xp.is_numpy_array(value):
                setattr(self, name, _xp.move(value, xp, dev, dtype))
        self._placed = True

    def forward(self, x: Any) -> Any:
        xp = _xp.namespace(x)
        if not self._placed:
            self.place(x)
        weight, bias = self.weight, self.bias
        _xp.check_same_place(x, weight, "Dense.forward")
        _xp.check_same_place(x, bias, "Dense.forward (bias)")
        if x.ndim != 2 or x.shape[1] != weight.shape[0]:
            raise ValueError(
                f"Dense.forward: expected input of shape (n_samples, {weight.shape[0]}), got {tuple(x.shape)}"
            )
        if x.dtype != weight.dtype:
            _xp.check_floating(xp, x, "Dense.forward input")
            x = xp.astype(x, weight.dtype)  # compute in the layer's dtype (autocast)
        self.input = x
        out = x @ weight
        out += bias  # a fresh array of ours: in place where the library allows, else rebound (JAX)
        self.output = out
        return out

    def backward(self, dvalue: Any) -> Any:
        self._need_forward()
        xp = _xp.namespace(dvalue)
        if tuple(dvalue.shape) != tuple(self.output.shape):
            raise ValueError(
                f"Dense.backward: dvalue must have the output's shape {tuple(self.output.shape)}, "
                f"got {tuple(dvalue.shape)}"
            )
        weight, bias = self.weight, self.bias
        dweight = self.input.T @ dvalue
        # the column sums as a matrix-vector product: one BLAS call, 3-4x faster
        # than a reduction along axis 0 on NumPy and on CuPy
        dbias = self._ones(xp, dvalue) @ dvalue
        if self.weight_regularizer_l1 > 0:
            dweight = dweight + self.weight_regularizer_l1 * xp.sign(weight)
        if self.weight_regularizer_l2 > 0:
            dweight = dweight + (2 * self.weight_regularizer_l2) * weight
        if self.bias_regularizer_l1 > 0:
            dbias = dbias + self.bias_regularizer_l1 * xp.sign(bias)
        if self.bias_regularizer_l2 > 0:
            dbias = dbias + (2 * self.bias_regularizer_l2) * bias
        self.dweight, self.dbias = dweight, dbias
        # Model turns this off for a first layer: nothing consumes dL/dX there.
        self.dinput = dvalue @ weight.T if self.need_dinput else None
        return self.dinput

    def _ones(self, xp: Any, like: Any) -> Any:
        """A cached ``(1, n_samples)`` row of ones of ``like``'s dtype and device."""
        key = (type(like), like.shape[0], like.dtype, _xp.array_device(like))  # type first: no cross-library compare
        cached = self.__dict__.get("_ones_cache")
        if cached is None or cached[0] != key:
            ones = xp.ones((1, like.shape[0]), dtype=like.dtype, device=_xp.array_device(like))
            self._ones_cache = cached = (key, ones)
        return cached[1]

    def regularization_loss(self) -> Any:
        """``l1*sum|w| + l2*sum(w**2)`` for weights and biases (0-d array, or 0.0)."""
        loss: Any = 0.0
        for value, l1, l2 in (
            (self.weight, self.weight_regularizer_l1, self.weight_regularizer_l2),
            (self.bias, self.bias_regularizer_l1, self.bias_regularizer_l2),
        ):
            if l1 > 0 or l2 > 0:
                xp = _xp.namespace(value)
                if l1 > 0:
                    loss = loss + l1 * xp.sum(xp.abs(value))
                if l2 > 0:
                    loss = loss + l2 * xp.sum(value * value)
        return loss


class Dropout(Layer):
    """Inverted dropout: ``output = input * mask``, ``mask = (u >= rate) / (1 - rate)``.

    Backward: ``dinput = dvalue * mask`` (the same mask).  Identity when
    ``training=False``.  The mask is drawn on the input's library and device.
    """

    def __init__(self, rate: float, *, seed: int | None = None) -> None:
        rate = float(rate)
        if not (0.0 <= rate < 1.0):
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate = rate
        self.seed = seed
        self.generator = Generator(seed)
        self.mask: Any = None

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed}

    def forward(self, x: Any, training: bool = True) -> Any:
        xp = _xp.namespace(x)
        self.input = x
        if not training or self.rate == 0.0:
            self.mask = None
            self.output = x
            return x
        _xp.check_floating(xp, x, "Dropout.forward input")
        u = self.generator.uniform(xp, tuple(x.shape), dtype=x.dtype, device=_xp.array_device(x))
        self.mask = xp.astype(u >= self.rate, x.dtype) / (1.0 - self.rate)
        self.output = x * self.mask
        return self.output

    def backward(self, dvalue: Any) -> Any:
        self._need_forward()
        self.dinput = dvalue if self.mask is None else dvalue * self.mask
        return self.dinput
