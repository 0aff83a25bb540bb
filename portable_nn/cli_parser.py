"""The ``portable-nn`` command line: its commands, their options and the data sets they know.

What each command does is in ``cli.py``; this module only parses (``parser().parse_args(argv).command`` names
the command, ``cli.COMMANDS`` runs it).
"""

from __future__ import annotations

import argparse
from typing import Any

from .backends import BACKENDS

__all__ = ["DEFAULTS", "parser"]

DESCRIPTION = "portable-nn: train the book's examples, evaluate/predict with a saved model, check gradients."

# The book's settings per data set: epochs, learning rate, decay, batch size.
DEFAULTS: dict[str, dict[str, Any]] = {
    "spiral": {"epochs": 10000, "learning_rate": 0.05, "decay": 5e-7, "batch_size": None},
    "binary-spiral": {"epochs": 10000, "learning_rate": 0.001, "decay": 5e-7, "batch_size": None},
    "vertical": {"epochs": 1000, "learning_rate": 0.05, "decay": 5e-7, "batch_size": None},
    "sine": {"epochs": 10000, "learning_rate": 0.005, "decay": 1e-3, "batch_size": None},
    "digits": {"epochs": 30, "learning_rate": 0.01, "decay": 1e-4, "batch_size": 64},
}


def _at_least(low: int) -> Any:
    """An argparse type: an integer >= ``low`` (argparse names the option in its error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _version() -> str:
    from . import __version__

    return str(__version__)


def _common(s: argparse.ArgumentParser) -> None:
    """The options every computing command takes."""
    s.add_argument("--backend", default="numpy", choices=BACKENDS, help="array library (default numpy)")
    s.add_argument("--device", default=None, help="device, e.g. cuda or cuda:1 (default: the library's)")
    s.add_argument("--seed", type=_at_least(0), default=0, help="seed for weights, data and shuffling")


def _train_parser(sub: Any) -> None:
    t = sub.add_parser("train", help="train one of the book's examples")
    _common(t)
    t.add_argument("--dataset", default="spiral", choices=sorted(DEFAULTS))
    t.add_argument("--data", metavar="FILE", help="your own table: .csv (header detected), .npz (X, y) or .parquet")
    t.add_argument("--target", metavar="COLUMN", help="--data's target column, by name or index (default: the last)")
    t.add_argument("--delimiter", default=None, help="--data's CSV delimiter (default ',', tabs for .tsv)")
    t.add_argument("--task", choices=["classification", "regression"], default=None,
                   help="default: classes for strings or integers, regression for other numbers")
    t.add_argument("--validation-split", type=float, default=None, help="--data's held-out fraction (default 0.2)")
    t.add_argument("--epochs", type=_at_least(1), default=None, help="default: the book's for the data set")
    t.add_argument("--batch-size", type=_at_least(0), default=None, help="0 = full batch; default: the data set's")
    t.add_argument("--learning-rate", type=float, default=None)
    t.add_argument("--hidden", type=_at_least(1), default=64, help="neurons per hidden layer")
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    t.add_argument("--print-every", type=_at_least(1), default=None, help="steps between reports")
    t.add_argument("--save", metavar="PATH", help="save the trained model (.npz)")
    t.add_argument("--plot", metavar="PATH", help="write a PNG: decision boundary and training curves")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: mpiexec -n 2 portable-nn train --distributed")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="compile the training step (default: on JAX; --compile also on PyTorch)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="portable-nn", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"portable-nn {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    _train_parser(sub)

    e = sub.add_parser("evaluate", help="evaluate a saved model on a data set's test split")
    _common(e)
    e.add_argument("model")
    e.add_argument("--dataset", default=None, choices=sorted(DEFAULTS),
                   help="default: the one the model was trained on (stored in the file), else spiral")
    e.add_argument("--batch-size", type=_at_least(0), default=None)

    r = sub.add_parser("predict", help="predict with a saved model on inputs from a .npy or .csv file")
    _common(r)
    r.add_argument("model")
    r.add_argument("--input", required=True, help="a .npy or comma-separated file of shape (n, features); for a "
                   "model trained with --data, a table as its (a header is fine; the target column is ignored)")
    r.add_argument("--output", default=None, help="write predictions to a .csv or .npy file (default: print)")
    r.add_argument("--proba", action="store_true", help="the probabilities of each class, not the labels")
    r.add_argument("--delimiter", default=None, help="the input CSV's delimiter (default ',')")
    r.add_argument("--batch-size", type=_at_least(0), default=None)

    x = sub.add_parser("export", help="export a saved model's predict as an ONNX file (needs portable_nn[onnx])")
    x.add_argument("model", help="a model file saved by portable-nn train --save or Model.save")
    x.add_argument("output", help="the ONNX file to write (atomically)")
    x.add_argument("--dtype", default=None, choices=["float32", "float64"], help="default: the model's")
    x.add_argument("--batch", default="N", help="the batch dimension: a name (dynamic, default N) or a size")

    c = sub.add_parser("check", help="finite-difference gradient check of every layer and loss on a backend")
    _common(c)
    return p
