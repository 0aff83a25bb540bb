"""Compiled training steps on the CPU: portable_nn under jax.jit and torch.compile against hand-written ones.

    python -m benchmarks.compiled                      # spiral, mnist, wide; 5 rounds
    python -m benchmarks.compiled --workloads spiral --rounds 3 --json out.json

The same workloads as ``python -m benchmarks`` (float32, softmax + CE, Adam).
Implementations run interleaved, round after round; the table shows the
median ms/step of the timed rounds and, for compiled ones, the compile time:
the first (warm-up) round's excess over the steady rounds, in seconds.
portable_nn runs through ``Model.train`` (one epoch of K batches per call:
on JAX one dispatch per call, a ``lax.scan`` over the K batches).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from typing import Any

import numpy as np

from .__main__ import WORKLOADS, machine_info, make_model
from .baselines import JaxJit, JaxScan, TorchCompiled, TorchEager

THREADS = 2  # this machine's cores: PyTorch's OpenMP pool pinned, so its spinning does not distort the figures


def implementations(name: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The callables to time (each one round of ``steps`` steps) and the block to wait for a device."""
    import jax
    import jax.numpy as jnp
    import torch

    torch.set_num_threads(THREADS)
    batch, sizes, steps = WORKLOADS[name]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch * steps, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=batch * steps).astype(np.int64)
    Xj, yj = jnp.asarray(X), jnp.asarray(y, dtype=jnp.int32)
    Xt, yt = torch.asarray(X), torch.asarray(y)
    impls: dict[str, Any] = {}
    syncs: dict[str, Any] = {}

    def portable(X: Any, y: Any, compile: Any) -> Any:
        model = make_model(sizes)
        return lambda: model.train(X, y, epochs=1, batch_size=batch, shuffle=False, print_every=10**9,
                                   verbose=False, compile=compile)

    impls["portable_nn numpy (eager)"] = portable(X, y, False)
    impls["portable_nn jax compiled"] = portable(Xj, yj, True)
    syncs["portable_nn jax compiled"] = jax.effects_barrier  # train reads its losses back: already synced
    hand = JaxJit(sizes)
    jb = [(Xj[i * batch:(i + 1) * batch], yj[i * batch:(i + 1) * batch]) for i in range(steps)]
    impls[hand.name] = lambda: [hand.step(a, b) for a, b in jb]
    syncs[hand.name] = hand.block
    scan = JaxScan(sizes, batch)
    impls[scan.name] = lambda: scan.epoch(Xj, yj)
    tb = [(Xt[i * batch:(i + 1) * batch], yt[i * batch:(i + 1) * batch]) for i in range(steps)]
    teager, tcomp = TorchEager(sizes), TorchCompiled(sizes)
    impls[teager.name] = lambda: [teager.step(a, b) for a, b in tb]
    impls[tcomp.name] = lambda: [tcomp.step(a, b) for a, b in tb]
    impls["portable_nn torch eager"] = portable(Xt, yt, False)
    impls["portable_nn torch compiled"] = portable(Xt, yt, True)
    return impls, syncs, steps


def bench(name: str, rounds: int) -> dict[str, Any]:
    impls, syncs, steps = implementations(name)
    times: dict[str, list[float]] = {k: [] for k in impls}
    first: dict[str, float] = {}
    keys = list(impls)
    for r in range(rounds + 1):  # round 0 compiles and warms up
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            time.sleep(0.2)
            t0 = time.perf_counter()
            impls[key]()
            syncs.get(key, lambda: None)()
            seconds = time.perf_counter() - t0
            if r:
                times[key].append(seconds / steps * 1e3)
            else:
                first[key] = seconds
    med = {k: statistics.median(v) for k, v in times.items()}
    compile_s = {k: max(0.0, first[k] - med[k] * steps / 1e3) for k in impls
                 if any(word in k for word in ("compil", "jit", "scan"))}
    return {"workload": name, "batch": WORKLOADS[name][0], "sizes": WORKLOADS[name][1], "steps_per_round": steps,
            "rounds": rounds, "ms_per_step": med, "compile_s": compile_s, "all_ms": times}


def print_table(res: dict[str, Any]) -> None:
    med = res["ms_per_step"]
    print(f"\n{res['workload']}: batch {res['batch']}, {'-'.join(map(str, res['sizes']))}, "
          f"median of {res['rounds']} rounds x {res['steps_per_round']} steps")
    print(f"  {'implementation':<28} {'ms/step':>9} {'compile s':>10}")
    for key, ms in med.items():
        c = res["compile_s"].get(key)
        print(f"  {key:<28} {ms:>9.3f} {'' if c is None else f'{c:.2f}':>10}")
    ours, hand = med["portable_nn jax compiled"], med["hand-written jax jit"]
    print(f"  portable_nn jax compiled / hand-written jax jit:        {ours / hand:.2f}x  (target <= 1.2x)")
    ceiling = med["hand-written jax lax.scan"]
    print(f"  portable_nn jax compiled / hand-written jax lax.scan:   {ours / ceiling:.2f}x  (target <= 1.15x)")
    c_ours, c_scan = res["compile_s"]["portable_nn jax compiled"], res["compile_s"]["hand-written jax lax.scan"]
    print(f"  compile time, portable_nn jax / hand-written lax.scan:  {c_ours / max(c_scan, 1e-9):.2f}x"
          f"  (target <= 2x)")
    print(f"  portable_nn jax compiled / portable_nn numpy eager:     {ours / med['portable_nn numpy (eager)']:.2f}x"
          f"  (target on spiral <= 0.6x)")
    print(f"  pytorch torch.compile / pytorch eager:                  "
          f"{med['pytorch torch.compile'] / med['pytorch eager']:.2f}x")
    print(f"  portable_nn torch compiled / pytorch torch.compile:     "
          f"{med['portable_nn torch compiled'] / med['pytorch torch.compile']:.2f}x")
    print(f"  portable_nn torch compiled / portable_nn torch eager:   "
          f"{med['portable_nn torch compiled'] / med['portable_nn torch eager']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compiled", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workloads", nargs="*", default=["spiral", "mnist", "wide"])
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")  # torch.compile's notes about array-api-compat's lru_cache helpers
    from portable_nn.backends import get_backend

    info = machine_info(get_backend("jax"))
    info["threads"] = THREADS
    print(" ".join(f"{k}={v}" for k, v in info.items() if k != "blas"))
    results = []
    for name in args.workloads:
        res = bench(name, args.rounds)
        results.append(res)
        print_table(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "results": results}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
