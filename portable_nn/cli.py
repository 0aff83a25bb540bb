"""``portable-nn``: train the book's examples, evaluate/predict with a saved model, check gradients.

    portable-nn train                               # spiral 2-64-3, Adam, NumPy, seconds
    portable-nn train --backend torch --device cuda --dataset digits --save m.npz --plot m.png
    portable-nn evaluate m.npz --dataset digits
    portable-nn predict m.npz --input X.npy --output y.npy
    portable-nn train --data iris.csv --target species --save m.npz   # your own table
    portable-nn predict m.npz --input new.csv --proba --output p.csv
    portable-nn check --backend jax

Errors are one line on stderr (exit status 2), not a traceback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from . import datasets
from .accuracy import Accuracy, CategoricalAccuracy, RegressionAccuracy
from .activations import Linear, ReLU, Sigmoid, Softmax
from .backends import BackendUnavailable, get_backend
from .cli_parser import DEFAULTS, parser
from .files import read_bounded
from .layers import Dense
from .losses import BinaryCrossentropy, CategoricalCrossentropy, Loss, MeanSquaredError
from .model import Model
from .optimizers import Adam
from .plotting import plot
from .training import compiled

__all__ = ["main"]

def load_dataset(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Host arrays ``X, y, X_test, y_test`` for a data set name."""
    if name == "spiral":
        return (*datasets.spiral_data(100, 3, seed=seed), *datasets.spiral_data(100, 3, seed=seed + 1))
    if name == "binary-spiral":
        return (*datasets.spiral_data(100, 2, seed=seed), *datasets.spiral_data(100, 2, seed=seed + 1))
    if name == "vertical":
        return (*datasets.vertical_data(100, 3, seed=seed), *datasets.vertical_data(100, 3, seed=seed + 1))
    if name == "sine":
        X, y = datasets.sine_data(1000)
        return X, y, X, y
    if name == "digits":
        X, y, Xt, yt = datasets.load_digits(seed=seed)
        return X, y, Xt, yt
    raise ValueError(f"unknown dataset {name!r}")


def build_model(dataset: str, n_features: int, n_classes: int, args: Any) -> Model:
    """The book's architecture for each data set."""
    d = args.dtype
    hidden = args.hidden
    model = Model()
    loss: Loss
    accuracy: Accuracy
    if dataset == "sine":
        model.add(Dense(1, hidden, weight_scale=0.1, seed=args.seed, dtype=d)).add(ReLU())
        model.add(Dense(hidden, hidden, weight_scale=0.1, seed=args.seed + 1, dtype=d)).add(ReLU())
        model.add(Dense(hidden, 1, weight_scale=0.1, seed=args.seed + 2, dtype=d)).add(Linear())
        loss, accuracy = MeanSquaredError(), RegressionAccuracy()
    elif dataset == "binary-spiral":
        model.add(Dense(n_features, hidden, seed=args.seed, dtype=d,
                        weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4)).add(ReLU())
        model.add(Dense(hidden, 1, seed=args.seed + 1, dtype=d)).add(Sigmoid())
        loss, accuracy = BinaryCrossentropy(), CategoricalAccuracy(binary=True)
    else:
        scale = 0.1 if dataset == "digits" else 0.01
        model.add(Dense(n_features, hidden, seed=args.seed, dtype=d, weight_scale=scale)).add(ReLU())
        model.add(Dense(hidden, n_classes, seed=args.seed + 1, dtype=d, weight_scale=scale)).add(Softmax())
        loss, accuracy = CategoricalCrossentropy(), CategoricalAccuracy()
    cfg = DEFAULTS[dataset]
    lr = args.learning_rate if args.learning_rate is not None else cfg["learning_rate"]
    model.set(loss=loss, optimizer=Adam(learning_rate=lr, decay=cfg["decay"]), accuracy=accuracy)
    return model.finalize()


class Progress:
    """A tqdm bar with live loss/accuracy, or plain lines when tqdm is missing."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.done = 0
        if not quiet:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self.bar = None

    def __call__(self, info: dict[str, Any]) -> None:
        if self.quiet:
            return
        text = {"loss": f"{info['loss']:.4g}", "acc": f"{info['accuracy']:.3f}", "lr": f"{info['learning_rate']:.4g}"}
        if self.bar is not None:
            self.bar.set_postfix(text, refresh=False)  # before the update, which redraws: the line is current
            self.bar.update(info["global_step"] - self.done)
        elif info["global_step"] * 10 // info["total_steps"] > self.done * 10 // info["total_steps"]:
            # without tqdm: a line at each tenth of the run, not at every report
            print(f"epoch {info['epoch']} step {info['step']}: " + ", ".join(f"{k} {v}" for k, v in text.items()),
                  file=sys.stderr)
        self.done = info["global_step"]

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _folder_exists(option: str, path: str | None) -> None:
    """A file can be written at ``path``: its folder exists (said before any work, the same for every command)."""
    if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise OSError(f"{option} {path}: the folder does not exist")


def _outputs_writable(args: Any) -> None:
    """``--save`` and ``--plot`` can be written: checked before training, not after."""
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        _folder_exists(option, path)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'portable_nn[plot]'")


def _plot_path(path: str) -> str:
    """What matplotlib writes for ``path``: a name without an extension gets ``.png``."""
    return path if os.path.splitext(path)[1] else path + ".png"


def _interrupted(model: Any, args: Any, exc: KeyboardInterrupt) -> int:
    """Ctrl-C during training: the model reached at the step boundary is saved (``--save``); exit 130."""
    where = str(exc).split("the model is at ", 1)[-1].split(" (")[0] if "the model is at" in str(exc) else ""
    print(f"portable-nn: interrupted{' at ' + where if where else ''}", file=sys.stderr)
    if args.save and where:
        model.metadata["dataset"] = args.dataset
        model.save(args.save)
        print(f"portable-nn: saved the model reached at {where} to {args.save}", file=sys.stderr)
    return 130


def cmd_train_data(args: Any) -> int:
    """``train --data FILE``: your own table (``cli_data.py``)."""
    from .cli_data import train_table

    _outputs_writable(args)
    backend = get_backend(args.backend, args.device)
    model, history, X, y = train_table(args, backend, lambda steps: Progress(steps, args.quiet))
    _save_and_plot(args, model, history, X, y, args.data)
    return 0


def _save_and_plot(args: Any, model: Model, history: Any, X: np.ndarray, y: np.ndarray, name: str) -> None:
    """``--save`` and ``--plot`` after training."""
    if args.save:
        model.save(args.save)
        print(f"saved model to {args.save}")
    if args.plot:
        plot(model, history, X, y, name, args.plot)
        print(f"saved plot to {_plot_path(args.plot)}")


def cmd_train(args: Any) -> int:
    if args.data:  # your own table
        return cmd_train_data(args)
    backend = get_backend(args.backend, args.device)
    X, y, Xt, yt = load_dataset(args.dataset, args.seed)
    n_classes = int(y.max()) + 1 if y.ndim == 1 else y.shape[1]
    model = build_model(args.dataset, X.shape[1], n_classes, args)
    cfg = DEFAULTS[args.dataset]
    _outputs_writable(args)
    epochs = args.epochs if args.epochs is not None else cfg["epochs"]
    batch_size = args.batch_size if args.batch_size is not None else cfg["batch_size"]
    batch_size = batch_size or None
    steps = epochs * (math.ceil(X.shape[0] / batch_size) if batch_size else 1)
    print_every = args.print_every if args.print_every is not None else max(1, steps // 100)
    Xb, yb = backend.asarray(X), backend.asarray(y)
    rank, ranks = _mpi_rank() if args.distributed else (0, 1)
    compile_mode = ("auto" if not args.distributed else False) if args.compile is None else args.compile
    compiler = compiled.choose("train", array_namespace(Xb), compile_mode)
    progress = Progress(steps, args.quiet or rank != 0)
    start = time.perf_counter()
    try:
        history = model.train(Xb, yb, epochs=epochs, batch_size=batch_size, print_every=print_every,
                              shuffle=batch_size is not None, seed=args.seed, verbose=False, callback=progress,
                              compile=compile_mode, distributed=args.distributed or None)
    except KeyboardInterrupt as exc:
        progress.close()
        return _interrupted(model, args, exc) if rank == 0 else 130
    finally:
        progress.close()
    if rank != 0:  # every rank holds the same model: rank 0 reports and saves
        return 0
    seconds = time.perf_counter() - start
    test_loss, test_acc = model.evaluate(backend.asarray(Xt), backend.asarray(yt), batch_size=batch_size,
                                         compile=compile_mode)
    how = f", compiled with {compiler}, compile time included" if compiler else ""
    how += f", data-parallel on {ranks} MPI ranks" if args.distributed else ""
    print(f"{args.dataset} on {args.backend} ({backend.device}): {epochs} epochs, {steps} steps in {seconds:.2f} s "
          f"({1e3 * seconds / steps:.3f} ms/step{how})")
    print(f"train: loss {history.loss[-1]:.4g}, acc {history.accuracy[-1]:.4f} | "
          f"test: loss {test_loss:.4g}, acc {test_acc:.4f}")
    model.metadata["dataset"] = args.dataset  # evaluate's default, and named when data do not fit
    _save_and_plot(args, model, history, X, y, args.dataset)
    return 0


def _mpi_rank() -> tuple[int, int]:
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("--distributed needs mpi4py and an MPI: pip install 'portable_nn[mpi]', then "
                          "mpiexec -n 2 portable-nn train --distributed") from None
    return int(MPI.COMM_WORLD.Get_rank()), int(MPI.COMM_WORLD.Get_size())


@contextlib.contextmanager
def _naming_the_training_data(args: Any, trained_on: Any) -> Iterator[None]:
    """Data that do not fit the model: the error says which data set the model was trained on."""
    try:
        yield
    except ValueError as exc:
        if isinstance(trained_on, str) and trained_on != getattr(args, "dataset", None):
            raise ValueError(f"{exc} ({args.model} was trained on --dataset {trained_on})") from None
        raise


def cmd_evaluate(args: Any) -> int:
    backend = get_backend(args.backend, args.device)
    model = Model.load(args.model)
    trained_on = model.metadata.get("dataset")
    if args.dataset is None:
        args.dataset = trained_on if trained_on in DEFAULTS else "spiral"
    _, _, X, y = load_dataset(args.dataset, args.seed)
    with _naming_the_training_data(args, trained_on):
        loss, acc = model.evaluate(backend.asarray(X), backend.asarray(y), batch_size=args.batch_size or None)
    print(f"{args.dataset} test data on {args.backend}: loss {loss:.4g}, acc {acc:.4f}")
    return 0


def cmd_predict(args: Any) -> int:
    _folder_exists("predict --output", args.output)
    backend = get_backend(args.backend, args.device)
    model = Model.load(args.model)
    from .cli_data import predict_table, write_predictions

    X = predict_table(args.input, model, args.delimiter) if "features" in model.metadata else _numbers(args.input)
    with _naming_the_training_data(args, model.metadata.get("dataset")):
        out = model.predict(backend.asarray(X), batch_size=args.batch_size or None)
    write_predictions(args, model, out, backend)
    return 0


def _numbers(path: str) -> np.ndarray:
    """A ``.npy`` or comma-separated file of numbers as float32 rows (for the built-in data sets' models)."""
    raw = read_bounded(path)  # a regular file of bounded size: never /dev/zero or a FIFO
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty CSV: NumPy's warning becomes our one-line error
        try:
            if path.endswith(".npy"):
                X = np.load(io.BytesIO(raw), allow_pickle=False)
            else:
                X = np.loadtxt(io.StringIO(raw.decode("utf-8", errors="replace")), delimiter=",", ndmin=2)
        except UserWarning as exc:
            raise ValueError(f"{path}: {exc}") from None
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise ValueError(f"{path}: expected real numbers, got dtype {X.dtype}")
    X = np.asarray(X, dtype=np.float32)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{path}: the input contains NaN or infinite values")
    return X


def cmd_check(args: Any) -> int:
    from .checking import check_all

    backend = get_backend(args.backend, args.device)
    results = check_all(lambda a: backend.asarray(a, np.float64), seed=args.seed)
    width = max(len(r.name) for r in results)
    print(f"gradient check on {args.backend} ({backend.device}), float64, central differences")
    print(f"{'layer / loss':<{width}}  {'max rel. error':>14}  result")
    for r in results:
        print(f"{r.name:<{width}}  {r.max_error:>14.2e}  {'pass' if r.ok else 'FAIL'}")
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_export(args: Any) -> int:
    _folder_exists("export", args.output)
    model = Model.load(args.model)
    batch: str | int = int(args.batch) if args.batch.lstrip("-").isdigit() else args.batch
    if isinstance(batch, int) and batch < 1:
        raise ValueError(f"export --batch {args.batch}: a fixed batch size must be >= 1 (or a name, e.g. N)")
    model.export_onnx(args.output, dtype=args.dtype, batch=batch)
    print(f"wrote {args.output}: ONNX, input 'input' ({batch}, {model.network.n_inputs()}), output 'output', "
          f"{args.dtype or model.network.dtype()}")
    return 0


# The commands by name (the parser, ``cli_parser.py``, only names them).
COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "export": cmd_export,
            "check": cmd_check}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is reported, not warned
            return int(COMMANDS[args.command](args))
    except BrokenPipeError:  # `portable-nn check | head -1`: the reader left; no traceback, no message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except MemoryError:
        print("portable-nn: error: out of memory (a smaller --hidden or --batch-size?)", file=sys.stderr)
        return 2
    except BackendUnavailable as exc:
        print(f"portable-nn: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, RuntimeError, FloatingPointError, OSError, ImportError) as exc:
        print(f"portable-nn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("portable-nn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
