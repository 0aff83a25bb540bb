"""The training toolkit on scikit-learn's digits: He initialization, BatchNorm, a cosine schedule with warm-up,
EarlyStopping and ModelCheckpoint, and F1 scored every epoch.

    python examples/digits_toolkit.py                      # NumPy, seeds 0-4
    python examples/digits_toolkit.py --backend jax        # the same code, compiled by jax.jit
    python examples/digits_toolkit.py --seeds 1 --epochs 5 # a quick run (the test suite runs this)

Needs scikit-learn for the data (``pip install 'portable_nn[sklearn]'``).  Prints, per seed, the epoch
training stopped at, the best epoch (whose parameters and running statistics come back), the test
accuracy and macro F1 of the restored model and of the checkpoint file; then the mean and spread.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

import portable_nn as pnn
from portable_nn.backends import get_backend
from portable_nn.callbacks import EarlyStopping, ModelCheckpoint
from portable_nn.datasets import load_digits
from portable_nn.metrics import F1
from portable_nn.schedules import CosineDecay


def build(seed: int, steps: int) -> pnn.Model:
    """64 -> 128 (He) -> BatchNorm -> ReLU -> 10 (Glorot) -> Softmax; Adam on a cosine schedule with warm-up."""
    m = pnn.Model()
    m.add(pnn.Dense(64, 128, seed=seed, initializer="he_normal"))
    m.add(pnn.BatchNorm(128)).add(pnn.ReLU())
    m.add(pnn.Dense(128, 10, seed=seed + 1000, initializer="glorot_uniform")).add(pnn.Softmax())
    schedule = CosineDecay(total_steps=steps, warmup_steps=max(1, steps // 20), final_fraction=0.01)
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(3e-3, schedule=schedule))
    return m.finalize()


def run(backend: str, seed: int, epochs: int, batch_size: int, folder: Path) -> dict[str, float]:
    b = get_backend(backend)
    X, y, Xt, yt = load_digits(seed=0)
    steps = epochs * math.ceil(int(X.shape[0] * 0.8) / batch_size)  # validation_split leaves 80% to train on
    model = build(seed, steps)
    stop = EarlyStopping("val_loss", patience=15, restore_best=True)
    checkpoint = folder / f"digits-{seed}.npz"
    start = time.perf_counter()
    history = model.train(b.asarray(X), b.asarray(y), epochs=epochs, batch_size=batch_size, shuffle=True,
                          seed=seed, validation_split=0.2, print_every=10**9, verbose=False, metrics=[F1()],
                          callbacks=[stop, ModelCheckpoint(checkpoint, monitor="val_loss")])
    seconds = time.perf_counter() - start
    _, accuracy, scores = model.evaluate(b.asarray(Xt), b.asarray(yt), metrics=[F1()])
    saved = pnn.Model.load(checkpoint)  # NumPy: the best epoch's model, as saved while training
    _, saved_accuracy = saved.evaluate(Xt, yt)
    return {"stopped": stop.stopped_epoch or len(history.epoch), "best": stop.best_epoch or 0,
            "test_accuracy": accuracy, "test_f1": scores["f1"], "checkpoint_accuracy": saved_accuracy,
            "val_f1": history.metrics["val_f1"][(stop.best_epoch or len(history.epoch)) - 1], "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="numpy")
    p.add_argument("--seeds", type=int, default=5, help="how many seeds (0, 1, ...)")
    p.add_argument("--epochs", type=int, default=200, help="the most epochs (EarlyStopping usually ends sooner)")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    if args.seeds < 1 or args.epochs < 1 or args.batch_size < 1:
        p.error("--seeds, --epochs and --batch-size must be positive integers")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            r = run(args.backend, seed, args.epochs, args.batch_size, Path(folder))
            results.append(r)
            print(f"seed {seed}: stopped at epoch {r['stopped']}, best epoch {r['best']}, "
                  f"test accuracy {r['test_accuracy']:.4f}, test F1 {r['test_f1']:.4f}, "
                  f"checkpoint {r['checkpoint_accuracy']:.4f}, {r['seconds']:.1f} s")
    acc = np.array([r["test_accuracy"] for r in results])
    f1 = np.array([r["test_f1"] for r in results])
    print(f"{args.backend}, {len(results)} seeds: test accuracy {acc.mean():.4f} ± {acc.std():.4f}, "
          f"macro F1 {f1.mean():.4f} ± {f1.std():.4f}")


if __name__ == "__main__":
    main()
