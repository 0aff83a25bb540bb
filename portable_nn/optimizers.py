"""Optimizers with the book's defaults and protocol, over ``Parameter`` objects.

The functional contract (what the training engine runs):

* ``init(params) -> state``: one dict per parameter, an array of zeros per
  name in ``state_names``;
* ``update(grads, state, params, learning_rate, iteration) -> (params, state)``:
  clipping, then the update ``rule`` per parameter; new arrays, nothing mutated.

Each update rule is written once, as ``rule(xp, value, grad, state, lr, t) ->
(value, state)``: new arrays (JAX), the learning rate and the 1-based step
explicit (a compiled step traces them).  An optimizer is that rule, its
``state_names`` and ``get_config``: its state is saved and loaded by those
names.  Where the backend allows, the delegation layer
(``portable_nn.kernels``) runs the same formula fused over a flat buffer, for
the optimizers that name a ``kernel``; every other one runs its rule.

The book's protocol stays: ``pre_update_params()`` sets the learning rate of
the step (``lr / (1 + decay * iterations)``, or the schedule's),
``update_params(layer)`` updates a layer's parameters,
``post_update_params()`` counts the iteration.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from . import _xp, kernels, registries, schedules
from ._repr import config_repr
from ._typing import Array, Namespace
from .parameter import FlatParameters, Parameter

__all__ = ["SGD", "Adagrad", "Adam", "Optimizer", "RMSprop"]

State = dict[str, Array]


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

    registry: ClassVar[dict[str, type[Optimizer]]] = {}
    state_names: tuple[str, ...] = ()
    kernel: str = ""  # the rule's name in the backend kernels (portable_nn.kernels)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registries.register(Optimizer.registry, cls, "optimizer")

    def __init__(self, learning_rate: float, decay: float, *, clipnorm: float | None = None,
                 clipvalue: float | None = None, schedule: Any = None) -> None:
        name = type(self).__name__
        self.learning_rate = _positive(name, "learning_rate", learning_rate)
        self.decay = _non_negative(name, "decay", decay)
        self.schedule = schedules.from_config(schedule)
        if self.schedule is not None and self.decay:
            raise ValueError(f"{name}: give decay or a schedule, not both (decay is InverseTimeDecay(decay))")
        self.clipnorm = None if clipnorm is None else _positive(name, "clipnorm", clipnorm)
        self.clipvalue = None if clipvalue is None else _positive(name, "clipvalue", clipvalue)
        self.current_learning_rate = self.learning_rate
        self.iterations = 0
        self._flat: FlatParameters | None = None
        # the kernels write each step into a second buffer, leaving the step before intact (the divergence
        # guard sets it for a train call where it would otherwise copy the parameters often)
        self.keep_previous = False

    def pre_update_params(self) -> None:
        if self.schedule is not None or self.decay:
            self.current_learning_rate = float(self.rate_at(self.iterations))

    def rate_at(self, iteration: Any, xp: Namespace | None = None, current: Any = None) -> Any:
        """The learning rate of 0-based step ``iteration`` -- the one place the schedule is applied: the
        schedule's, ``learning_rate / (1 + decay * iteration)``, else ``current`` (default
        ``current_learning_rate``, which a callback may have changed).  ``iteration`` may be a traced array
        (then ``xp`` is its namespace)."""
        if self.schedule is not None:
            return self.schedule(self.learning_rate, iteration, xp) if xp is not None else \
                self.schedule(self.learning_rate, iteration)
        if self.decay:
            return self.learning_rate / (1.0 + self.decay * iteration)
        return self.current_learning_rate if current is None else current

    # -- the functional contract -----------------------------------------------------
    def init(self, params: list[Array]) -> list[State]:
        """The optimizer state of ``params`` before the first step: zeros per name in ``state_names``."""
        return [{key: _xp.namespace(v).zeros_like(v) for key in self.state_names} for v in params]

    def update(self, grads: list[Array], state: list[State], params: list[Array], learning_rate: Any,
               iteration: Any) -> tuple[list[Array], list[State]]:
        """One step over every parameter: ``(new params, new state)``, nothing mutated (the reference path).

        Clipping over all ``grads``, then ``rule`` per parameter at ``learning_rate`` and 1-based
        ``iteration`` (either may be a traced array); a missing state entry starts at zero."""
        if not params:
            return [], []
        xp = _xp.namespace(params[0])
        grads = self.clip_grads(xp, list(grads))
        new_params, new_state = [], []
        for value, grad, s in zip(params, grads, state, strict=True):
            current = {key: s[key] if s.get(key) is not None else xp.zeros_like(value) for key in self.state_names}
            new_value, current = self.rule(xp, value, grad, current, learning_rate, iteration)
            new_params.append(new_value)
            new_state.append(current)
        return new_params, new_state

    def _clip_config(self) -> dict[str, Any]:
        """The settings every optimizer shares besides the rate: clipping and the schedule."""
        return {"clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
                "schedule": None if self.schedule is None else self.schedule.spec()}

    def clip_grads(self, xp: Namespace, grads: list[Array]) -> list[Array]:
        """Gradient clipping: ``clipvalue`` clips each element to ``[-v, v]``; then ``clipnorm`` scales all
        gradients by ``min(1, clipnorm / (||g|| + 1e-6))``, ``||g||`` the global norm over every parameter
        (as ``torch.nn.utils.clip_grad_norm_``).  On the device, no host sync."""
        if self.clipvalue is not None:
            grads = [xp.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            total = xp.sqrt(sum((xp.sum(g * g) for g in grads[1:]), xp.sum(grads[0] * grads[0])))
            one = xp.ones((), dtype=total.dtype, device=_xp.array_device(total))
            coefficient = xp.minimum(self.clipnorm / (total + 1e-6), one)
            grads = [g * coefficient for g in grads]
        return grads

    def _clip_parameters(self, params: list[Parameter]) -> None:
        if (self.clipnorm is not None or self.clipvalue is not None) and params:
            if any(p.grad is None for p in params):
                return  # update_parameter names the missing gradient
            clipped = self.clip_grads(_xp.namespace(params[0].grad), [p.grad for p in params])
            for p, g in zip(params, clipped, strict=True):
                p.grad = g

    def update_params(self, layer: Any) -> None:
        """Update one layer's parameters on the portable path (new arrays, rebound).

        Called layer by layer (the book's protocol), ``clipnorm`` takes the norm over that layer's parameters;
        ``update_all`` and ``Model.train`` take it over every parameter.
        """
        params = list(layer.parameters())
        self._clip_parameters(params)
        for p in params:
            self.update_parameter(p)

    def update_parameter(self, p: Parameter) -> None:
        """The portable rule applied to one parameter and its state."""
        if p.grad is None:
            raise RuntimeError(
                f"{type(self).__name__}.update_params: the gradient of {p.name} is missing; "
                "call backward before updating"
            )
        xp = _xp.namespace(p.value)
        state = {key: p.state[key] if p.state.get(key) is not None else xp.zeros_like(p.value)
                 for key in self.state_names}
        value, state = self.rule(xp, p.value, p.grad, state, self.current_learning_rate, self.iterations + 1)
        p.value = value
        for key in self.state_names:
            p.set_state(key, state[key])

    def update_all(self, layers: Any, ok: Array | None = None) -> None:
        """Update every parameter of ``layers``: fused over a flat buffer where the backend allows.

        ``ok``: an optional 0-d device bool; the CuPy kernels skip the update
        where it is False (a non-finite loss) without a host sync.
        """
        self.update_parameters([p for layer in layers for p in layer.parameters()], ok)

    def update_parameters(self, params: list[Parameter], ok: Array | None = None) -> None:
        """``update_all`` over a list of parameters (the training step keeps the list)."""
        self._clip_parameters(params)
        kernels.update(self, params, ok)

    def flat_buffer(self, params: list[Parameter]) -> FlatParameters | None:
        """The flat buffer of ``params`` for the kernels (rebuilt when a parameter was reassigned), or None."""
        if self._flat is None or not self._flat.serves(params, self.state_names):
            self._flat = FlatParameters(params, self.state_names) if FlatParameters.fits(params) else None
        if self._flat is not None:
            self._flat.keep_previous = self.keep_previous
        return self._flat

    def rule(self, xp: Namespace, value: Array, grad: Array, state: State, lr: Any, t: Any) -> tuple[Array, State]:
        """One update of ``value`` at learning rate ``lr``, step ``t`` (1-based): new value and state."""
        raise NotImplementedError(f"{type(self).__name__}: an optimizer defines rule(xp, value, grad, state, lr, t) "
                                  "-> (value, state)")

    def kernel_args(self, lr: float, t: int) -> dict[str, Any]:
        """The scalars of the backend kernel named by ``kernel`` for this step (only with a ``kernel``)."""
        raise NotImplementedError(f"{type(self).__name__}: kernel={self.kernel!r} needs kernel_args(lr, t)")

    def post_update_params(self) -> None:
        self.iterations += 1

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for model files (a subclass with arguments of its own adds them)."""
        return {"learning_rate": self.learning_rate, "decay": self.decay, **self._clip_config()}

    def __repr__(self) -> str:
        return config_repr(self)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, _flat=None)  # views into a buffer are not part of a copy


class SGD(Optimizer):
    """``update = momentum * update_prev - lr * d``; ``p = p + update`` (``p = p - lr * d`` without momentum)."""

    def __init__(self, learning_rate: float = 1.0, decay: float = 0.0, momentum: float = 0.0, *,
                 clipnorm: float | None = None, clipvalue: float | None = None, schedule: Any = None) -> None:
        super().__init__(learning_rate, decay, clipnorm=clipnorm, clipvalue=clipvalue, schedule=schedule)
        self.momentum = _fraction("SGD", "momentum", momentum)
        self.state_names = ("momentum",) if self.momentum else ()
        self.kernel = "sgd_momentum" if self.momentum else "sgd"

    def rule(self, xp: Namespace, value: Array, grad: Array, state: State, lr: Any, t: Any) -> tuple[Array, State]:
        if not self.momentum:
            return value - lr * grad, {}
        update = self.momentum * state["momentum"] - lr * grad
        return value + update, {"momentum": update}

    def kernel_args(self, lr: float, t: int) -> dict[str, Any]:
        return {"lr": lr, "momentum": self.momentum} if self.momentum else {"lr": lr}

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "decay": self.decay, "momentum": self.momentum,
                **self._clip_config()}


class Adagrad(Optimizer):
    """``cache = cache + d**2``; ``p = p - (lr * d) / (sqrt(cache) + eps)``."""

    state_names = ("cache",)
    kernel = "cache_rule"

    def __init__(self, learning_rate: float = 1.0, decay: float = 0.0, epsilon: float = 1e-7, *,
                 clipnorm: float | None = None, clipvalue: float | None = None, schedule: Any = None) -> None:
        super().__init__(learning_rate, decay, clipnorm=clipnorm, clipvalue=clipvalue, schedule=schedule)
        self.epsilon = _positive("Adagrad", "epsilon", epsilon)

    def rule(self, xp: Namespace, value: Array, grad: Array, state: State, lr: Any, t: Any) -> tuple[Array, State]:
        cache = state["cache"] + grad * grad
        return value - (lr * grad) / (xp.sqrt(cache) + self.epsilon), {"cache": cache}

    def kernel_args(self, lr: float, t: int) -> dict[str, Any]:
        return {"lr": lr, "eps": self.epsilon, "rho": None}

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "decay": self.decay, "epsilon": self.epsilon,
                **self._clip_config()}


class RMSprop(Optimizer):
    """``cache = rho * cache + (1 - rho) * d**2``; ``p = p - (lr * d) / (sqrt(cache) + eps)``."""

    state_names = ("cache",)
    kernel = "cache_rule"

    def __init__(
        self, learning_rate: float = 0.001, decay: float = 0.0, epsilon: float = 1e-7, rho: float = 0.9, *,
        clipnorm: float | None = None, clipvalue: float | None = None, schedule: Any = None,
    ) -> None:
        super().__init__(learning_rate, decay, clipnorm=clipnorm, clipvalue=clipvalue, schedule=schedule)
        self.epsilon = _positive("RMSprop", "epsilon", epsilon)
        self.rho = _fraction("RMSprop", "rho", rho)

    def rule(self, xp: Namespace, value: Array, grad: Array, state: State, lr: Any, t: Any) -> tuple[Array, State]:
        cache = self.rho * state["cache"] + (1.0 - self.rho) * (grad * grad)
        return value - (lr * grad) / (xp.sqrt(cache) + self.epsilon), {"cache": cache}

    def kernel_args(self, lr: float, t: int) -> dict[str, Any]:
        return {"lr": lr, "eps": self.epsilon, "rho": self.rho}

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "decay": self.decay, "epsilon": self.epsilon, "rho": self.rho,
                **self._clip_config()}


class Adam(Optimizer):
    """``m = b1 m + (1 - b1) d``, ``v = b2 v + (1 - b2) d**2``;
    ``p = p - lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)``.

    ``weight_decay > 0`` adds AdamW's decoupled decay ``p = p - lr * wd * p``
    (applied to every parameter first, as ``torch.optim.AdamW``).
    """

    state_names = ("momentum", "cache")
    kernel = "adam"

    def __init__(
        self,
        learning_rate: float = 0.001,
        decay: float = 0.0,
        epsilon: float = 1e-7,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        *,
        weight_decay: float = 0.0,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        schedule: Any = None,
    ) -> None:
        super().__init__(learning_rate, decay, clipnorm=clipnorm, clipvalue=clipvalue, schedule=schedule)
        self.epsilon = _positive("Adam", "epsilon", epsilon)
        self.beta_1 = _fraction("Adam", "beta_1", beta_1)
        self.beta_2 = _fraction("Adam", "beta_2", beta_2)
        self.weight_decay = _non_negative("Adam", "weight_decay", weight_decay)

    def rule(self, xp: Namespace, value: Array, grad: Array, state: State, lr: Any, t: Any) -> tuple[Array, State]:
        b1, b2 = self.beta_1, self.beta_2
        if self.weight_decay:
            value = value - (lr * self.weight_decay) * value
        momentum = b1 * state["momentum"] + (1.0 - b1) * grad
        cache = b2 * state["cache"] + (1.0 - b2) * (grad * grad)
        step, eps = self._corrections(lr, t)
        return value - (momentum / (xp.sqrt(cache) + eps)) * step, {"momentum": momentum, "cache": cache}

    def _corrections(self, lr: Any, t: Any) -> tuple[Any, Any]:
        """The bias corrections as two scalars, ``step = lr * s / (1 - b1^t)`` and ``eps * s`` with
        ``s = sqrt(1 - b2^t)``: the docstring's update with numerator and denominator times ``s``, one
        elementwise pass fewer than dividing ``v`` by ``1 - b2^t`` (PyTorch's form; the same value)."""
        s = (1.0 - self.beta_2**t) ** 0.5
        return lr * s / (1.0 - self.beta_1**t), self.epsilon * s

    def kernel_args(self, lr: float, t: int) -> dict[str, Any]:
        step, eps = self._corrections(lr, t)
        return {"lr": lr, "wd": self.weight_decay, "b1": self.beta_1, "b2": self.beta_2, "step": step, "eps": eps}

    def get_config(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "decay": self.decay,
            "epsilon": self.epsilon,
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "weight_decay": self.weight_decay,
            **self._clip_config(),
        }
