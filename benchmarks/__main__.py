"""Time a full portable_nn training step against baselines in the same process.

    python -m benchmarks                       # CPU, NumPy backend: spiral, mnist, wide
    python -m benchmarks --backend cupy        # GPU: adds 'large', compares with PyTorch CUDA
    python -m benchmarks --json out.json --rounds 7
    python -m benchmarks --workloads spiral spiral/full mnist/full   # /full: full-batch (one step an epoch)

A step is forward, backward and an Adam update (float32, softmax + CE);
portable_nn runs through ``Model.train`` (one epoch of K batches, one report
at the end).  Implementations run interleaved, round after round; the table
shows the median ms/step and ratios to the baselines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

import portable_nn as pnn
from portable_nn.backends import get_backend

from .baselines import GemmOnly, NaiveNumpy, TorchEager, TunedNumpy, init_weights

WORKLOADS = {
    # name: (batch, layer sizes, steps per round on CPU)
    "spiral": (300, [2, 64, 3], 1000),
    "mnist": (128, [784, 128, 10], 469),  # one MNIST-sized epoch (60000 / 128)
    "wide": (1024, [784, 1024, 1024, 10], 10),
    "large": (8192, [1024, 4096, 4096, 10], 10),  # GPU only
}


def make_model(sizes: list[int], seed: int = 0) -> pnn.Model:
    m = pnn.Model()
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        m.add(pnn.Dense(n_in, n_out, seed=seed + i))
        m.add(pnn.ReLU() if i < len(sizes) - 2 else pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(learning_rate=0.001),
          accuracy=pnn.CategoricalAccuracy())
    return m.finalize()


class Portable:
    name = "portable_nn"

    def __init__(self, sizes: list[int], batch: int, full: bool = False, steps: int = 1) -> None:
        self.model = make_model(sizes)
        self.batch, self.full, self.steps = batch, full, steps

    def run(self, X: Any, y: Any) -> None:
        if self.full:  # full batch: every step is an epoch's first (and last) step
            self.model.train(X, y, epochs=self.steps, print_every=10**9, verbose=False)
        else:
            self.model.train(X, y, epochs=1, batch_size=self.batch, shuffle=False, print_every=10**9, verbose=False)


def synchronize(backend: str) -> None:
    if backend == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def machine_info(backend: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "portable_nn": pnn.__version__,
        "backend": backend.name,
        "device": str(backend.device),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
                        for p in threadpool_info()]
    except ImportError:
        pass
    if backend.name == "cupy":
        import cupy

        info["cupy"] = cupy.__version__
    return info


def bench_workload(name: str, backend: Any, rounds: int, gpu: bool) -> dict[str, Any]:
    base, _, mode = name.partition("/")
    full = mode == "full"
    batch, sizes, steps = WORKLOADS[base]
    if gpu:
        steps = max(steps, 50)
    rng = np.random.default_rng(0)
    rows = batch if full else batch * steps  # full batch: the same batch every step
    X_host = rng.standard_normal((rows, sizes[0])).astype(np.float32)
    y_host = rng.integers(0, sizes[-1], size=rows).astype(np.int64)
    X, y = backend.asarray(X_host), backend.asarray(y_host)
    batches_host = [(X_host[(i * batch) % rows:(i * batch) % rows + batch],
                     y_host[(i * batch) % rows:(i * batch) % rows + batch]) for i in range(steps)]
    impls: dict[str, Any] = {}
    portable = Portable(sizes, batch, full, steps)
    impls["portable_nn"] = lambda: portable.run(X, y)
    if backend.name == "numpy":
        tuned, naive = TunedNumpy(sizes), NaiveNumpy(sizes)
        impls["hand-tuned numpy"] = lambda: [tuned.step(a, b) for a, b in batches_host]
        if name != "wide" or rounds <= 3:
            impls["naive numpy (seed style)"] = lambda: [naive.step(a, b) for a, b in batches_host]
        gemm = GemmOnly(sizes)
        impls["GEMM only"] = lambda: [gemm.step(a, b) for a, b in batches_host]
    try:
        import torch

        dev = "cuda" if gpu else "cpu"
        tx, ty = torch.asarray(X_host, device=dev), torch.asarray(y_host, device=dev)
        tb = [(tx[(i * batch) % rows:(i * batch) % rows + batch], ty[(i * batch) % rows:(i * batch) % rows + batch])
              for i in range(steps)]
        teager = TorchEager(sizes, device=dev)
        impls["pytorch eager"] = lambda: [teager.step(a, b) for a, b in tb]
        if gpu and backend.name != "numpy":
            import array_api_compat

            xp = array_api_compat.array_namespace(X)
            gb = [(X[(i * batch) % rows:(i * batch) % rows + batch, ...], None) for i in range(steps)]
            ggemm = GemmOnly(sizes, xp=xp)
            ggemm.w = [backend.asarray(w) for w, _ in init_weights(sizes)]
            impls["GEMM only"] = lambda: [ggemm.step(a, b) for a, b in gb]
    except ImportError:
        pass
    times: dict[str, list[float]] = {k: [] for k in impls}
    keys = list(impls)
    for r in range(rounds + 1):  # round 0 warms up (placement, caches, kernels)
        # Rotate the order every round and pause between runs: PyTorch's OpenMP
        # threads spin for a while after a parallel region and would otherwise
        # slow down whichever implementation always runs right after it.
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn = impls[key]
            time.sleep(0.3)
            synchronize(backend.name)
            t0 = time.perf_counter()
            fn()
            synchronize(backend.name)
            if r:
                times[key].append((time.perf_counter() - t0) / steps * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    ours = med["portable_nn"]
    ratios = {f"vs {k}": ours / v for k, v in med.items() if k != "portable_nn"}
    return {"workload": name, "batch": batch, "sizes": sizes, "steps_per_round": steps, "rounds": rounds,
            "ms_per_step": med, "ratios": ratios, "all_ms": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="numpy")
    p.add_argument("--device", default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workloads", nargs="*", default=None)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    backend = get_backend(args.backend, args.device)
    gpu = args.backend == "cupy" or (args.device or "").startswith("cuda")
    names = args.workloads or [w for w in WORKLOADS if gpu or w != "large"] + ["spiral/full", "mnist/full"]
    info = machine_info(backend)
    print(" ".join(f"{k}={v}" for k, v in info.items() if k != "blas"))
    results = []
    for name in names:
        res = bench_workload(name, backend, args.rounds, gpu)
        results.append(res)
        print(f"\n{name}: batch {res['batch']}, {'-'.join(map(str, res['sizes']))}, "
              f"median of {args.rounds} rounds x {res['steps_per_round']} steps")
        print(f"  {'implementation':<26} {'ms/step':>9}  {'portable_nn / it':>16}")
        for key, ms in res["ms_per_step"].items():
            ratio = "" if key == "portable_nn" else f"{res['ms_per_step']['portable_nn'] / ms:.2f}x"
            print(f"  {key:<26} {ms:>9.3f}  {ratio:>16}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "results": results}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
