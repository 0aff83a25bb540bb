"""A small convolutional network on scikit-learn's 8x8 digits, on any backend.

    python examples/cnn_digits.py                          # NumPy, 30 epochs
    python examples/cnn_digits.py --backend torch --dtype float64
    python examples/cnn_digits.py --backend jax            # compiled (jax.jit) by default

Conv2D(1, 16, 3, "same") -> ReLU -> MaxPool2D(2) -> Flatten -> Dropout(0.4) -> Dense(4*4*16, 10, L2 3e-4) ->
Softmax, Adam(0.01) with a cosine decay to 0 over the run, batches of 32, on the first 1,400 images standardized
and each also shifted by one pixel up, down, left and right (7,000 rows; the other 397, written by other people,
test).  Channels-last: the images are (n, 8, 8, 1).  Prints one line: the backend, the test accuracy, the time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import portable_nn as pnn
from portable_nn.backends import get_backend


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits as (n, 8, 8, 1) images: the first 1,400 to train on, the other 397 to test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = digits.images.reshape(-1, 8, 8, 1)
    X = (X - X[:1400].mean()) / X[:1400].std()  # standardized with the training images' figures
    y = digits.target.astype(np.int64)
    return X[:1400], y[:1400], X[1400:], y[1400:]


def shifted(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and its four one-pixel shifts (up, down, left, right; the edge filled with the background)."""
    background = X.min()
    out = [X]
    for axis, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
        Z = np.roll(X, step, axis=axis)
        edge = [slice(None)] * 4
        edge[axis] = 0 if step == 1 else -1
        Z[tuple(edge)] = background
        out.append(Z)
    return np.concatenate(out), np.concatenate([y] * len(out))


def model(dtype: str = "float32", seed: int = 0, steps: int = 30 * 219) -> pnn.Model:
    """``steps``: the optimizer steps of the whole run (the cosine decay's length)."""
    m = pnn.Model()
    m.add(pnn.Conv2D(1, 16, 3, padding="same", seed=seed, dtype=dtype)).add(pnn.ReLU()).add(pnn.MaxPool2D(2))
    m.add(pnn.Flatten()).add(pnn.Dropout(0.4, seed=seed))
    m.add(pnn.Dense(4 * 4 * 16, 10, seed=seed + 1, dtype=dtype, initializer="glorot_uniform",
                    weight_regularizer_l2=3e-4)).add(pnn.Softmax())
    optimizer = pnn.Adam(0.01, schedule=pnn.schedules.CosineDecay(steps))
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=optimizer).finalize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="numpy")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shift", action=argparse.BooleanOptionalAction, default=True,
                   help="train on the images and their one-pixel shifts (default); --no-shift: the images only")
    args = p.parse_args()
    if args.epochs < 1:
        p.error("--epochs must be a positive integer")
    b = get_backend(args.backend)
    X, y, Xt, yt = data()
    if args.shift:
        X, y = shifted(X, y)
    m = model(args.dtype, args.seed, steps=args.epochs * -(-len(X) // 32))
    start = time.perf_counter()
    m.train(b.asarray(X.astype(args.dtype)), b.asarray(y), epochs=args.epochs, batch_size=32, seed=args.seed,
            verbose=False)
    seconds = time.perf_counter() - start
    _, accuracy = m.evaluate(b.asarray(Xt.astype(args.dtype)), b.asarray(yt))
    print(f"{args.backend} ({args.dtype}): test accuracy {accuracy:.4f} after {args.epochs} epochs, {seconds:.1f} s")


if __name__ == "__main__":
    main()
