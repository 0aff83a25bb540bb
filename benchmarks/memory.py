"""Peak memory of a training step: portable_nn against PyTorch eager (and hand-tuned NumPy).

    python -m benchmarks.memory                 # CPU: peak RSS growth per implementation
    python -m benchmarks.memory --backend cupy  # GPU: CuPy pool vs torch.cuda.max_memory_allocated

Each implementation runs in its own fresh process: the figure is the peak
memory above what the process held once its libraries were imported and one
batch of data was made -- i.e. parameters, optimizer state, gradients and
the step's temporaries.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from typing import Any

import numpy as np

from .__main__ import WORKLOADS, make_model
from .baselines import TorchEager, TunedNumpy

STEPS = 5


def child(impl: str, workload: str, backend_name: str) -> dict[str, Any]:
    batch, sizes, _ = WORKLOADS[workload]
    gpu = backend_name == "cupy"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch).astype(np.int64)
    if impl == "pytorch eager":
        import torch

        dev = "cuda" if gpu else "cpu"
        Xd, yd = torch.asarray(X, device=dev), torch.asarray(y, device=dev)
        # warm the runtime (thread pools, kernels) on a tiny net first: not the step's memory
        TorchEager([2, 2, 2], device=dev).step(torch.zeros((2, 2), device=dev),
                                               torch.zeros(2, dtype=torch.long, device=dev))
        if gpu:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        net = TorchEager(sizes, device=dev)
        for _ in range(STEPS):
            net.step(Xd, yd)
        if gpu:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        return {"peak_bytes": peak}
    if impl == "hand-tuned numpy":
        import torch

        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        tuned = TunedNumpy(sizes)
        for _ in range(STEPS):
            tuned.step(X, y)
        return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base}
    import torch

    from portable_nn.backends import get_backend

    backend = get_backend(backend_name)
    Xd, yd = backend.asarray(X), backend.asarray(y)
    make_model([2, 2, 2]).train(backend.asarray(np.zeros((2, 2), np.float32)), backend.asarray(np.zeros(2, np.int64)),
                                verbose=False)  # warm up, as for PyTorch
    if gpu:
        import cupy

        cupy.cuda.Device().synchronize()
        pool = cupy.get_default_memory_pool()
        base = pool.used_bytes()
        peak = base
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = make_model(sizes)
    for _ in range(STEPS):
        model.train(Xd, yd, epochs=1, print_every=10**9, verbose=False)
        if gpu:
            cupy.cuda.Device().synchronize()
            # the pool keeps what it once allocated: its size is the high-water mark
            peak = max(peak, pool.total_bytes())
    if gpu:
        return {"peak_bytes": peak - base}
    return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--child", nargs=2, metavar=("IMPL", "WORKLOAD"), help=argparse.SUPPRESS)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.backend)))
        return 0
    gpu = args.backend == "cupy"
    impls = ["portable_nn", "pytorch eager"] + ([] if gpu else ["hand-tuned numpy"])
    names = [w for w in WORKLOADS if gpu or w != "large"]
    results: dict[str, dict[str, float]] = {}
    print(f"peak memory of {STEPS} training steps above the process's baseline, MiB "
          f"({'GPU memory' if gpu else 'RSS'}; each run in a fresh process)")
    print(f"  {'workload':<8} " + " ".join(f"{i:>18}" for i in impls) + f" {'ours / pytorch':>15}")
    for w in names:
        row = {}
        for impl in impls:
            out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--backend", args.backend,
                                  "--child", impl, w], capture_output=True, text=True, check=True)
            row[impl] = json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20
        results[w] = row
        ratio = row["portable_nn"] / row["pytorch eager"] if row["pytorch eager"] > 0 else float("nan")
        print(f"  {w:<8} " + " ".join(f"{row[i]:>18.1f}" for i in impls) + f" {ratio:>14.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
