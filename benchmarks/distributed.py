"""Data-parallel throughput over MPI: samples/s with 1 and 2 ranks, and the all-reduce's share of the step.

    mpiexec -n 1 python -m benchmarks.distributed
    mpiexec -n 2 python -m benchmarks.distributed      # the same global batches, split over two ranks

float32, softmax + CE, Adam, NumPy; every rank holds the data; the global
batch is the workload's (mnist 128, wide 1024).  Rank 0 prints.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

import numpy as np

from portable_nn.distributed import DataParallel

from .__main__ import WORKLOADS, make_model


def main(argv: list[str] | None = None) -> int:
    from mpi4py import MPI

    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workloads", nargs="*", default=["mnist", "wide"])
    args = p.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    # one BLAS pool per rank, sized to the rank's share of the cores: N ranks x all cores oversubscribe
    threads = max(1, (os.cpu_count() or 1) // size)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        if rank == 0:
            print("threadpoolctl is not installed: BLAS threads are not limited per rank")
    for name in args.workloads:
        batch, sizes, steps = WORKLOADS[name]
        rng = np.random.default_rng(0)
        X = rng.standard_normal((batch * steps, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], size=batch * steps).astype(np.int64)
        model = make_model(sizes)
        parallel = DataParallel(comm)
        times, shares = [], []
        for r in range(args.rounds + 1):  # round 0 warms up
            comm.Barrier()
            before, t0 = parallel.allreduce_seconds, time.perf_counter()
            model.train(X, y, epochs=1, batch_size=batch, shuffle=False, print_every=10**9, verbose=False,
                        distributed=parallel)
            seconds = time.perf_counter() - t0
            if r:
                times.append(seconds)
                shares.append((parallel.allreduce_seconds - before) / seconds)
        if rank == 0:
            t = statistics.median(times)
            shape = "-".join(map(str, sizes))
            print(f"{name}: {size} rank(s) x {threads} BLAS thread(s), global batch {batch}, {shape}: "
                  f"{batch * steps / t:,.0f} samples/s, {1e3 * t / steps:.3f} ms/step, "
                  f"all-reduce {100 * statistics.median(shares):.0f}% of the step "
                  f"({4 * sum(a * b + b for a, b in itertools.pairwise(sizes)) / 2**20:.2f} MiB a step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
