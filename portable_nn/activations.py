"""Activations: ``ReLU``, ``Sigmoid``, ``Softmax``, ``Linear``.

Each keeps the forward formula and its local derivative side by side, and
has ``predictions(output)`` turning outputs into what accuracy compares.
"""

from __future__ import annotations

from typing import Any

from . import _xp, backend_kernels
from .layers import Layer

__all__ = ["ReLU", "Sigmoid", "Softmax", "Linear", "softmax_parts"]


def softmax_parts(xp: Any, z: Any) -> tuple[Any, Any, Any]:
    """``(z - max, sum(exp(z - max)), softmax(z))`` row-wise: the stable softmax and its pieces."""
    shifted = z - xp.max(z, axis=1, keepdims=True)
    e = xp.exp(shifted)
    total = xp.sum(e, axis=1, keepdims=True)
    return shifted, total, e / total


class ReLU(Layer):
    """``y = max(x, 0)``; backward ``dinput = dvalue where x > 0, else 0``."""

    def forward(self, x: Any) -> Any:
        xp = _xp.namespace(x)
        self.input = x
        self.output = xp.maximum(x, 0.0)
        return self.output

    def backward(self, dvalue: Any) -> Any:
        self._need_forward()
        fused = backend_kernels.relu_backward(self.input, dvalue)  # one kernel on CuPy
        if fused is not None:
            self.dinput = fused
            return fused
        xp = _xp.namespace(dvalue)
        # a multiply by the 0/1 mask: three times faster than where() on NumPy
        self.dinput = dvalue * xp.astype(self.input > 0, dvalue.dtype)
        return self.dinput

    def predictions(self, output: Any) -> Any:
        return output


class Linear(Layer):
    """``y = x``; backward ``dinput = dvalue`` (output layer for regression)."""

    def forward(self, x: Any) -> Any:
        self.input = self.output = x
        return x

    def backward(self, dvalue: Any) -> Any:
        self._need_forward()
        self.dinput = dvalue
        return dvalue

    def predictions(self, output: Any) -> Any:
        return output


class Sigmoid(Layer):
    """``S = 1 / (1 + exp(-x))``; backward ``dinput = dvalue * S * (1 - S)``.

    Evaluated from ``exp(-|x|)``, which never overflows: finite and silent
    for inputs of +-1000.
    """

    def forward(self, x: Any) -> Any:
        xp = _xp.namespace(x)
        self.input = x
        e = xp.exp(-xp.abs(x))
        self.output = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return self.output

    def backward(self, dvalue: Any) -> Any:
        self._need_forward()
        s = self.output
        self.dinput = dvalue * s * (1.0 - s)
        return self.dinput

    def predictions(self, output: Any) -> Any:
        xp = _xp.namespace(output)
        return xp.astype(output > 0.5, _xp.default_int(xp, _xp.array_device(output)))


class Softmax(Layer):
    """``S_ij = exp(z_ij - max_i z) / sum_l exp(z_il - max_i z)``.

    Backward, vectorized over samples (no Jacobian matrices):
    ``dinput = S * (dvalue - sum(dvalue * S, axis=1, keepdims=True))``.
    """

    def forward(self, x: Any) -> Any:
        self.input = x
        self.output = softmax_parts(_xp.namespace(x), x)[2]
        return self.output

    def backward(self, dvalue: Any) -> Any:
        self._need_forward()
        xp = _xp.namespace(dvalue)
        s = self.output
        self.dinput = s * (dvalue - xp.sum(dvalue * s, axis=1, keepdims=True))
        return self.dinput

    def predictions(self, output: Any) -> Any:
        xp = _xp.namespace(output)
        return xp.argmax(output, axis=1)
