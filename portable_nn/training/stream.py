"""Training on a Dask array by streaming blocks, not by tracing a graph per operation.

``Model.train`` on a Dask array computes a *window* of row blocks at a time
into the blocks' own library (NumPy, or CuPy when the blocks are CuPy) and
trains on it with the ordinary step -- fast kernels included -- so memory
holds two windows of blocks (the one training, and the next one, computed in
a background thread meanwhile) plus less than one batch carried over, never
the whole array -- unless the whole array fits in one window: it is then
computed once per call and kept.  The parameters and optimizer state move to the blocks' library
for the call and back to Dask arrays at its end, so the model looks as it
did: Dask parameters, lazy ``predict``.

Order: without ``shuffle`` the batches are exactly those of in-memory
training on the same rows (a partial batch at a window's end is completed
from the next window), so the result equals it.  With ``shuffle`` the block
order is drawn anew each epoch and the rows are shuffled within each window
(a window of blocks, not the whole array: shuffle the array once beforehand
if its blocks are sorted).
"""

from __future__ import annotations

import concurrent.futures
import importlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _xp
from .._typing import Array
from .step import Plan

__all__ = ["Streamed", "window_blocks"]

#: The most rows held at once by streamed ``train`` calls since the last reset (a window plus a carried
#: partial batch): ``PEAK["rows"] = 0`` to reset.
PEAK = {"rows": 0}


def window_blocks(block_rows: tuple[int, ...], batch_size: int) -> int:
    """How many row blocks a window holds: enough for about four batches, at least one block."""
    typical = max(1, int(np.median(block_rows)))
    return max(1, math.ceil(4 * batch_size / typical))


class Streamed:
    """The batches of one epoch over a Dask ``X``/``y``, computed a window of blocks at a time."""

    def __init__(self, plan: Plan, X: Any, y: Any, batch_size: int | None, shuffle: bool, rng: Any,
                 window: int | None = None, check: Any = None) -> None:
        if len(X.chunks) > 1 and len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})  # whole rows in a block
        if y.ndim > 1 and len(y.chunks[1]) > 1:
            y = y.rechunk({1: -1})
        self.y = y.rechunk({0: X.chunks[0]}) if y.chunks[0] != X.chunks[0] else y
        self.X = X
        self.plan, self.shuffle, self.rng = plan, shuffle, rng
        self.n = int(X.shape[0])
        self.batch_size = self.n if not batch_size else min(batch_size, self.n)
        self.blocks = len(X.chunks[0])
        self.window = window or window_blocks(X.chunks[0], self.batch_size)
        self.steps = math.ceil(self.n / self.batch_size)
        self.peak_rows = 0
        self.whole: tuple[Array, Array] | None = None
        self.check = check  # the data's value checks, on each window of the first epoch (read once a pass)

    def first_block(self) -> Array:
        """An array of the blocks' library and device (Dask's zero-size ``_meta``): where training runs."""
        meta = getattr(self.X, "_meta", None)
        return meta if meta is not None else self.X.blocks[0].compute()

    def _compute(self, chosen: list[int]) -> tuple[Array, Array]:
        if self.whole is not None:  # the array fits in one window: computed once per call, kept
            x, y = self.whole
        else:
            dask: Any = importlib.import_module("dask")
            parts = dask.compute(*[self.X.blocks[b] for b in chosen], *[self.y.blocks[b] for b in chosen])
            xs, ys = parts[:len(chosen)], parts[len(chosen):]
            xp = _xp.namespace(xs[0])
            x, y = (xs[0], ys[0]) if len(chosen) == 1 else (xp.concat(xs, axis=0), xp.concat(ys, axis=0))
            if len(chosen) == self.blocks:
                self.whole = (x, y)
            if self.check is not None:
                self.check(x, y)
        xp = _xp.namespace(x)
        if self.shuffle:
            rows = xp.asarray(self.rng.permutation(int(x.shape[0])), device=_xp.array_device(x))
            x, y = xp.take(x, rows, axis=0), xp.take(y, rows, axis=0)
        return x, y

    def _windows(self) -> Iterator[tuple[Array, Array]]:
        """The epoch's windows; the next one is computed in a background thread while this one trains."""
        order = self.rng.permutation(self.blocks) if self.shuffle else np.arange(self.blocks)
        groups = [[int(b) for b in order[i:i + self.window]] for i in range(0, self.blocks, self.window)]
        if len(groups) == 1:  # one window (kept after the first epoch): no thread to start
            yield self._compute(groups[0])
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="portable_nn-stream") as pool:
            upcoming = pool.submit(self._compute, groups[0])
            for i in range(len(groups)):
                current = upcoming.result()
                if i + 1 < len(groups):
                    upcoming = pool.submit(self._compute, groups[i + 1])
                yield current

    def epoch(self, prepare: Any) -> Iterator[tuple[Array, Array, Array]]:
        """``(x, y_loss, y_acc)`` batches of one epoch; ``prepare(y)`` gives the loss's and accuracy's targets.

        A partial batch at a window's end is completed with the next window's first rows (only those rows are
        copied, never the window).
        """
        bs = self.batch_size
        carry_x = carry_y = None
        for x, y in self._windows():
            xp = _xp.namespace(x)
            held = int(x.shape[0]) + (0 if carry_x is None else int(carry_x.shape[0]))
            self.peak_rows = max(self.peak_rows, held)
            PEAK["rows"] = max(PEAK["rows"], held)
            y_loss, y_acc = prepare(y)
            start = 0
            if carry_x is not None:
                start = min(bs - int(carry_x.shape[0]), int(x.shape[0]))
                carry_x = xp.concat([carry_x, x[:start, ...]], axis=0)
                carry_y = xp.concat([carry_y, y[:start, ...]], axis=0)
                if int(carry_x.shape[0]) < bs:  # a window smaller than what the batch still lacks
                    continue
                yield (carry_x, *prepare(carry_y))
                carry_x = carry_y = None
            n = int(x.shape[0])
            full = start + (n - start) // bs * bs
            for first in range(start, full, bs):
                rows = slice(first, first + bs)
                yield x[rows, ...], y_loss[rows, ...], y_acc[rows, ...]
            if full < n:
                carry_x, carry_y = x[full:, ...], y[full:, ...]
        if carry_x is not None:  # the epoch's last, partial batch
            yield (carry_x, *prepare(carry_y))
        self.check = None  # every window was checked: later epochs read the same data
