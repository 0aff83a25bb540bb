"""Soak: a million training steps without memory growth (slow: pytest --run-slow)."""

import numpy as np
import pytest

import portable_nn as pnn


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_a_million_steps_without_memory_growth(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.uint8)
    m = pnn.Model()
    m.add(pnn.Dense(2, 8, seed=0)).add(pnn.ReLU()).add(pnn.Dense(8, 2, seed=1)).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(learning_rate=1e-3)).finalize()
    Xb, yb = backend.asarray(X), backend.asarray(y)
    m.train(Xb, yb, epochs=10_000, print_every=10_000, verbose=False)  # warm up caches and pools
    start = rss_bytes()
    for _ in range(99):
        m.train(Xb, yb, epochs=10_000, print_every=10_000, verbose=False)
    growth = rss_bytes() - start
    assert m.optimizer.iterations == 1_000_000
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 990,000 steps"
