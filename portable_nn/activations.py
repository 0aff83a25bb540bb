"""Activations: ``ReLU``, ``LeakyReLU``, ``Tanh``, ``GELU``, ``Sigmoid``, ``Softmax``, ``Linear``.

Each keeps the forward formula and its local derivative side by side, and
has ``predictions(output)`` turning outputs into what accuracy compares.  A
new activation is one class here: it is exported, registered for model
files, gradient-checked by ``check_all`` and run on every backend without
another edit.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from . import _xp, kernels
from ._typing import Array, Namespace
from .layers import Layer


def softmax_parts(xp: Namespace, z: Array) -> tuple[Array, Array, Array]:
    """``(z - max, sum(exp(z - max)), softmax(z))`` row-wise: the stable softmax and its pieces."""
    shifted = z - kernels.row_max(z)
    e = xp.exp(shifted)
    total = kernels.row_sums(e)
    return shifted, total, e / total


class Activation(Layer):
    """An activation: no parameters; ``predictions(output)`` is the output itself."""

    abstract: ClassVar[bool] = True  # a base: not in the registry of classes a file may name

    def predictions(self, output: Array) -> Array:
        return output


class ReLU(Activation):
    """``y = max(x, 0)``; backward ``dinput = dvalue where x > 0, else 0``."""

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        return kernels.relu(x), x

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        return kernels.relu_backward(cache, dvalue), {}


class LeakyReLU(Activation):
    """``y = x if x > 0 else alpha * x``; backward ``dinput = dvalue * (1 if x > 0 else alpha)``."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        alpha = float(alpha)
        if not (0.0 <= alpha < 1.0):
            raise ValueError(f"LeakyReLU: alpha must be in [0, 1), got {alpha!r}")
        self.alpha = alpha

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        return _xp.namespace(x).where(x > 0, x, self.alpha * x), x

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        return _xp.namespace(dvalue).where(cache > 0, dvalue, self.alpha * dvalue), {}


class Tanh(Activation):
    """``y = tanh(x)``; backward ``dinput = dvalue * (1 - y**2)``."""

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        y = _xp.namespace(x).tanh(x)
        return y, y

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        return dvalue * (1.0 - cache * cache), {}


class GELU(Activation):
    """Gaussian error linear unit, ``y = x * Phi(x)``.

    ``approximate="tanh"`` (the default): ``y = x (1 + tanh(u)) / 2`` with ``u = c (x + 0.044715 x**3)``,
    ``c = sqrt(2/pi)``; backward ``dinput = dvalue * ((1 + t) / 2 + x (1 - t**2) c (1 + 3*0.044715 x**2) / 2)``.
    ``approximate="none"``: ``y = x (1 + erf(x / sqrt 2)) / 2``; backward ``dinput = dvalue * (Phi(x) + x phi(x))``,
    ``phi(x) = exp(-x**2 / 2) / sqrt(2 pi)`` -- only where the namespace has ``erf`` (PyTorch); not in the
    array API standard.
    """

    _C = math.sqrt(2.0 / math.pi)
    _A = 0.044715

    def __init__(self, approximate: str = "tanh") -> None:
        super().__init__()
        if approximate not in ("tanh", "none"):
            raise ValueError(f"GELU: approximate must be 'tanh' or 'none', got {approximate!r}")
        self.approximate = approximate

    def get_config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def _erf(self, xp: Namespace) -> Any:
        erf = getattr(xp, "erf", None)
        if erf is None:
            raise TypeError(f"GELU(approximate='none'): {xp.__name__} has no erf (it is not in the array API "
                            f"standard); use GELU() (the tanh approximation) on this backend")
        return erf

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        xp = _xp.namespace(x)
        if self.approximate == "none":
            return 0.5 * x * (1.0 + self._erf(xp)(x / math.sqrt(2.0))), (x, None)
        t = xp.tanh(self._C * (x + self._A * x * x * x))
        return 0.5 * x * (1.0 + t), (x, t)

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        xp = _xp.namespace(dvalue)
        x, t = cache
        if self.approximate == "none":
            cdf = 0.5 * (1.0 + self._erf(xp)(x / math.sqrt(2.0)))
            pdf = xp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
            return dvalue * (cdf + x * pdf), {}
        du = self._C * (1.0 + 3.0 * self._A * x * x)
        return dvalue * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du), {}


class Linear(Activation):
    """``y = x``; backward ``dinput = dvalue`` (output layer for regression)."""

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        return x, None

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        return dvalue, {}


class Sigmoid(Activation):
    """``S = 1 / (1 + exp(-x))``; backward ``dinput = dvalue * S * (1 - S)``.

    Evaluated from ``exp(-|x|)``, which never overflows: finite and silent
    for inputs of +-1000.
    """

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        xp = _xp.namespace(x)
        e = xp.exp(-xp.abs(x))
        s = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return s, s

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        return dvalue * cache * (1.0 - cache), {}

    def predictions(self, output: Array) -> Array:
        xp = _xp.namespace(output)
        return xp.astype(output > 0.5, _xp.default_int(xp, _xp.array_device(output)))


class Softmax(Activation):
    """``S_ij = exp(z_ij - max_i z) / sum_l exp(z_il - max_i z)``.

    Backward, vectorized over samples (no Jacobian matrices):
    ``dinput = S * (dvalue - sum(dvalue * S, axis=1, keepdims=True))``.
    """

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        s = softmax_parts(_xp.namespace(x), x)[2]
        return s, s

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        xp = _xp.namespace(dvalue)
        return cache * (dvalue - xp.sum(dvalue * cache, axis=1, keepdims=True)), {}

    def predictions(self, output: Array) -> Array:
        xp = _xp.namespace(output)
        return xp.argmax(output, axis=1)


# Every activation class defined above, exported by name (a new class needs no edit here).
__all__ = ["Activation", "softmax_parts"] + [
    name for name, obj in list(globals().items())
    if isinstance(obj, type) and issubclass(obj, Activation) and obj is not Activation and obj.__module__ == __name__
]
