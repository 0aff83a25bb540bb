"""Runners: how a block of steps runs.  The engine (``engine.py``) turns their blocks into reports,
``History``, callbacks and stops; ``fit`` picks the source and the runner.

* ``EagerRunner``: one step a block, on the layers' parameters (the kernels update them in place where the
  backend allows); its step is ``step.train_step`` or the same step under ``torch.compile``
  (``compiled.torch_stepper``); with a reducer (``distributed.DataParallel``) the gradients of every rank
  are all-reduced inside the step.  Batches come from a source: arrays in memory (``loop.InMemory``) or
  Dask windows (``stream.Streamed``).
* ``JaxRunner``: blocks of whole epochs under one ``jax.jit`` (``compiled.train_block``): one dispatch and
  one read-back a block, the guard inside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import _xp
from .._typing import Array, Namespace
from . import compiled
from .engine import Block, host_steps, run
from .guard import Guard, Kept, guard_for
from .loop import History, InMemory, StepBoundaryInterrupts, batches, prepared_targets, scoring
from .step import Plan, evaluate_sums, random_layers, regularization_loss, train_step
from .stream import Streamed

__all__ = ["EagerRunner", "JaxRunner", "fit"]


def fit(plan: Plan, X: Array, y: Array, *, epochs: int, batch_size: int | None, print_every: int | None,
        validation_data: tuple[Array, Array] | None, shuffle: bool, seed: int | None, verbose: bool,
        callback: Callable[[dict[str, Any]], None] | None, runner: str = "eager", parallel: Any = None,
        callbacks: Any = None, metrics: list[Any] | None = None,
        window_check: Callable[[Array, Array], None] | None = None) -> History:
    """Train ``plan`` on checked data with the runner named ``runner`` (``"eager"``, ``"torch"`` or
    ``"jax"``); see ``Model.train``.  ``parallel``: a ``distributed.DataParallel`` (every rank runs this on
    the same global batches)."""
    # Shuffle orders are drawn on the host (one index vector an epoch, sent once):
    # the same seed gives the same order on every backend.
    rng = np.random.default_rng(seed)
    if validation_data is not None and _xp.is_lazy(validation_data[0]):
        # a validation set is evaluated every epoch: brought into memory once
        validation_data = (validation_data[0].compute(), validation_data[1].compute())
    scored = scoring(plan, metrics, X, y, validation_data, batch_size)
    options = {"epochs": epochs, "print_every": print_every, "verbose": verbose, "callback": callback,
               "callbacks": callbacks, "scored": scored}
    xp = _xp.namespace(X)
    optimizer = plan.optimizer
    assert optimizer is not None
    if runner == "jax":
        per_block = 1 if callbacks or scored else None
        jax_runner = JaxRunner(plan, X, y, batch_size, shuffle, rng, validation_data, per_block, print_every)
        return run(plan, jax_runner, xp, **options)
    step = compiled.torch_stepper(plan) if runner == "torch" else train_step
    if not _xp.is_lazy(X):
        source: Any = InMemory(plan, X, y, batch_size, shuffle, rng)
        eager = EagerRunner(plan, source, xp, guard_for(X, plan.network, optimizer, source.steps), step, parallel,
                            validation_data, batch_size)
        return run(plan, eager, xp, **options)
    # Dask: stream windows of blocks into their own library (training/stream.py); the parameters and state
    # move there for the call and back to Dask arrays after it
    source = Streamed(plan, X, y, batch_size, shuffle, rng, check=window_check)
    local = source.first_block()
    with _moved(plan, local, X):
        guard = guard_for(local, plan.network, optimizer, source.steps)
        eager = EagerRunner(plan, source, _xp.namespace(local), guard, step, parallel, validation_data, batch_size)
        return run(plan, eager, _xp.namespace(local), **options)


class _moved:
    """The model's arrays moved to ``local``'s library for the call, and back to ``home``'s after it."""

    def __init__(self, plan: Plan, local: Array, home: Array) -> None:
        self.plan, self.local, self.home = plan, local, home

    def __enter__(self) -> None:
        self.plan.network.to(self.local)
        self.plan.accuracy.to(self.local)

    def __exit__(self, *exc: object) -> None:
        plan, home = self.plan, self.home
        plan.network.to(home)
        plan.accuracy.to(home)
        xp, dev = _xp.namespace(home), _xp.array_device(home)
        for p in plan.parameters:  # the book's dweight/dbias: the last step's gradients, as Dask arrays too
            if p.grad is not None:
                p.grad = _xp.move(p.grad, xp, dev)


def _validation(plan: Plan, validation_data: tuple[Array, Array] | None, batch_size: int | None) -> Any:
    """The validation data with their targets prepared once, and their batches."""
    if validation_data is None:
        return None
    Xv, yv = validation_data
    return (Xv, *prepared_targets(plan, _xp.namespace(Xv), yv), batches(int(Xv.shape[0]), batch_size))


class EagerRunner:
    """One step a block over ``source``'s batches; ``guard`` checks each step (see ``guard.py``)."""

    def __init__(self, plan: Plan, source: Any, xp: Namespace, guard: Guard, step: Callable[..., Any] = train_step,
                 parallel: Any = None, validation_data: Any = None, batch_size: int | None = None) -> None:
        self.plan, self.source, self.xp, self.guard, self.step, self.parallel = plan, source, xp, guard, step, parallel
        self.steps = source.steps
        self.validation = _validation(plan, validation_data, batch_size)
        self.penalized = any(p.l1 or p.l2 for p in plan.parameters)  # else no regularization term to add up

    def blocks(self, epochs: int, interrupts: StepBoundaryInterrupts) -> Iterator[Block]:
        plan, guard, parallel = self.plan, self.guard, self.parallel
        optimizer = plan.optimizer
        assert optimizer is not None
        for epoch in range(1, epochs + 1):
            for i, (xb, ylb, yab) in enumerate(self.source.epoch(lambda y: prepared_targets(plan, self.xp, y))):
                guard.at(epoch, i + 1)
                iteration, stop = optimizer.iterations, None
                if parallel is None:
                    loss, correct, compared = self.step(plan, xb, ylb, yab, guard.before_update)
                else:  # a rank's Ctrl-C travels in the step's all-reduce: every rank stops after the same step
                    loss, correct, compared, stop = parallel.step(plan, xb, ylb, yab, guard.before_update,
                                                                  interrupts.pending)
                guard.after_step(loss)
                ended = {epoch: self._epoch_end()} if i == self.steps - 1 else {}
                yield Block(epoch, i + 1, iteration, [loss], [correct], [compared], [int(xb.shape[0])], ended, stop)

    def _epoch_end(self) -> dict[str, Any]:
        """Regularization and validation figures at an epoch's end (device values)."""
        plan = self.plan
        if self.parallel is not None:  # the epoch's validation figures use the ranks' common statistics
            self.parallel.average_buffers(plan.network)
        penalty = regularization_loss(plan, [p.value for p in plan.parameters]) if self.penalized else 0.0
        figures = {"regularization_loss": penalty}
        if self.validation is not None:
            figures["val_loss"], figures["val_accuracy"] = evaluate_sums(plan, *self.validation)
        return figures

    def at_report(self, where: str) -> None:
        if self.parallel is not None:
            self.parallel.check_in_step(self.plan.network, where)

    def finish(self) -> None:
        self.guard.at_end()


class JaxRunner:
    """Blocks of epochs under one ``jax.jit``: ``lax.scan`` over each epoch's full batches, then its last partial
    batch.  A block ends at each ``per_block`` epochs (default: as many as ``print_every`` steps span, if set) and
    lasts at most about ``BLOCK_SECONDS``, sized from the timing of a one-epoch block: a Ctrl-C is honoured
    within about a second, at a block's end (the first blocks are one epoch each, until one ran without
    compiling)."""

    BLOCK_SECONDS = 0.5

    def __init__(self, plan: Plan, X: Array, y: Array, batch_size: int | None, shuffle: bool, rng: Any,
                 validation_data: Any, per_block: int | None, print_every: int | None) -> None:
        self.plan, self.X, self.shuffle, self.rng = plan, X, shuffle, rng
        self.xp = _xp.namespace(X)
        self.n = int(X.shape[0])
        self.bs = self.n if not batch_size else min(batch_size, self.n)
        self.steps = self.n // self.bs + (1 if self.n % self.bs else 0)
        # a report at each epoch's end (print_every None): a block an epoch, the shape compiled once
        self.per_block = per_block or (max(1, print_every // self.steps) if print_every else 1)
        self.y_loss, self.y_acc = prepared_targets(plan, self.xp, y, plan.weights)
        self.val = self.val_batches = None
        if validation_data is not None:
            Xv, yv = validation_data
            self.val = (Xv, *prepared_targets(plan, _xp.namespace(Xv), yv))
            self.val_batches = batches(int(Xv.shape[0]), batch_size)
        self.guard = Guard()  # the guard runs inside the block (compiled.check_block)
        self.rows = [self.bs] * (self.steps - 1) + [self.n - self.bs * (self.steps - 1)]
        self.epoch_seconds: float | None = None  # one epoch's time in a block that compiled nothing

    def _next_block(self, done: int, epochs: int) -> int:
        """How many epochs the next block runs: up to the next multiple of ``per_block``, at most about
        ``BLOCK_SECONDS`` of work (a power of two of epochs, so that few sizes compile), one until timed."""
        boundary = min((done // self.per_block + 1) * self.per_block, epochs)
        if self.epoch_seconds is None:
            return 1
        fits = max(1, int(self.BLOCK_SECONDS / max(self.epoch_seconds, 1e-9)))
        return min(1 << (fits.bit_length() - 1), boundary - done)

    def _capacity(self, epochs: int) -> int:
        """The most epochs a block can hold: every block of this call runs on one compilation of that size (the
        timing blocks of one epoch too: a block loops over its count of epochs).  A power of two, at most
        the epochs up to a report, and -- where each epoch takes a shuffled order -- at most 4 MiB of orders."""
        most = min(epochs, self.per_block)
        if self.shuffle:
            most = min(most, max(1, (1 << 20) // self.n))
        return 1 << (most - 1).bit_length()

    def _timed(self, k: int, seconds: float, traced: bool) -> None:
        if k == 1 and not traced:
            self.epoch_seconds = seconds

    def blocks(self, epochs: int, interrupts: StepBoundaryInterrupts) -> Iterator[Block]:
        plan, xp, X = self.plan, self.xp, self.X
        optimizer = plan.optimizer
        assert optimizer is not None
        kept = Kept(xp, plan.network, optimizer)
        rand = random_layers(plan)
        int_dtype = _xp.default_int(xp, _xp.array_device(X))
        done = 0  # epochs finished
        capacity = self._capacity(epochs)
        while done < epochs:
            k = min(self._next_block(done, epochs), capacity)
            traces, started = compiled.TRACES["jax:train"], time.perf_counter()
            fn = compiled.train_block(plan, xp, self.n, self.bs, capacity, self.shuffle, self.val_batches)
            orders = None
            if self.shuffle:  # k epochs' orders, then rows for the epochs the block skips
                drawn = [self.rng.permutation(self.n) for _ in range(k)]
                orders = xp.asarray(np.stack(drawn + [drawn[0]] * (capacity - k)), device=_xp.array_device(X))
            # read from the model at every block: what a callback changed (parameters, rates) takes effect
            params, state = compiled.model_arrays(plan, X)
            bufs = compiled.placed_buffers(plan, X, "train")
            keys = [layer.generator.jax_key() for layer in rand]
            start, start_lr = optimizer.iterations, optimizer.current_learning_rate
            rates = xp.asarray([optimizer.learning_rate, start_lr], dtype=params[0].dtype)
            new, outs, finite = fn(params, state, bufs, keys, xp.asarray(start, dtype=int_dtype), rates,
                                   xp.asarray(k, dtype=int_dtype), X, self.y_loss, self.y_acc, orders, self.val)
            losses, correct, compared, figures = (np.asarray(a)[:k] for a in outs)
            self._timed(k, time.perf_counter() - started, compiled.TRACES["jax:train"] != traces)
            snapshot = ([(p, v, dict(s)) for p, v, s in zip(plan.parameters, params, state, strict=True)],
                        (start, start_lr), bufs)
            compiled.check_block(kept, snapshot, losses, bool(finite), done, k, self.steps)
            compiled.adopt(plan, new[0], new[1], new[3], start + k * self.steps)
            plan.network.set_buffer_values(new[2])
            yield Block(done + 1, 1, start, host_steps(losses), host_steps(correct), host_steps(compared),
                        self.rows * k, {done + e + 1: self._ended(figures[e]) for e in range(k)})
            done += k

    def _ended(self, figures: Any) -> dict[str, float]:
        ended = {"regularization_loss": float(figures[0])}
        if self.val is not None:
            ended["val_loss"], ended["val_accuracy"] = float(figures[1]), float(figures[2])
        return ended

    def at_report(self, where: str) -> None:
        """Nothing to check: one process."""

    def finish(self) -> None:
        """The block checked every array it made."""
