"""A LeNet-5-style training step: portable_nn against PyTorch eager (and JAX) in the same process.

    python -m benchmarks.cnn                   # NumPy eager (fast paths on and off) and PyTorch eager
    python -m benchmarks.cnn --rounds 5 --jax  # also JAX: portable_nn compiled against a hand-written step

28x28x1 images, batch 64: Conv2D(1, 6, 5) -> ReLU -> MaxPool2D(2) -> Conv2D(6, 16, 5) -> ReLU -> MaxPool2D(2) ->
Flatten -> Dense(256, 120) -> ReLU -> Dense(120, 10) -> Softmax, cross-entropy, Adam; float32.  The table
shows the median ms/step over the rounds (each round one epoch of ``--steps`` batches) and ratios; PyTorch
runs with the same number of threads as NumPy's BLAS (``--threads``, default 2).  The peak memory of a step
(tracemalloc for NumPy, PyTorch's CPU allocator is not traced: its ``resource`` high-water mark instead) is
printed too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from typing import Any

import numpy as np

import portable_nn as pnn

BATCH, STEPS = 64, 40


def lenet(dtype: str = "float32") -> pnn.Model:
    m = pnn.Model()
    m.add(pnn.Conv2D(1, 6, 5, seed=0, dtype=dtype)).add(pnn.ReLU()).add(pnn.MaxPool2D(2))
    m.add(pnn.Conv2D(6, 16, 5, seed=1, dtype=dtype)).add(pnn.ReLU()).add(pnn.MaxPool2D(2)).add(pnn.Flatten())
    m.add(pnn.Dense(256, 120, seed=2, dtype=dtype, initializer="he_uniform")).add(pnn.ReLU())
    m.add(pnn.Dense(120, 10, seed=3, dtype=dtype, initializer="glorot_uniform")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(1e-3)).finalize()


def torch_lenet() -> tuple[Any, Any]:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(256, 120), torch.nn.ReLU(), torch.nn.Linear(120, 10))
    return net, torch.optim.Adam(net.parameters(), lr=1e-3)


def implementations(X: np.ndarray, y: np.ndarray, jax: bool) -> dict[str, Any]:
    import torch

    impls: dict[str, Any] = {}
    fast, portable = lenet(), lenet()

    def ours() -> None:
        fast.train(X, y, epochs=1, batch_size=BATCH, shuffle=False, print_every=10**9, verbose=False)

    def reference() -> None:
        with pnn.fast_paths(False):
            portable.train(X, y, epochs=1, batch_size=BATCH, shuffle=False, print_every=10**9, verbose=False)

    impls["portable_nn numpy"] = ours
    impls["portable_nn numpy, portable path"] = reference
    net, opt = torch_lenet()
    Xt, yt = torch.asarray(X.transpose(0, 3, 1, 2).copy()), torch.asarray(y)

    def torch_eager() -> None:
        for i in range(0, len(Xt), BATCH):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(Xt[i:i + BATCH]), yt[i:i + BATCH])
            loss.backward()
            opt.step()

    impls["pytorch eager"] = torch_eager
    on_torch = lenet()
    Xp, yp = torch.asarray(X), torch.asarray(y)

    def ours_on_torch() -> None:
        on_torch.train(Xp, yp, epochs=1, batch_size=BATCH, shuffle=False, print_every=10**9, verbose=False)

    impls["portable_nn on pytorch tensors"] = ours_on_torch
    if jax:
        impls.update(_jax(X, y))
    return impls


def _jax(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    Xj, yj = jnp.asarray(X), jnp.asarray(y, dtype=jnp.int32)
    model = lenet()

    def ours() -> None:
        model.train(Xj, yj, epochs=1, batch_size=BATCH, shuffle=False, print_every=10**9, verbose=False,
                    compile=True)

    params = [jnp.asarray(p.value) for p in lenet().network.parameters()]  # host draws, the same start
    dims = ("NHWC", "HWIO", "NHWC")

    def forward(ps: list[Any], x: Any) -> Any:
        w1, b1, w2, b2, w3, b3, w4, b4 = ps
        h = jax.nn.relu(lax.conv_general_dilated(x, w1, (1, 1), "VALID", dimension_numbers=dims) + b1[0])
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = jax.nn.relu(lax.conv_general_dilated(h, w2, (1, 1), "VALID", dimension_numbers=dims) + b2[0])
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID").reshape(x.shape[0], -1)
        return jax.nn.relu(h @ w3 + b3) @ w4 + b4

    def loss(ps: list[Any], x: Any, t: Any) -> Any:
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(forward(ps, x)), t[:, None], axis=1))

    def adam(carry: Any, batch: Any) -> Any:
        ps, m, v, k = carry
        g = jax.grad(loss)(ps, *batch)
        k = k + 1
        m = [0.9 * a + 0.1 * b for a, b in zip(m, g, strict=True)]
        v = [0.999 * a + 0.001 * b * b for a, b in zip(v, g, strict=True)]
        ps = [p - 1e-3 * (a / (1 - 0.9**k)) / (jnp.sqrt(c / (1 - 0.999**k)) + 1e-7)
              for p, a, c in zip(ps, m, v, strict=True)]
        return (ps, m, v, k), None

    @jax.jit
    def epoch(carry: Any, X: Any, y: Any) -> Any:
        n = X.shape[0] // BATCH
        batches = (X[:n * BATCH].reshape(n, BATCH, *X.shape[1:]), y[:n * BATCH].reshape(n, BATCH))
        return lax.scan(adam, carry, batches)[0]

    state = [params, [jnp.zeros_like(p) for p in params], [jnp.zeros_like(p) for p in params], 0.0]

    def hand() -> None:
        nonlocal state
        state = list(epoch(tuple(state), Xj, yj))
        jax.block_until_ready(state[0])

    return {"portable_nn jax compiled": ours, "hand-written jax lax.conv (scan)": hand}


def peak_step(kind: str) -> float:
    """How far the resident memory rises during a training step (batch 64, after a first one), in a fresh process,
    MiB: PyTorch's CPU allocator is not seen by tracemalloc, so both libraries are measured the same way (Linux:
    ``/proc/self/clear_refs`` resets the peak)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BATCH, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    if kind == "numpy":
        m = lenet()

        def step() -> None:
            m.train(X, y, epochs=1, batch_size=BATCH, verbose=False)
    else:
        import torch

        torch.set_num_threads(2)
        net, opt = torch_lenet()
        Xt, yt = torch.asarray(X.transpose(0, 3, 1, 2).copy()), torch.asarray(y)

        def step() -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(Xt), yt).backward()
            opt.step()
    step()  # the first step allocates once what every step reuses (buffers, PyTorch's gradients)

    def status(field: str) -> float:
        with open("/proc/self/status") as f:
            return next(float(line.split()[1]) for line in f if line.startswith(field)) / 2**10  # kB -> MiB

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: the peak resident size (VmHWM) starts again from the resident size now
    before = status("VmRSS:")
    step()
    return status("VmHWM:") - before


def peak_memory() -> dict[str, float]:
    """``peak_step`` of NumPy (ours) and PyTorch, each in its own process, glibc's malloc told to map every block
    and give it back when freed (``MALLOC_MMAP_THRESHOLD_=0``): the resident size then follows the live arrays,
    whichever library allocates them, instead of what the allocator keeps cached."""
    import os
    import subprocess

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "0", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_TOP_PAD_": "0"}
    out = {}
    for kind in ("numpy", "torch"):
        code = f"import benchmarks.cnn as b; print(b.peak_step({kind!r}))"
        out[kind] = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                         text=True, env=env).stdout)
    return out


def peak_numpy_step(X: np.ndarray, y: np.ndarray) -> float:
    m = lenet()
    m.train(X[:BATCH], y[:BATCH], epochs=1, verbose=False)
    tracemalloc.start()
    m.train(X[:BATCH], y[:BATCH], epochs=1, verbose=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jax", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BATCH * args.steps, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, BATCH * args.steps)
    impls = implementations(X, y, args.jax)
    times: dict[str, list[float]] = {k: [] for k in impls}
    for r in range(args.rounds + 1):  # round 0 warms up (and compiles)
        for key, run in impls.items():
            t0 = time.perf_counter()
            run()
            if r:
                times[key].append((time.perf_counter() - t0) / args.steps * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"LeNet-5-style step, batch {BATCH}, 28x28x1, float32, median of {args.rounds} rounds x {args.steps} "
          f"steps, {args.threads} threads")
    for key, ms in med.items():
        print(f"  {key:<36} {ms:8.2f} ms/step  {ms / med['pytorch eager']:5.2f}x pytorch eager")
    if args.jax:
        ratio = med["portable_nn jax compiled"] / med["hand-written jax lax.conv (scan)"]
        print(f"  portable_nn jax compiled / hand-written jax: {ratio:.2f}x")
    print(f"  peak memory of a NumPy step (tracemalloc, arrays only): {peak_numpy_step(X, y):.1f} MiB")
    rss = peak_memory()
    print(f"  resident memory a step adds at its peak, fresh process: NumPy {rss['numpy']:.1f} MiB, "
          f"PyTorch {rss['torch']:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
