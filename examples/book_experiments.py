"""The book's experiments, reproduced through portable_nn.Model (full length).

    python examples/book_experiments.py                 # NumPy
    python examples/book_experiments.py --backend torch  # the same code on PyTorch

Only the array conversion (``backend.asarray``) changes between backends.
"""

from __future__ import annotations

import argparse
import time

import portable_nn as pnn
from portable_nn.backends import get_backend
from portable_nn.datasets import load_digits, sine_data, spiral_data


def spiral(b, epochs):
    X, y = spiral_data(100, 3, seed=0)
    Xt, yt = spiral_data(100, 3, seed=1)
    m = pnn.Model()
    m.add(pnn.Dense(2, 64, seed=0)).add(pnn.ReLU()).add(pnn.Dense(64, 3, seed=1)).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(learning_rate=0.05, decay=5e-7),
          accuracy=pnn.CategoricalAccuracy()).finalize()
    h = m.train(b.asarray(X), b.asarray(y), epochs=epochs, print_every=epochs, verbose=False)
    return h, m.evaluate(b.asarray(Xt), b.asarray(yt))


def binary_spiral(b, epochs):
    X, y = spiral_data(100, 2, seed=0)
    Xt, yt = spiral_data(100, 2, seed=1)
    m = pnn.Model()
    m.add(pnn.Dense(2, 64, seed=0, weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4)).add(pnn.ReLU())
    m.add(pnn.Dense(64, 1, seed=1)).add(pnn.Sigmoid())
    m.set(loss=pnn.BinaryCrossentropy(), optimizer=pnn.Adam(decay=5e-7),
          accuracy=pnn.CategoricalAccuracy(binary=True)).finalize()
    h = m.train(b.asarray(X), b.asarray(y), epochs=epochs, print_every=epochs, verbose=False)
    return h, m.evaluate(b.asarray(Xt), b.asarray(yt))


def sine(b, epochs):
    X, y = sine_data(1000)
    m = pnn.Model()
    m.add(pnn.Dense(1, 64, weight_scale=0.1, seed=0)).add(pnn.ReLU())
    m.add(pnn.Dense(64, 64, weight_scale=0.1, seed=1)).add(pnn.ReLU())
    m.add(pnn.Dense(64, 1, weight_scale=0.1, seed=2)).add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.Adam(learning_rate=0.005, decay=1e-3),
          accuracy=pnn.RegressionAccuracy()).finalize()
    h = m.train(b.asarray(X), b.asarray(y), epochs=epochs, print_every=epochs, verbose=False)
    return h, m.evaluate(b.asarray(X), b.asarray(y))


def digits(b, epochs):
    X, y, Xt, yt = load_digits()
    m = pnn.Model()
    m.add(pnn.Dense(64, 128, seed=0, weight_scale=0.1)).add(pnn.ReLU())
    m.add(pnn.Dense(128, 10, seed=1, weight_scale=0.1)).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(learning_rate=0.01, decay=1e-4)).finalize()
    h = m.train(b.asarray(X), b.asarray(y), epochs=epochs, batch_size=64, shuffle=True, seed=0,
                print_every=10**9, verbose=False)
    return h, m.evaluate(b.asarray(Xt), b.asarray(yt))


EXPERIMENTS = {"spiral 2-64-3, Adam(0.05, decay=5e-7)": (spiral, 10000),
               "binary spiral 2-64-1, sigmoid + BCE, L2 5e-4": (binary_spiral, 10000),
               "sine 1-64-64-1, MSE, Adam(0.005, decay=1e-3)": (sine, 10000),
               "digits 64-128-10, batch 64": (digits, 30)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="numpy")
    p.add_argument("--device", default=None)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the book's epochs")
    args = p.parse_args()
    b = get_backend(args.backend, args.device)
    print("| experiment | epochs | train loss | train acc | test loss | test acc | time |")
    print("|---|---|---|---|---|---|---|")
    for name, (fn, full_epochs) in EXPERIMENTS.items():
        epochs = max(1, int(full_epochs * args.scale))
        t0 = time.perf_counter()
        h, (loss, acc) = fn(b, epochs)
        print(f"| {name} | {epochs} | {h.loss[-1]:.3g} | {h.accuracy[-1]:.3f} | {loss:.3g} | {acc:.3f} | "
              f"{time.perf_counter() - t0:.1f} s |")


if __name__ == "__main__":
    main()
