"""Training on a Dask array (streamed windows of blocks) against the same training on an in-memory NumPy array.

    python -m benchmarks.streaming            # mnist workload: batch 128, 784-128-10, one MNIST-sized epoch

Samples/s of ``Model.train`` over the same rows and batches (no shuffle), interleaved rounds, medians;
two Dask arrays: one wrapping the in-memory data (``da.from_array``: what streaming itself costs) and
one generated block by block (each block's data computed anew each epoch, never whole in memory).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from portable_nn.training import stream

from .__main__ import WORKLOADS, make_model


def main(argv: list[str] | None = None) -> int:
    import dask.array as da

    p = argparse.ArgumentParser(prog="python -m benchmarks.streaming", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--chunk", type=int, default=6000, help="rows per Dask block")
    args = p.parse_args(argv)
    batch, sizes, steps = WORKLOADS["mnist"]
    n = batch * steps
    blocks = -(-n // args.chunk)
    chunks = tuple(min(args.chunk, n - i * args.chunk) for i in range(blocks))

    def make_block(block_id: tuple[int, ...]) -> np.ndarray:
        rows = chunks[block_id[0]]
        return np.random.default_rng(block_id[0]).standard_normal((rows, sizes[0])).astype(np.float32)

    def make_labels(block_id: tuple[int, ...]) -> np.ndarray:
        rows = chunks[block_id[0]]
        return np.random.default_rng(1000 + block_id[0]).integers(0, sizes[-1], size=rows)

    Xd = da.map_blocks(make_block, dtype=np.float32, chunks=(chunks, (sizes[0],)))
    yd = da.map_blocks(make_labels, dtype=np.int64, chunks=(chunks,))
    X, y = Xd.compute(), yd.compute()
    runs = {"in-memory numpy": (make_model(sizes), X, y),
            "dask from_array": (make_model(sizes), da.from_array(X, chunks=(args.chunk, sizes[0])),
                                da.from_array(y, chunks=args.chunk)),
            "dask generated": (make_model(sizes), Xd, yd)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds + 1):
        for key, (model, A, b) in runs.items():
            stream.PEAK["rows"] = 0
            t0 = time.perf_counter()
            model.train(A, b, epochs=1, batch_size=batch, shuffle=False, print_every=10**9, verbose=False)
            if r:
                times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"mnist workload: {n} rows, batch {batch}, {'-'.join(map(str, sizes))}; Dask blocks of {args.chunk} rows, "
          f"at most {stream.PEAK['rows']} rows held ({100 * stream.PEAK['rows'] / n:.0f}% of the array)")
    for key, t in med.items():
        print(f"  {key:<18} {n / t:>10,.0f} samples/s  {med['in-memory numpy'] / t:.2f}x of in-memory")
    print("  target: >= 0.5x; 'from_array' streams blocks of data already in memory (the streaming overhead),")
    print("  'generated' also computes every block's data (a standard normal draw) each epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
