"""The divergence guard: what happens when the training loss stops being finite.

One policy per kind of backend, chosen from the data:

* **eager** (host arrays: NumPy, array-api-strict, PyTorch CPU -- a read-back
  is free): the loss is checked every step *before* the update, so the
  parameters keep their last finite values -- unless an update itself
  overflowed while the loss was still finite, which the error then says;
* **deferred** (devices and lazy arrays -- a read-back per step would stall
  the device): a device flag "the loss is finite" gates the fused CuPy
  kernels; the step losses and one "all parameters are finite" flag are read
  back at report points only, and a non-finite one restores the parameters
  of the last report point (copied there when the kernels update in place).

Either way ``Model.train`` raises ``FloatingPointError`` naming the epoch and step.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _xp
from .._typing import Array, Namespace
from ..network import Network
from ..optimizers import Optimizer

__all__ = ["DeferredGuard", "EagerGuard", "Guard", "guard_for"]

_HINT = "(lower the learning rate, or check the data)"


class Guard:
    """Base: where the loop is (for messages), and the hooks the loop calls."""

    def __init__(self) -> None:
        self.epoch = self.step = 0

    def at(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def before_update(self, loss_sum: Array) -> Array | None:
        """Between the loss and the update: raise, or return a device flag for the kernels."""
        return None

    def after_step(self, loss_sum: Array) -> None:
        """After the update (deferred policies remember the loss)."""

    def pending(self) -> list[Array]:
        """Values to read back at the next report point."""
        return []

    def check(self, host_values: list[float]) -> None:
        """At a report point, with the read-back values of ``pending()``: raise on divergence."""

    def at_end(self) -> None:
        """Once, after the last step."""


def all_finite(xp: Namespace, network: Network) -> Array:
    """One 0-d device bool: every parameter value and every optimizer state array is finite."""
    arrays = [a for p in network.parameters() for a in (p.value, *p.state.values())]
    return xp.all(xp.stack([xp.all(xp.isfinite(a)) for a in arrays]))


class EagerGuard(Guard):
    """Host arrays: check every step before the update (a free read-back)."""

    def __init__(self, xp: Namespace, network: Network) -> None:
        super().__init__()
        self.xp, self.network = xp, network

    def before_update(self, loss_sum: Array) -> None:
        value = float(loss_sum)
        if not math.isfinite(value):
            state = ("the parameters keep their last finite values" if bool(all_finite(self.xp, self.network))
                     else "the parameters are not finite either: an earlier update overflowed while the loss was "
                          "still finite")
            raise FloatingPointError(
                f"Model.train: the loss became {value} at epoch {self.epoch}, step {self.step}; {state} {_HINT}"
            )

    def at_end(self) -> None:
        # the loss can stay finite while the optimizer state overflows (RMSprop's cache): once a call, not a step
        if not bool(all_finite(self.xp, self.network)):
            raise FloatingPointError(
                "Model.train: the optimizer state became non-finite although the loss stayed finite; the "
                "parameters stopped learning (lower the learning rate; a new optimizer starts from fresh state)"
            )


class DeferredGuard(Guard):
    """Devices: no sync per step; check at report points and roll back to the last one."""

    def __init__(self, xp: Namespace, network: Network, optimizer: Optimizer) -> None:
        super().__init__()
        self.xp, self.network, self.optimizer = xp, network, optimizer
        self.losses: list[tuple[int, int, Array]] = []
        self.snapshot = self._take()

    def before_update(self, loss_sum: Array) -> Array:
        return self.xp.isfinite(loss_sum)

    def after_step(self, loss_sum: Array) -> None:
        self.losses.append((self.epoch, self.step, loss_sum))

    def pending(self) -> list[Array]:
        return [*(loss for _, _, loss in self.losses), all_finite(self.xp, self.network)]

    def check(self, host_values: list[float]) -> None:
        *losses, params_finite = host_values
        for (epoch, step, _), value in zip(self.losses, losses, strict=True):
            if not math.isfinite(value):
                self._restore()
                raise FloatingPointError(
                    f"Model.train: the loss became {value} at epoch {epoch}, step {step}; "
                    f"the parameters are back at finite values {_HINT}"
                )
        if not params_finite:
            self._restore()
            raise FloatingPointError(
                f"Model.train: the parameters or the optimizer state became non-finite by epoch {self.epoch}, "
                f"step {self.step} (an update overflowed); the parameters are back at finite values {_HINT}"
            )
        self.losses.clear()
        self.snapshot = self._take()

    def _take(self) -> Any:
        """Every parameter's value and state: references where updates rebind, copies where kernels write in place."""
        def keep(p: Any, a: Array) -> Array:
            return self.xp.asarray(a, copy=True) if p.owner is not None else a

        params = [(p, keep(p, p.value), {k: keep(p, v) for k, v in p.state.items()})
                  for p in self.network.parameters()]
        return params, (self.optimizer.iterations, self.optimizer.current_learning_rate)

    def _restore(self) -> None:
        params, (iterations, lr) = self.snapshot
        for p, value, state in params:
            p.value = value
            for key in list(p.state):
                if key not in state:
                    p.set_state(key, None)
            for key, s in state.items():
                p.set_state(key, s)
        self.optimizer.iterations, self.optimizer.current_learning_rate = iterations, lr


def guard_for(X: Array, network: Network, optimizer: Optimizer) -> Guard:
    """The policy for data ``X``: eager where a read-back is free, deferred elsewhere."""
    if _xp.cheap_sync(X):
        return EagerGuard(_xp.namespace(X), network)
    return DeferredGuard(_xp.namespace(X), network, optimizer)
