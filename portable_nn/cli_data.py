"""``portable-nn train --data FILE`` and ``predict`` on your own tables (``tabular.py`` reads them).

Training standardizes the features (their means and deviations are saved with the model), holds out
``--validation-split`` of the shuffled rows, and stores what ``predict`` needs in the model's metadata: the
task, the class names, the feature and target column names.
"""

from __future__ import annotations

import csv
import sys
import time
from typing import Any

import numpy as np

from ._xp import to_numpy
from .accuracy import CategoricalAccuracy, RegressionAccuracy
from .activations import Linear, ReLU, Softmax
from .layers import Dense
from .losses import CategoricalCrossentropy, MeanSquaredError
from .model import Model
from .optimizers import Adam
from .tabular import Table, encode_target, read_table

__all__ = ["predict_table", "train_table", "write_predictions"]


def _model(task: str, n_features: int, n_classes: int, args: Any) -> Model:
    model = Model()
    d, hidden = args.dtype, args.hidden
    model.add(Dense(n_features, hidden, seed=args.seed, dtype=d, initializer="he_uniform")).add(ReLU())
    lr = args.learning_rate if args.learning_rate is not None else 0.01
    if task == "classification":
        model.add(Dense(hidden, n_classes, seed=args.seed + 1, dtype=d, initializer="glorot_uniform")).add(Softmax())
        model.set(loss=CategoricalCrossentropy(), optimizer=Adam(lr), accuracy=CategoricalAccuracy())
    else:
        model.add(Dense(hidden, 1, seed=args.seed + 1, dtype=d, initializer="glorot_uniform")).add(Linear())
        model.set(loss=MeanSquaredError(), optimizer=Adam(lr), accuracy=RegressionAccuracy())
    return model.finalize()


def _checked_split(path: str, y: np.ndarray, classes: list[str] | None, split: float) -> None:
    if not 0.0 <= split < 1.0:
        raise ValueError(f"--validation-split {split}: expected a fraction in [0, 1)")
    if split and classes is not None:
        counts = np.bincount(y, minlength=len(classes))
        few = [(classes[i], int(c)) for i, c in enumerate(counts) if c < 2]
        if few:
            raise ValueError(f"{path}: too few rows per class to hold some out for validation: "
                             + ", ".join(f"class {name!r} has {n}" for name, n in few)
                             + " (--validation-split 0 trains on every row)")


def train_table(args: Any, backend: Any, progress_for: Any) -> tuple[Model, Any, np.ndarray, np.ndarray]:
    """Train on ``args.data``: ``(model, history, X, y)`` (the host features, standardized, and targets)."""
    table = read_table(args.data, target=args.target, delimiter=args.delimiter)
    task, y, classes = encode_target(args.data, table.target or [], args.task)
    order = np.random.default_rng(args.seed).permutation(len(y))
    X, y = table.features[order], y[order]
    split = 0.2 if args.validation_split is None else args.validation_split
    _checked_split(args.data, y, classes, split)
    mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    X = ((X - mean) / std).astype(args.dtype)
    model = _model(task, X.shape[1], len(classes or []), args)
    model.metadata.update({"data": args.data, "task": task, "classes": classes, "features": table.names,
                           "target": table.target_name, "mean": mean.tolist(), "std": std.tolist()})
    targets = y if task == "classification" else y.reshape(-1, 1).astype(args.dtype)
    epochs = args.epochs if args.epochs is not None else 100
    batch_size = (args.batch_size if args.batch_size is not None else 32) or None
    progress = progress_for(epochs * -(-int(len(y) * (1 - split)) // (batch_size or len(y))))
    start = time.perf_counter()
    try:
        history = model.train(backend.asarray(X), backend.asarray(targets), epochs=epochs, batch_size=batch_size,
                              validation_split=split or None, shuffle=True, seed=args.seed, verbose=False,
                              callback=progress, print_every=args.print_every or 1)
    finally:
        progress.close()
    kind = f"classification, {len(classes or [])} classes {classes}" if classes else "regression"
    print(f"{args.data}: {len(y)} rows, {X.shape[1]} features, target {table.target_name!r}, {kind}; "
          f"{epochs} epochs in {time.perf_counter() - start:.2f} s")
    line = f"train: loss {history.loss[-1]:.4g}, acc {history.accuracy[-1]:.4f}"
    if history.val_loss:
        line += f" | validation: loss {history.val_loss[-1]:.4g}, acc {history.val_accuracy[-1]:.4f}"
    print(line)
    return model, history, X, y


def predict_table(path: str, model: Model, delimiter: str | None) -> np.ndarray:
    """A table's features for a model trained with ``--data``: its target column (by name) dropped, the
    columns checked against the training's, standardized as in training."""
    meta = model.metadata
    table: Table = read_table(path, delimiter=delimiter, need_target=False, ignore=meta.get("target"))
    names = meta.get("features") or []
    if table.features.shape[1] != len(names):
        raise ValueError(f"{path}: {table.features.shape[1]} feature columns {table.names}; the model was trained "
                         f"on {len(names)}: {names}")
    scaled: np.ndarray = ((table.features - np.asarray(meta["mean"])) / np.asarray(meta["std"])).astype(np.float32)
    return scaled


def write_predictions(args: Any, model: Model, out: Any, backend: Any) -> None:
    """Labels (the user's class names), or ``--proba`` probabilities, to stdout, CSV or ``.npy``."""
    out = np.asarray(to_numpy(out))
    classes = model.metadata.get("classes")
    if args.proba:
        values, header = out, [str(c) for c in classes] if classes else None
    else:
        preds = np.asarray(to_numpy(model.layers[-1].predictions(backend.asarray(out))))
        values = np.asarray(classes, dtype=object)[preds.reshape(-1)] if classes else preds
        header = [model.metadata.get("target") or "prediction"] if classes else None
    if args.output and args.output.endswith(".csv"):
        with open(args.output, "w", newline="") as f:
            writer = csv.writer(f)
            if header:
                writer.writerow(header)
            writer.writerows(values.reshape(len(values), -1).tolist())
        print(f"wrote {len(values)} predictions to {args.output}")
    elif args.output:
        written = args.output if args.output.endswith(".npy") else args.output + ".npy"  # what np.save writes
        np.save(written, values.astype(str) if values.dtype == object else values, allow_pickle=False)
        print(f"wrote {len(values)} predictions to {written}")
    else:
        for row in values.reshape(len(values), -1):
            print(" ".join(str(v) for v in row), file=sys.stdout)
