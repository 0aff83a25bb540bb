"""The one training loop: epochs, steps, reports, callbacks, the guard's checks, Ctrl-C -> ``History``.

What varies plugs in (``training/runners.py``), and the loop sees none of it:

* a **runner** runs blocks of steps -- the eager step (one step a block), the
  same step under ``torch.compile``, or a ``jax.jit`` + ``lax.scan`` block of
  epochs -- and hands back each step's loss sum, correct count, compared
  count and rows (device arrays, or host numbers once a block was read back),
  plus what each epoch that ended in the block adds (regularization and
  validation figures);
* a **reducer** combines the gradients of several processes inside the eager
  runner's step (none, or one MPI all-reduce: ``distributed.DataParallel``);
* a **source** gives each epoch's batches (arrays in memory: ``loop.InMemory``;
  Dask windows: ``stream.Streamed``).

A step never waits for the device: the running sums stay on the device and are
read back only at report points (every ``print_every`` steps or each epoch's end, at epoch ends
when callbacks listen, at a stop, at the end), where the runner's guard looks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .. import _xp
from .._typing import Namespace
from .guard import Guard
from .loop import History, StepBoundaryInterrupts, emit
from .step import Plan

__all__ = ["Block", "Runner", "run"]


@dataclass
class Block:
    """Steps a runner ran, from step ``step`` of epoch ``epoch`` on (1-based), the optimizer's counter at
    ``iteration`` before the first; per step its loss sum, correct count, compared count and rows; for each
    epoch that ended in the block, what the runner adds to its figures (``regularization_loss``,
    ``val_loss``, ``val_accuracy``); ``stop``: a Ctrl-C on some rank (a reducer's all-reduce carries it)."""

    epoch: int
    step: int
    iteration: int
    losses: Sequence[Any]
    correct: Sequence[Any]
    compared: Sequence[Any]
    rows: Sequence[int]
    ended: dict[int, dict[str, Any]] = field(default_factory=dict)
    stop: bool | None = None  # None: no reducer, the local Ctrl-C decides


class Runner(Protocol):
    """What the engine needs from a runner."""

    steps: int  # per epoch
    guard: Guard

    def blocks(self, epochs: int, interrupts: StepBoundaryInterrupts) -> Iterator[Block]: ...

    def at_report(self, where: str) -> None: ...

    def finish(self) -> None: ...


@dataclass
class _Run:
    """The loop's position and the running sums since the start of the epoch (device arrays or numbers)."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    loss_sum: Any = 0.0
    correct_sum: Any = 0
    seen: int = 0
    compared: int = 0
    pending: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # epoch figures not read back yet


@dataclass
class _Settings:
    epochs: int
    print_every: int | None  # None: at each epoch's end
    verbose: bool
    callback: Callable[[dict[str, Any]], None] | None
    callbacks: Any
    scored: Any


def run(plan: Plan, runner: Runner, xp: Namespace, *, epochs: int, print_every: int | None, verbose: bool,
        callback: Callable[[dict[str, Any]], None] | None, callbacks: Any = None, scored: Any = None) -> History:
    """Train with ``runner`` for ``epochs`` epochs; see ``Model.train``."""
    settings = _Settings(epochs, print_every, verbose, callback, callbacks, scored)
    history, state = History(), _Run()
    with StepBoundaryInterrupts() as interrupts:
        for block in runner.blocks(epochs, interrupts):
            for k in range(len(block.losses)):
                if _after_step(plan, runner, xp, settings, history, state, block, k, interrupts):
                    runner.finish()
                    return history  # a callback stopped training, cleanly, at an epoch's end
    runner.finish()
    return history


def _after_step(plan: Plan, runner: Runner, xp: Namespace, settings: _Settings, history: History, state: _Run,
                block: Block, k: int, interrupts: StepBoundaryInterrupts) -> bool:
    """Account step ``k`` of ``block``: sums, epoch figures, a report, callbacks, a stop.  True: a callback
    stopped training."""
    steps, total = runner.steps, settings.epochs * runner.steps
    state.global_step += 1
    state.epoch, state.step = divmod(state.global_step - 1, steps)
    state.epoch, state.step = state.epoch + 1, state.step + 1
    if state.step == 1:
        state.loss_sum, state.correct_sum, state.seen, state.compared = 0.0, 0, 0, 0
    state.loss_sum = state.loss_sum + block.losses[k]
    state.correct_sum = state.correct_sum + block.correct[k]
    state.seen, state.compared = state.seen + int(block.rows[k]), state.compared + int(block.compared[k])
    if state.step == steps:
        state.pending.append((state.epoch, _epoch_figures(plan, state, block, k, settings.scored)))
    last = k == len(block.losses) - 1
    stop = last and (block.stop if block.stop is not None else interrupts.pending)
    at_report = state.global_step % (settings.print_every or steps) == 0 or state.global_step == total
    epoch_end = bool(settings.callbacks) and state.step == steps  # callbacks see every epoch's figures
    finished: list[tuple[int, dict[str, Any]]] = []
    if at_report or stop or epoch_end:
        finished = _report(plan, xp, history, state, runner.guard, block.iteration + k, total,
                           settings.verbose and at_report, settings.callback)
        runner.at_report(f"epoch {state.epoch}, step {state.step}")
    if settings.callbacks and True in [settings.callbacks.epoch_end(e, logs) for e, logs in finished]:
        return True
    if last and block.stop is None:
        stop = interrupts.pending  # a Ctrl-C during the report counts at this step too
    if stop:
        interrupted = KeyboardInterrupt(
            f"Model.train: interrupted; the model is at the end of epoch {state.epoch}, step {state.step} "
            f"({state.global_step} of {total} steps); the exception's .history holds the figures")
        interrupted.history = history  # type: ignore[attr-defined]
        # a stop that came through a reducer's all-reduce: every rank raises it after this step
        interrupted.collective = block.stop is not None  # type: ignore[attr-defined]
        raise interrupted
    return False


def _epoch_figures(plan: Plan, state: _Run, block: Block, k: int, scored: Any) -> dict[str, Any]:
    """The figures of the epoch that ended at step ``k`` of ``block`` (device values: read at a report)."""
    optimizer = plan.optimizer
    assert optimizer is not None
    extra = dict(block.ended.get(state.epoch, {}))
    data_loss = state.loss_sum / state.seen
    reg = extra.pop("regularization_loss", 0.0)
    figures = {"data_loss": data_loss, "regularization_loss": reg, "loss": data_loss + reg,
               "accuracy": _accuracy(state, data_loss), "learning_rate": float(optimizer.rate_at(block.iteration + k)),
               **extra}
    if scored is not None:
        figures["metrics"] = (scored, scored.counts(plan))  # device arrays: read back at the next report point
    return figures


def _accuracy(state: _Run, like: Any) -> Any:
    """The running accuracy, in ``like``'s floating dtype where it is an array."""
    if _xp.is_array(state.correct_sum) and _xp.is_array(like):
        xp = _xp.namespace(like)
        return xp.astype(state.correct_sum, like.dtype) / state.compared
    return state.correct_sum / state.compared


def _report(plan: Plan, xp: Namespace, history: History, state: _Run, guard: Guard, iteration: int,
            total_steps: int, verbose: bool, callback: Any) -> list[tuple[int, dict[str, Any]]]:
    """The one host sync: read figures back, check for divergence, record, print, call back."""
    optimizer = plan.optimizer
    assert optimizer is not None
    names = [[k for k in figs if k != "metrics"] for _, figs in state.pending]
    values = [figs[k] for (_, figs), keys in zip(state.pending, names, strict=True) for k in keys]
    guarded = guard.pending()
    host = _xp.to_host(xp, [*values, *guarded, state.loss_sum, state.correct_sum])
    guard.check(host[len(values):len(values) + len(guarded)])
    read = iter(host)
    by_epoch: dict[int, dict[str, Any]] = {}
    for (epoch, _), keys in zip(state.pending, names, strict=True):
        by_epoch.setdefault(epoch, {}).update(zip(keys, read, strict=False))  # stops at the keys: read is not overrun
    for epoch, figs in state.pending:
        if "metrics" in figs:
            scored, counts = figs["metrics"]
            by_epoch[epoch].update(scored.values(counts))
    for epoch, figs in by_epoch.items():
        history.epoch.append(epoch)
        history.record(figs)
    state.pending.clear()
    info = {"epoch": state.epoch, "step": state.step, "global_step": state.global_step,
            "total_steps": total_steps, "loss": host[-2] / state.seen, "accuracy": host[-1] / state.compared,
            "learning_rate": float(optimizer.rate_at(iteration))}
    if history.regularization_loss:
        info["regularization_loss"] = history.regularization_loss[-1]
    if history.val_loss:
        info["val_loss"], info["val_accuracy"] = history.val_loss[-1], history.val_accuracy[-1]
    emit(info, verbose, callback)
    return list(by_epoch.items())


def host_steps(values: Any) -> list[float]:
    """A block's read-back per-step values as Python numbers, in step order."""
    return np.asarray(values, dtype=np.float64).reshape(-1).tolist()
