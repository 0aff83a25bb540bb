"""The divergence guard: what happens when the training loss stops being finite.

One policy per kind of backend, chosen from the data:

* **eager** (host arrays: NumPy, array-api-strict, PyTorch CPU -- a read-back
  is free): the loss is checked every step *before* the update;
* **deferred** (devices and lazy arrays -- a read-back per step would stall
  the device): a device flag "the loss is finite" gates the fused CuPy
  kernels; the step losses and one "all parameters are finite" flag are read
  back at report points only.

Either way ``Model.train`` raises ``FloatingPointError`` naming the epoch and
step, and the parameters go back to the latest kept state *whose loss was
finite*: their forward pass is finite, so training can go on at a lower
learning rate (an update that overflowed is undone, not kept).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from .. import _xp
from .._typing import Array, Namespace
from ..network import Network
from ..optimizers import Optimizer

__all__ = ["DeferredGuard", "EagerGuard", "Guard", "guard_for"]

HINT = "(lower the learning rate, or check the data)"


def _diverged(message: str) -> FloatingPointError:
    """The divergence error.  Data-parallel, every rank decides on the same all-reduced loss and the same
    parameters: every rank raises it at the same step (``collective``: no abort needed)."""
    exc = FloatingPointError(message)
    exc.collective = True  # type: ignore[attr-defined]
    return exc


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


class _Views:
    """A snapshot's parameters as a double-buffered flat buffer's views of one step (intact until the step after
    next writes that buffer), paired with their parameters only when restored: a full-batch run takes one such
    snapshot every step."""

    __slots__ = ("params", "views")

    def __init__(self, params: list[Any], views: list[tuple[Array, dict[str, Array]]]) -> None:
        self.params, self.views = params, views

    def __iter__(self) -> Iterator[tuple[Any, Array, dict[str, Array]]]:
        return ((p, value, state) for p, (value, state) in zip(self.params, self.views, strict=True))


class Kept:
    """Snapshots of every parameter's value and state, and the optimizer's counters.

    ``verified`` is the latest snapshot whose loss was finite: what a
    divergence restores, so the kept parameters give a finite forward pass and
    training can go on at a lower learning rate.  Snapshots hold references
    where updates make new arrays (free) and copies where the kernels write in
    place (NumPy/CuPy flat buffers).
    """

    def __init__(self, xp: Namespace, network: Network, optimizer: Optimizer) -> None:
        self.xp, self.network, self.optimizer = xp, network, optimizer
        self.params = network.parameters()  # fixed for a train call
        self.buffers = network.buffers()  # (layer, name) pairs, fixed for a train call too
        self.verified: tuple[Any, int, int] | None = None

    def free(self) -> bool:
        """Whether a snapshot costs nothing: no parameter lives in a buffer that is updated in place (the
        NumPy kernels write the next step into a spare buffer: the current one stays intact for a step)."""
        owner = self.params[0].owner if self.params else None
        if owner is not None and owner.double_buffered:
            if owner.valid:
                return True  # every parameter is a view of it while it is valid
        elif owner is not None:
            return False  # the first parameter is updated in place
        return all(p.owner is None or p.owner.double_buffered for p in self.params)

    def take(self) -> Any:
        owner = self.params[0].owner if self.params else None
        params: Any
        if owner is not None and owner.double_buffered and owner.valid and len(owner.params) == len(self.params):
            params = _Views(self.params, owner.views)  # a step's views, paired with the parameters if restored
        else:
            def keep(p: Any, a: Array) -> Array:
                return self.xp.asarray(a, copy=True) if p.owner is not None and not p.owner.double_buffered else a

            params = [(p, keep(p, p.value), {k: keep(p, v) for k, v in p.state.items()}) for p in self.params]
        # buffers (running statistics) are rebound by every forward pass, never written in place: references
        return params, (self.optimizer.iterations, self.optimizer.current_learning_rate), \
            self.network.buffer_values(self.buffers)

    def restore(self, snapshot: Any) -> None:
        params, (iterations, lr), buffers = snapshot
        self.network.set_buffer_values(buffers)
        for p, value, state in params:
            p.value = value
            for key in list(p.state):
                if key not in state:
                    p.set_state(key, None)
            for key, s in state.items():
                p.set_state(key, s)
        self.optimizer.iterations, self.optimizer.current_learning_rate = iterations, lr

    def restore_verified(self, fallback: Any = None) -> str:
        """Restore the last snapshot whose loss was finite; say where the parameters are now."""
        if self.verified is None:
            if fallback is not None:
                self.restore(fallback)
            return "the parameters are as they were when this call began (its first loss was not finite)"
        snapshot, epoch, step = self.verified
        self.restore(snapshot)
        return f"the parameters are back to those of epoch {epoch}, step {step}, whose loss was finite"


class EagerGuard(Guard):
    """Host arrays: check every step before the update (a free read-back).

    A finite loss verifies the parameters it was computed with; they are kept
    (by reference: every step; where the update writes in place: at each
    epoch's first step and every ``COPY_EVERY`` steps, one copy each).
    """

    COPY_EVERY = 100
    # With fewer steps an epoch, a copy at each epoch's first step would cost more than double buffering
    # (the NumPy kernels writing each step into a second buffer: ~10% of an Adam update): keep by reference.
    DOUBLE_BELOW = 8

    def __init__(self, xp: Namespace, network: Network, optimizer: Optimizer, steps: int = 1) -> None:
        super().__init__()
        self.xp, self.network = xp, network
        self.kept = Kept(xp, network, optimizer)
        self.since = 0
        self.optimizer = optimizer
        optimizer.keep_previous = steps < self.DOUBLE_BELOW

    def before_update(self, loss_sum: Array) -> None:
        value = float(loss_sum)
        if not math.isfinite(value):
            where = self.kept.restore_verified()
            raise _diverged(
                f"Model.train: the loss became {value} at epoch {self.epoch}, step {self.step}; {where} {HINT}"
            )
        self.since += 1
        if self.kept.verified is None or self.step == 1 or self.since >= self.COPY_EVERY or self.kept.free():
            self.kept.verified, self.since = (self.kept.take(), self.epoch, self.step), 0

    def at_end(self) -> None:
        self.optimizer.keep_previous = False
        # the loss can stay finite while the optimizer state overflows (RMSprop's cache): once a call, not a step
        if not bool(all_finite(self.xp, self.network)):
            raise _diverged(
                "Model.train: the optimizer state became non-finite although the loss stayed finite; the "
                "parameters stopped learning (lower the learning rate; a new optimizer starts from fresh state)"
            )


class DeferredGuard(Guard):
    """Devices: no sync per step; check at report points.

    A snapshot is taken at each report point (and when the call begins); the
    first loss read back after it verifies it.  A divergence restores the
    latest verified snapshot.
    """

    def __init__(self, xp: Namespace, network: Network, optimizer: Optimizer) -> None:
        super().__init__()
        self.xp, self.network = xp, network
        self.kept = Kept(xp, network, optimizer)
        self.losses: list[tuple[int, int, Array]] = []
        self.snapshot = self.kept.take()

    def before_update(self, loss_sum: Array) -> Array:
        return self.xp.isfinite(loss_sum)

    def after_step(self, loss_sum: Array) -> None:
        self.losses.append((self.epoch, self.step, loss_sum))

    def pending(self) -> list[Array]:
        return [*(loss for _, _, loss in self.losses), all_finite(self.xp, self.network)]

    def check(self, host_values: list[float]) -> None:
        *losses, params_finite = host_values
        if self.losses and math.isfinite(losses[0]):
            epoch, step, _ = self.losses[0]
            self.kept.verified = (self.snapshot, epoch, step)
        for (epoch, step, _), value in zip(self.losses, losses, strict=True):
            if not math.isfinite(value):
                where = self.kept.restore_verified(fallback=self.snapshot)
                raise _diverged(
                    f"Model.train: the loss became {value} at epoch {epoch}, step {step}; {where} {HINT}"
                )
        if not params_finite:
            where = self.kept.restore_verified(fallback=self.snapshot)
            raise _diverged(
                f"Model.train: the parameters or the optimizer state became non-finite by epoch {self.epoch}, "
                f"step {self.step} (an update overflowed); {where} {HINT}"
            )
        self.losses.clear()
        self.snapshot = self.kept.take()


def guard_for(X: Array, network: Network, optimizer: Optimizer, steps: int = 1) -> Guard:
    """The policy for data ``X`` (``steps`` an epoch): eager where a read-back is free, deferred elsewhere."""
    if _xp.cheap_sync(X):
        return EagerGuard(_xp.namespace(X), network, optimizer, steps)
    return DeferredGuard(_xp.namespace(X), network, optimizer)
