"""Data-parallel training over MPI (``mpi4py``; ``pip install 'portable_nn[mpi]'``).

    mpiexec -n 2 python train.py          # train.py calls model.train(X, y, ..., distributed=True)
    mpiexec -n 2 portable-nn train --distributed --dataset digits

Every rank holds the whole data set and the same parameters (broadcast from
rank 0 when ``train`` starts).  Each global batch of ``batch_size`` rows --
in an order drawn from one seed shared by all ranks -- is split into
contiguous shards, one per rank (``np.array_split``: when the batch does not
divide, the first ``B % N`` ranks take one row more; a rank whose shard is
empty contributes nothing).  Each rank computes its local gradients, scales
them by ``n_rank / B`` and joins **one all-reduce per step** of a single
host buffer holding every gradient plus the step's loss sum, correct count,
compared count and an interrupt flag: the result is the global batch's mean
gradient, so every rank applies the same update and sees the same, global,
figures.  A non-finite *global* loss stops every rank at the same step;
Ctrl-C stops every rank at the same step boundary.  At each report point a
checksum of the parameters is compared across ranks (a diverged rank raises
on every rank).  An error that only one rank meets (out of memory, a bug) is
printed with its rank and ends the job with ``MPI.Abort``: never a hang.

BatchNorm keeps **per-rank statistics**, as PyTorch's DistributedDataParallel
does without ``SyncBatchNorm``: each rank normalizes its shard with the
shard's own mean and variance (so N ranks equal one process only for models
without BatchNorm), and its running statistics follow its shards.  At each
epoch's end (before the validation figures, so every rank's callbacks decide
alike) and at each report point, the running statistics are averaged over
the ranks: every rank, and the saved model, holds the same.

NumPy and PyTorch CPU arrays join the all-reduce without copies of the
gradients beyond packing them into the one buffer (a NumPy array, or a
PyTorch tensor sharing its memory); CuPy arrays are staged through host
memory (said once).  Only rank 0 prints; ``callback`` runs on every rank with
the same, global figures.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np

from . import _xp
from ._typing import Array
from .network import Network
from .optimizers import Optimizer
from .random import Generator

__all__ = ["DataParallel", "resolve"]


def resolve(distributed: Any) -> DataParallel | None:
    """``Model.train``'s ``distributed`` argument: None/False, True (``MPI.COMM_WORLD``), an MPI communicator,
    or a ``DataParallel`` (whose ``allreduce_seconds`` and ``steps`` then count across calls)."""
    if distributed is None or distributed is False:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("distributed training needs mpi4py and an MPI: pip install 'portable_nn[mpi]'") from None
    if isinstance(distributed, DataParallel):
        return distributed
    comm = MPI.COMM_WORLD if distributed is True else distributed
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"Model.train: distributed must be True, False or an MPI communicator, got "
                        f"{type(distributed).__name__}")
    return DataParallel(comm)


class DataParallel:
    """One MPI communicator's view of a data-parallel ``train`` call."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm
        self.rank, self.size = int(comm.Get_rank()), int(comm.Get_size())
        self.buffer: np.ndarray | None = None
        self.staged_said = False
        self.allreduce_seconds = 0.0  # time spent in the step's all-reduce (waiting for other ranks included)
        self.steps = 0

    # -- the start of a call ------------------------------------------------------
    def agree(self, settings: dict[str, Any], error: BaseException | None) -> None:
        """One allgather before anything else: every rank's settings of the call (row count, shapes, dtypes,
        epochs, batch size, ...) and whether its own checks failed.  A failure on any rank, or a setting the
        ranks disagree on, becomes the same ``ValueError`` on every rank -- never a rank waiting alone."""
        gathered = self.comm.allgather((settings, None if error is None else f"{type(error).__name__}: {error}"))
        failed = [(rank, message) for rank, (_, message) in enumerate(gathered) if message is not None]
        if failed:
            rank, message = failed[0]
            others = f" (and on rank(s) {[r for r, _ in failed[1:]]})" if len(failed) > 1 else ""
            raise _collective(ValueError(f"Model.train: rank {rank} of {self.size} refused its data{others}: "
                                         f"{message}"))
        for key in settings:
            values = [ranked[0].get(key) for ranked in gathered]
            if any(v != values[0] for v in values):
                raise _collective(ValueError(
                    f"Model.train: the ranks disagree on {key}: {dict(enumerate(values))}; every rank must call "
                    "train with the same data and arguments"))

    def seed(self, seed: int | None) -> int:
        """One shuffling seed for every rank (rank 0's, drawn there when None)."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        return int(self.comm.bcast(int(seed), root=0))

    def broadcast(self, network: Network, optimizer: Optimizer) -> None:
        """Rank 0's parameters, optimizer state and counters on every rank.

        New arrays are assigned: nothing a user holds is written.
        """
        optimizer.iterations = int(self.comm.bcast(optimizer.iterations, root=0))
        optimizer.current_learning_rate = float(self.comm.bcast(optimizer.current_learning_rate, root=0))
        for p in network.parameters():
            host = np.ascontiguousarray(_xp.to_numpy(p.value), dtype=np.dtype(_xp.dtype_name(p.value.dtype)))
            self.comm.Bcast(host, root=0)
            xp = _xp.namespace(p.value)
            p.value = xp.asarray(host, device=_xp.array_device(p.value))
            keys = self.comm.bcast(sorted(k for k, v in p.state.items() if v is not None), root=0)
            for key in keys:
                state = p.state.get(key)
                host = np.zeros(host.shape, host.dtype) if state is None else np.array(_xp.to_numpy(state), host.dtype)
                self.comm.Bcast(host, root=0)
                p.set_state(key, xp.asarray(host, device=_xp.array_device(p.value)))
        values = []
        for value in network.buffer_values():
            host = np.array(_xp.to_numpy(value), dtype=np.dtype(_xp.dtype_name(value.dtype)), order="C")
            self.comm.Bcast(host, root=0)
            values.append(_xp.namespace(value).asarray(host, device=_xp.array_device(value)))
        network.set_buffer_values(values)

    def reseed_dropout(self, network: Network) -> None:
        """Dropout draws a stream of its own on each rank: ``SeedSequence([seed, rank])``."""
        for layer in network.layers:
            generator = getattr(layer, "generator", None)
            if isinstance(generator, Generator) and not getattr(layer, "_rank_seeded", False):
                state = np.random.SeedSequence([generator.seed, self.rank]).generate_state(1)[0]
                layer.generator = Generator(int(state))
                layer._rank_seeded = True

    # -- each step ------------------------------------------------------------------
    def shard(self, rows: slice) -> tuple[slice, int]:
        """This rank's contiguous part of a global batch, and the global batch's size."""
        start, stop = rows.start, rows.stop
        n = stop - start
        base, extra = divmod(n, self.size)
        first = start + self.rank * base + min(self.rank, extra)
        return slice(first, first + base + (1 if self.rank < extra else 0)), n

    def all_reduce(self, params: list[Any], grads: list[Array] | None, figures: list[float], scale: float,
                   dtype: Any) -> list[float]:
        """Sum ``scale * grad`` over ranks into each parameter's ``grad``, and ``figures`` (host floats) over ranks.

        ``grads`` None: this rank's shard is empty; it contributes zeros.
        """
        sizes = [math.prod(p.value.shape) for p in params]
        total = sum(sizes) + len(figures)
        np_dtype = np.dtype(_xp.dtype_name(dtype))
        if self.buffer is None or self.buffer.size != total or self.buffer.dtype != np_dtype:
            self.buffer = np.empty(total, dtype=np_dtype)
        buf = self.buffer
        first = params[0].value
        xp = _xp.namespace(first)
        offsets = np.cumsum([0, *sizes])
        torch_view = None
        if grads is None:
            buf[:offsets[-1]] = 0
        elif _xp.is_numpy_array(first):
            for g, a, b in zip(grads, offsets[:-1], offsets[1:], strict=True):
                np.multiply(np.reshape(g, -1), scale, out=buf[a:b])
        elif _is_torch_cpu(first):
            import torch

            torch_view = torch.from_numpy(buf)  # the same memory: no copy of the result back
            torch.cat([torch.reshape(g, (-1,)) for g in grads], out=torch_view[:offsets[-1]])
            torch_view[:offsets[-1]] *= scale
        else:  # CuPy and other device arrays: staged through host memory
            if not self.staged_said and self.rank == 0:
                print("portable_nn.distributed: gradients are staged through host memory for the all-reduce",
                      file=sys.stderr)
            self.staged_said = True
            for g, a, b in zip(grads, offsets[:-1], offsets[1:], strict=True):
                buf[a:b] = np.reshape(_xp.to_numpy(g), -1) * scale
        buf[offsets[-1]:] = figures
        start = time.perf_counter()
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        self.allreduce_seconds += time.perf_counter() - start
        self.steps += 1
        for p, a, b in zip(params, offsets[:-1], offsets[1:], strict=True):
            shape = tuple(p.value.shape)
            if torch_view is not None:
                p.grad = torch_view[a:b].reshape(shape)
            elif _xp.is_numpy_array(first):
                p.grad = buf[a:b].reshape(shape)
            else:
                p.grad = xp.asarray(buf[a:b].reshape(shape), device=_xp.array_device(first))
        return [float(v) for v in buf[offsets[-1]:]]

    def step(self, plan: Any, x: Array, y_loss: Array, y_acc: Array, before_update: Any,
             interrupted: bool) -> tuple[Array, Array, int, bool]:
        """One data-parallel step on a global batch: ``(global loss sum, global correct, compared, stop)``.

        Forward and backward on this rank's shard, one all-reduce, then the
        guard (on the *global* loss: every rank stops at the same step) and
        the same update on every rank.
        """
        from .training.step import count_correct, forward_backward

        optimizer = plan.optimizer
        rows, n = self.shard(slice(0, int(x.shape[0])))
        params = plan.parameters
        first = params[0].value
        xp = _xp.namespace(first)
        grads = None
        figures = [0.0, 0.0, 0.0, float(interrupted)]
        if rows.stop > rows.start:
            xs, yls, yas = x[rows, ...], y_loss[rows, ...], y_acc[rows, ...]
            loss_sum, output, grads, buffers = forward_backward(plan, plan.network.arrays(), xs, yls)
            correct, compared = count_correct(plan, output, yas)
            if buffers:
                plan.network.set_buffer_values(buffers)
            figures[:3] = _xp.to_host(xp, [loss_sum, correct, compared])
        loss, correct_all, compared_all, stop = self.all_reduce(params, grads, figures,
                                                                (rows.stop - rows.start) / n, first.dtype)
        loss_sum = xp.asarray(loss, dtype=first.dtype, device=_xp.array_device(first))
        ok = before_update(loss_sum) if before_update is not None else None
        optimizer.pre_update_params()
        optimizer.update_parameters(params, ok)
        optimizer.post_update_params()
        correct_sum = xp.asarray(int(correct_all), dtype=_xp.default_int(xp, _xp.array_device(first)),
                                 device=_xp.array_device(first))
        return loss_sum, correct_sum, int(compared_all), bool(stop)

    # -- report points --------------------------------------------------------------------
    def average_buffers(self, network: Network) -> None:
        """The running statistics (BatchNorm), averaged over the ranks: one small all-reduce."""
        values = network.buffer_values()
        if not values:
            return
        host = np.concatenate([np.reshape(_xp.to_numpy(v), -1).astype(np.float64) for v in values])
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        host /= self.size
        out, offset = [], 0
        for v in values:
            size = math.prod(v.shape)
            xp = _xp.namespace(v)
            out.append(xp.asarray(host[offset:offset + size].reshape(tuple(v.shape)), dtype=v.dtype,
                                  device=_xp.array_device(v)))
            offset += size
        network.set_buffer_values(out)

    def check_in_step(self, network: Network, where: str) -> None:
        """Every rank holds rank 0's parameters (a checksum, compared at report points); the running
        statistics are averaged here."""
        self.average_buffers(network)
        checksum = math.fsum(float(np.sum(_xp.to_numpy(p.value), dtype=np.float64)) for p in network.parameters())
        sums = self.comm.allgather(checksum)
        differing = [r for r, s in enumerate(sums) if s != sums[0]]
        if differing:
            raise _collective(RuntimeError(
                f"Model.train: the parameters of rank(s) {differing} differ from rank 0's at {where} (checksums "
                f"{sums}); every rank must run the same model on the same data"))

    def abort(self, exc: BaseException) -> None:
        """An error on this rank only: say it, then end the whole job (the others would wait forever)."""
        print(f"portable_nn.distributed: rank {self.rank} of {self.size}: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
        # MPI_Abort has mpiexec kill every process at once; a moment first lets its proxy forward the message
        # (without it the line was sometimes lost: the job ended, unexplained)
        time.sleep(0.5)
        self.comm.Abort(1)


def _collective(exc: BaseException) -> BaseException:
    """``exc``, marked as raised by every rank alike (from figures all of them share): no abort needed."""
    exc.collective = True  # type: ignore[attr-defined]
    return exc


def is_collective(exc: BaseException) -> bool:
    """Whether every rank raises ``exc`` at the same point (else the job must abort: the others would wait)."""
    return bool(getattr(exc, "collective", False))


def _is_torch_cpu(x: Any) -> bool:
    import array_api_compat

    return bool(array_api_compat.is_torch_array(x) and x.device.type == "cpu")
