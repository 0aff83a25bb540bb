"""Extending portable_nn from outside the package: a new activation, a new optimizer and a new loss.

Each is one class, written against the array API (``array_namespace``), with no edit to the library:

* an activation defines the pure core, ``apply(arrays, x, ...) -> (output, cache)`` and
  ``vjp(arrays, cache, dvalue) -> (dinput, grads)``; the book's ``forward``/``backward`` come with it;
* an optimizer defines its ``rule`` and the names of its state (``state_names``): model files save and load
  the state by those names, compiled and data-parallel steps run the rule;
* a loss defines the book's ``forward`` (per-sample losses) and ``backward``.

They register by class name when defined, so a model using them saves and loads like any other.

    python examples/extension.py                 # trains a small regression on NumPy
    python examples/extension.py --backend jax   # the same, compiled (jax.jit)
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from array_api_compat import array_namespace

import portable_nn as pnn


class Swish(pnn.Activation):
    """``y = x * s``, ``s = sigmoid(x)``; backward ``dinput = dvalue * (s + x * s * (1 - s))``."""

    def apply(self, arrays: dict[str, Any], x: Any, *, training: bool = False, noise: Any = None) -> tuple[Any, Any]:
        xp = array_namespace(x)
        s = 1.0 / (1.0 + xp.exp(-x))
        return x * s, (x, s)

    def vjp(self, arrays: dict[str, Any], cache: Any, dvalue: Any) -> tuple[Any, dict[str, Any]]:
        x, s = cache
        return dvalue * (s + x * s * (1.0 - s)), {}


class HeavyBall(pnn.Optimizer):
    """Polyak's heavy ball: ``velocity = momentum * velocity + d``; ``p = p - lr * velocity``."""

    state_names = ("velocity",)

    def __init__(self, learning_rate: float = 0.05, decay: float = 0.0, momentum: float = 0.9, **kwargs: Any) -> None:
        super().__init__(learning_rate, decay, **kwargs)
        self.momentum = float(momentum)

    def rule(self, xp: Any, value: Any, grad: Any, state: dict[str, Any], lr: Any, t: Any) -> tuple[Any, dict]:
        velocity = self.momentum * state["velocity"] + grad
        return value - lr * velocity, {"velocity": velocity}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum}


class LogCosh(pnn.Loss):
    """``L_i = mean_j log(cosh(p - y))``; backward ``dinput = tanh(p - y) / k / n``."""

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._elementwise(y_pred, y_true)
        d = xp.abs(y_pred - y)
        return xp.mean(d + xp.log1p(xp.exp(-2.0 * d)) - math.log(2.0), axis=1)  # log(cosh d), stable

    def backward(self, y_pred: Any, y_true: Any) -> Any:
        xp, y = self._elementwise(y_pred, y_true)
        n, k = y_pred.shape
        self.dinput = xp.tanh(y_pred - y) / (k * n)
        return self.dinput


def model(dtype: str = "float64") -> pnn.Model:
    """A small regression network using all three."""
    m = pnn.Model()
    m.add(pnn.Dense(1, 32, seed=0, dtype=dtype, initializer="he_normal")).add(Swish())
    m.add(pnn.Dense(32, 1, seed=1, dtype=dtype, initializer="glorot_uniform")).add(pnn.Linear())
    return m.set(loss=LogCosh(), optimizer=HeavyBall(0.05)).finalize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args(argv)
    from portable_nn.backends import get_backend

    backend = get_backend(args.backend)
    X, y = pnn.datasets.sine_data(256)
    m = model()
    history = m.train(backend.asarray(X), backend.asarray(y), epochs=args.epochs, batch_size=64, shuffle=True,
                      seed=0, verbose=False)
    print(f"{args.backend}: loss {history.loss[0]:.4g} -> {history.loss[-1]:.4g} after {args.epochs} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
