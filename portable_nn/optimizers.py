"""Optimizers with the book's defaults and protocol.

``pre_update_params()`` sets ``current_learning_rate = lr / (1 + decay *
iterations)``; ``update_params(layer)`` updates every parameter of a layer;
``post_update_params()`` counts the iteration.  State (momentum, cache) is
created with ``zeros_like`` of the parameter, so it lives on the parameter's
library and device.  Updates rebind arrays, never mutate them (JAX).
"""

from __future__ import annotations

import math
from typing import Any

from . import _xp, backend_kernels

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam"]


def _positive(owner: str, name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return value


def _non_negative(owner: str, name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return value


def _fraction(owner: str, name: str, value: float) -> float:
    value = float(value)
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value!r}")
    return value


class Optimizer:
    """Learning-rate decay and the pre/update/post protocol."""

    state_names: tuple[str, ...] = ()
    # A 0-d device bool set by Model.train: the fused device kernels leave the
    # parameters unchanged where it is False (a non-finite loss), no host sync.
    finite_guard: Any = None

    def __init__(self, learning_rate: float, decay: float) -> None:
        name = type(self).__name__
        self.learning_rate = _positive(name, "learning_rate", learning_rate)
        self.decay = _non_negative(name, "decay", decay)
        self.current_learning_rate = self.learning_rate
        self.iterations = 0

    def pre_update_params(self) -> None:
        if self.decay:
            self.current_learning_rate = self.learning_rate / (1.0 + self.decay * self.iterations)

    def update_params(self, layer: Any) -> None:
        """Update one layer's parameters (the reference path: new arrays, rebound)."""
        xp = _xp.namespace(layer.weight)
        for name in layer.parameter_names:
            param, grad = getattr(layer, name), getattr(layer, f"d{name}")
            if grad is None:
                raise RuntimeError(
                    f"{type(self).__name__}.update_params: {type(layer).__name__}.d{name} is missing; "
                    "call backward before updating"
                )
            state = [getattr(layer, f"{name}_{s}", None) for s in self.state_names]
            state = [xp.zeros_like(param) if s is None else s for s in state]
            param, state = self._step(xp, param, grad, state)
            setattr(layer, name, param)
            for s, value in zip(self.state_names, state):
                setattr(layer, f"{name}_{s}", value)

    def update_all(self, layers: Any) -> None:
        """Update every layer's parameters: one pass over a flat buffer where the backend allows.

        NumPy and CuPy (fast paths on): parameters, optimizer state and
        gradients live in one contiguous buffer each (the layers hold views),
        so an update is a handful of whole-buffer operations -- or one fused
        kernel -- instead of a dozen per parameter.  Elsewhere, and for any
        layer a user changed since, ``update_params`` per layer.
        """
        layers = list(layers)
        flat = self._flat
        if flat is None or not flat.valid(layers):
            flat = self._flat = backend_kernels.FlatParameters.build(layers, self.state_names)
        if flat is None:
            for layer in layers:
                self.update_params(layer)
            return
        flat.gather_grads()
        self._step_inplace(flat.kind, flat)

    _flat: Any = None

    def _guard(self) -> Any:
        return True if self.finite_guard is None else self.finite_guard

    def _step(self, xp: Any, param: Any, grad: Any, state: list[Any]) -> tuple[Any, list[Any]]:
        raise NotImplementedError  # pragma: no cover

    def _step_inplace(self, kind: str, flat: Any) -> None:
        """One update over the flat buffers (``flat.grad`` may be consumed)."""
        raise NotImplementedError  # pragma: no cover

    def post_update_params(self) -> None:
        self.iterations += 1

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """``update = momentum * update_prev - lr * d``; ``p += update``."""

    def __init__(self, learning_rate: float = 1.0, decay: float = 0.0, momentum: float = 0.0) -> None:
        super().__init__(learning_rate, decay)
        self.momentum = _fraction("SGD", "momentum", momentum)
        self.state_names = ("momentum",) if self.momentum else ()

    def _step(self, xp: Any, param: Any, grad: Any, state: list[Any]) -> tuple[Any, list[Any]]:
        lr = self.current_learning_rate
        if not self.momentum:
            return param - lr * grad, []
        update = self.momentum * state[0] - lr * grad
        return param + update, [update]

    def _step_inplace(self, kind: str, flat: Any) -> None:
        if kind == "numpy":
            backend_kernels.numpy_sgd(flat.param, flat.grad, flat.state, self.current_learning_rate, self.momentum)
        else:
            backend_kernels.cupy_sgd(flat.param, flat.grad, flat.state, self.current_learning_rate, self.momentum,
                                     self._guard())

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "decay": self.decay, "momentum": self.momentum}


class Adagrad(Optimizer):
    """``cache += d**2``; ``p -= lr * d / (sqrt(cache) + eps)``."""

    state_names = ("cache",)

    def __init__(self, learning_rate: float = 1.0, decay: float = 0.0, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate, decay)
        self.epsilon = _positive("Adagrad", "epsilon", epsilon)

    def _step(self, xp: Any, param: Any, grad: Any, state: list[Any]) -> tuple[Any, list[Any]]:
        cache = state[0] + grad * grad
        return param - self.current_learning_rate * grad / (xp.sqrt(cache) + self.epsilon), [cache]

    def _step_inplace(self, kind: str, flat: Any) -> None:
        _cache_rule_inplace(self, kind, flat, None)

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "decay": self.decay, "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """``cache = rho * cache + (1 - rho) * d**2``; ``p -= lr * d / (sqrt(cache) + eps)``."""

    state_names = ("cache",)

    def __init__(
        self, learning_rate: float = 0.001, decay: float = 0.0, epsilon: float = 1e-7, rho: float = 0.9
    ) -> None:
        super().__init__(learning_rate, decay)
        self.epsilon = _positive("RMSprop", "epsilon", epsilon)
        self.rho = _fraction("RMSprop", "rho", rho)

    def _step(self, xp: Any, param: Any, grad: Any, state: list[Any]) -> tuple[Any, list[Any]]:
        cache = self.rho * state[0] + (1.0 - self.rho) * (grad * grad)
        return param - self.current_learning_rate * grad / (xp.sqrt(cache) + self.epsilon), [cache]

    def _step_inplace(self, kind: str, flat: Any) -> None:
        _cache_rule_inplace(self, kind, flat, self.rho)

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "decay": self.decay, "epsilon": self.epsilon, "rho": self.rho}


def _cache_rule_inplace(opt: Any, kind: str, flat: Any, rho: float | None) -> None:
    if kind == "numpy":
        backend_kernels.numpy_cache_rule(flat.param, flat.grad, flat.state[0], flat.scratch,
                                         lr=opt.current_learning_rate, eps=opt.epsilon, rho=rho)
    else:
        backend_kernels.cupy_cache_rule(flat.param, flat.grad, flat.state[0], opt.current_learning_rate,
                                        opt.epsilon, rho, opt._guard())


class Adam(Optimizer):
    """``m = b1 m + (1 - b1) d``, ``v = b2 v + (1 - b2) d**2``;
    ``p -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)``.

    ``weight_decay > 0`` adds AdamW's decoupled decay ``p -= lr * wd * p``
    (applied to every parameter first, as ``torch.optim.AdamW``).
    """

    state_names = ("momentum", "cache")

    def __init__(
        self,
        learning_rate: float = 0.001,
        decay: float = 0.0,
        epsilon: float = 1e-7,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        *,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate, decay)
        self.epsilon = _positive("Adam", "epsilon", epsilon)
        self.beta_1 = _fraction("Adam", "beta_1", beta_1)
        self.beta_2 = _fraction("Adam", "beta_2", beta_2)
        self.weight_decay = _non_negative("Adam", "weight_decay", weight_decay)

    def _step(self, xp: Any, param: Any, grad: Any, state: list[Any]) -> tuple[Any, list[Any]]:
        lr, b1, b2 = self.current_learning_rate, self.beta_1, self.beta_2
        t = self.iterations + 1
        if self.weight_decay:
            param = param - (lr * self.weight_decay) * param
        momentum = b1 * state[0] + (1.0 - b1) * grad
        cache = b2 * state[1] + (1.0 - b2) * (grad * grad)
        # bias corrections folded into two host scalars: one fewer pass over each array
        step = lr / (1.0 - b1**t)
        denom = xp.sqrt(cache) * (1.0 / math.sqrt(1.0 - b2**t)) + self.epsilon
        return param - step * momentum / denom, [momentum, cache]

    def _step_inplace(self, kind: str, flat: Any) -> None:
        t = self.iterations + 1
        lr = self.current_learning_rate
        args = {"lr": lr, "wd": self.weight_decay, "b1": self.beta_1, "b2": self.beta_2,
                "step": lr / (1.0 - self.beta_1**t), "c2": 1.0 / math.sqrt(1.0 - self.beta_2**t),
                "eps": self.epsilon}
        if kind == "numpy":
            backend_kernels.numpy_adam(flat.param, flat.grad, flat.state[0], flat.state[1], **args)
        else:
            backend_kernels.cupy_adam(flat.param, flat.grad, flat.state[0], flat.state[1], ok=self._guard(), **args)

    def get_config(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "decay": self.decay,
            "epsilon": self.epsilon,
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "weight_decay": self.weight_decay,
        }
