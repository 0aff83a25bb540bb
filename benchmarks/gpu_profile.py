"""Where a CuPy training step spends its time (the 'large' workload), op by op.

    python -m benchmarks.gpu_profile

Each figure is the median of several synchronized runs, in ms.  Used to
decide which fused kernels are worth having; not part of the test suite.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def timed(fn: Callable[[], Any], sync: Callable[[], None], repeat: int = 20) -> float:
    fn()
    sync()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def main() -> None:
    import cupy
    import torch

    import portable_nn as pnn
    from portable_nn.backends import get_backend
    from portable_nn.training.loop import prepared_targets

    from .__main__ import make_model

    sync = cupy.cuda.Device().synchronize
    b = get_backend("cupy")
    xp = b.xp
    n, sizes = 8192, [1024, 4096, 4096, 10]
    rng = np.random.default_rng(0)
    X = b.asarray(rng.standard_normal((n, sizes[0])).astype(np.float32))
    y = b.asarray(rng.integers(0, 10, n).astype(np.int64))
    m = make_model(sizes)
    m.train(X, y, epochs=1, verbose=False)
    plan = m.plan
    y_loss, _ = prepared_targets(plan, xp, y)
    rows: list[tuple[str, float]] = []

    def phase_forward() -> Any:
        x = X
        for layer in m.layers[:-1]:
            x = layer.forward(x)
        return x

    logits = phase_forward()
    rows.append(("forward (3 Dense + 2 ReLU)", timed(phase_forward, sync)))
    fused = plan.fused
    rows.append(("fused softmax-CE forward_backward", timed(lambda: fused.forward_backward(logits, y_loss), sync)))
    _, d = fused.forward_backward(logits, y_loss)
    rows.append(("backward (all layers)", timed(lambda: plan.network.backward(d, upto=plan.body), sync)))
    opt = m.optimizer

    def step_opt() -> None:
        opt.pre_update_params()
        opt.update_all(m.trainable_layers)
        opt.post_update_params()

    rows.append(("optimizer (flat Adam, fused kernel)", timed(step_opt, sync)))
    flat = opt._flat
    rows.append(("  of which: gather gradients", timed(flat.gather_grads, sync)))
    h = cupy.random.standard_normal((n, 4096), dtype=cupy.float32)
    dv = cupy.random.standard_normal((n, 4096), dtype=cupy.float32)
    w = cupy.random.standard_normal((4096, 4096), dtype=cupy.float32)
    ones = cupy.ones((1, n), dtype=cupy.float32)
    rows.append(("matmul h @ w (8192x4096x4096)", timed(lambda: h @ w, sync)))
    rows.append(("matmul h.T @ dv", timed(lambda: h.T @ dv, sync)))
    rows.append(("matmul dv @ w.T", timed(lambda: dv @ w.T, sync)))
    rows.append(("sum(dv, axis=0)", timed(lambda: xp.sum(dv, axis=0, keepdims=True), sync)))
    rows.append(("ones @ dv (dbias as GEMV)", timed(lambda: ones @ dv, sync)))
    rows.append(("relu bwd: dv * astype(h > 0)", timed(lambda: dv * xp.astype(h > 0, dv.dtype), sync)))
    rows.append(("relu bwd: where(h > 0, dv, 0)", timed(lambda: xp.where(h > 0, dv, 0.0), sync)))
    rows.append(("relu fwd: maximum(h, 0)", timed(lambda: xp.maximum(h, 0.0), sync)))
    rows.append(("bias add in place", timed(lambda: h.__iadd__(dv[:1]), sync)))
    th = torch.randn(n, 4096, device="cuda")
    tdv = torch.randn(n, 4096, device="cuda")
    tsync = torch.cuda.synchronize
    rows.append(("torch: sum(dv, 0)", timed(lambda: tdv.sum(0, keepdim=True), tsync)))
    rows.append(("torch: threshold_backward", timed(lambda: torch.ops.aten.threshold_backward(tdv, th, 0.0), tsync)))
    rows.append(("torch: matmul h.T @ dv", timed(lambda: th.T @ tdv, tsync)))
    print(f"CuPy {cupy.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name(0)}, pnn {pnn.__version__}")
    for name, ms in rows:
        print(f"  {name:<40} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
