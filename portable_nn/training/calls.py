"""What ``Model.train``, ``evaluate`` and ``predict`` do: check the arguments and the data once, place the
model, pick the runner (eager, ``torch.compile``, ``jax.jit`` blocks; MPI through a reducer) and hand over to
the engine (``runners.fit``).  ``Model`` only composes: it calls these with itself."""

from __future__ import annotations

import importlib
import math
import warnings
from typing import Any

import array_api_compat

from .. import _xp
from .. import distributed as distributed_
from .. import metrics as metrics_
from .._typing import Array
from ..callbacks import CallbackList
from . import compiled
from .loop import History, Scored, batches, prepared_targets
from .runners import fit
from .step import Plan, evaluate_sums
from .validate import check_data, check_features, check_pair, known_rows, positive_int, verify
from .weights import host_weights, sample_weights

__all__ = ["evaluate", "predict", "train"]


def split(what: str, X: Any, y: Any, fraction: Any, validation_data: Any) -> tuple[Any, Any, Any]:
    """The last ``fraction`` of the rows as validation data (the order they come in)."""
    if validation_data is not None:
        raise ValueError(f"{what}: give validation_data or validation_split, not both")
    known_rows(what.removeprefix("Model."), "X", X)
    fraction = float(fraction)
    n = int(X.shape[0]) if hasattr(X, "shape") else 0
    held = math.ceil(n * fraction) if 0.0 < fraction < 1.0 else 0
    if not 0.0 < fraction < 1.0 or held in (0, n):
        raise ValueError(f"{what}: validation_split must leave rows on both sides of the split; got {fraction!r} "
                         f"of {n} rows")
    return X[:n - held, ...], y[:n - held, ...], (X[n - held:, ...], y[n - held:, ...])


def check(model: Any, what: str, X: Any, y: Any, values: bool = True) -> dict[str, Any]:
    """``X`` and ``y`` fit the model (``ValueError``/``TypeError`` naming what does not); without ``values``,
    the value checks come back unread (``validate.check_data``)."""
    net = model.network
    return check_data(what, X, y, n_inputs=net.input_shape(), n_outputs=net.n_outputs(), dtype=net.dtype(),
                      target_kind=model.loss.target_kind, values=values)


def window_check(model: Any, what: str) -> Any:
    """The value checks of streamed Dask data, run on each window as it is read (the data are read once a
    pass: no pass of their own).  A bad value stops training at the window that holds it."""
    return lambda x, y: check(model, what, x, y)


def _checked(model: Any, X: Any, y: Any, *, epochs: Any, batch_size: Any, print_every: Any, validation_data: Any,
             validation_split: Any, sample_weight: Any, class_weight: Any) -> tuple[Any, ...]:
    """The arguments checked and the data split: ``(X, y, validation_data, weights, epochs, batch_size,
    print_every)``; ``weights``: per-row weights on the host, or None."""
    epochs = positive_int("Model.train", "epochs", epochs)
    batch_size = positive_int("Model.train", "batch_size", batch_size, allow_none=True)
    print_every = positive_int("Model.train", "print_every", print_every, allow_none=True)
    if sample_weight is not None:
        sample_weight = host_weights("Model.train", sample_weight, int(X.shape[0]))
    if validation_split is not None:
        X, y, validation_data = split("Model.train", X, y, validation_split, validation_data)
        if sample_weight is not None:
            sample_weight = sample_weight[:int(X.shape[0])]
    check(model, "train", X, y, values=not _xp.is_lazy(X))  # Dask: checked as the windows stream
    if validation_data is not None:
        Xv, yv = check_pair("Model.train", "validation_data", validation_data)
        if _xp.is_lazy(Xv):  # evaluated every epoch: brought into memory once, and checked there
            Xv, yv = Xv.compute(), yv.compute()
            validation_data = (Xv, yv)
    # class weights ("balanced") from the rows trained on, after the split
    weights = sample_weights("Model.train", X, y, sample_weight, class_weight,
                             target_kind=model.loss.target_kind, n_outputs=model.network.n_outputs())
    if validation_data is not None:
        check(model, "train (validation_data)", Xv, yv)
        if not _xp.is_lazy(X) and not _xp.is_lazy(Xv):  # Dask data stream into their blocks' library
            _xp.check_same_place(Xv, X, "Model.train: validation_data", held="the training data are")
    return X, y, validation_data, weights, epochs, batch_size, print_every


def check_batches(model: Any, n: int, batch_size: int | None, ranks: int = 1) -> None:
    """Every batch (every rank's shard of it) has as many rows as each layer's ``min_batch`` needs: checked
    before the first step, so a one-row batch for BatchNorm is refused before anything is trained."""
    need = max((getattr(layer, "min_batch", 1) for layer in model.layers), default=1)
    if need <= 1:
        return
    sizes = {n} if not batch_size else {min(batch_size, n), n % batch_size or min(batch_size, n)}
    shards = {b // ranks + (1 if r < b % ranks else 0) for b in sizes for r in range(ranks)} - {0}
    if min(shards) < need:
        layer = next(layer for layer in model.layers if getattr(layer, "min_batch", 1) == need)
        where = f"{ranks} ranks' shards of " if ranks > 1 else ""
        raise ValueError(f"{type(layer).__name__}.forward: training needs batches of more than one row; "
                         f"batch_size={batch_size} leaves {where}a batch of {min(shards)} row(s) of the {n} rows; "
                         "choose a batch_size that leaves no one-row batch (nor one-row shards across ranks)")


def _settings(X: Any, y: Any, validation_data: Any, options: dict[str, Any]) -> dict[str, Any]:
    """What every rank of a data-parallel call must agree on, described without checking anything."""
    def shape(a: Any) -> str:
        return f"{tuple(getattr(a, 'shape', ()))} {getattr(a, 'dtype', type(a).__name__)}"

    described = {"X": shape(X), "y": shape(y)}
    if isinstance(validation_data, tuple | list) and len(validation_data) == 2:
        described["validation_data"] = f"{shape(validation_data[0])}, {shape(validation_data[1])}"
    # not compared: callbacks (objects), verbose (rank 0 prints anyway), seed (rank 0's is used)
    skip = ("callback", "callbacks", "distributed", "verbose", "seed")
    return described | {k: repr(v) for k, v in options.items() if k not in skip}


def train(model: Any, plan: Plan, X: Array, y: Array, *, validation_data: Any, validation_split: Any,
          compile: Any, distributed: Any, callbacks: Any, sample_weight: Any, class_weight: Any, metrics: Any,
          epochs: Any, batch_size: Any, print_every: Any, **options: Any) -> History:
    """``Model.train``: see its docstring.  Data-parallel, every rank's checks and settings are compared
    first (``DataParallel.agree``): a failure on one rank is an error on all of them, never a hang."""
    parallel = distributed_.resolve(distributed)
    raw = _settings(X, y, validation_data, {"epochs": epochs, "batch_size": batch_size, "print_every": print_every,
                                            "validation_split": validation_split, "compile": compile,
                                            "sample_weight": sample_weight is not None, "metrics": metrics,
                                            "class_weight": class_weight, **options})
    error: BaseException | None = None
    try:
        X, y, validation_data, weights, epochs, batch_size, print_every = _checked(
            model, X, y, epochs=epochs, batch_size=batch_size, print_every=print_every,
            validation_data=validation_data, validation_split=validation_split, sample_weight=sample_weight,
            class_weight=class_weight)
        compiler = _runner(model, X, batch_size, parallel, compile)
        checked_metrics = metrics_.check_metrics("train", metrics or [], model.loss, model.network.n_outputs())
    except Exception as exc:
        if parallel is None:
            raise
        error = exc
    if parallel is not None:
        parallel.agree(raw, error)
    kwargs: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "print_every": print_every,
                              "validation_data": validation_data, "metrics": checked_metrics, **options}
    if kwargs["shuffle"] is None:  # the default: mini-batches are shuffled (Keras's default; the book's was order)
        kwargs["shuffle"] = batch_size is not None and batch_size < int(X.shape[0])
    if _xp.is_lazy(X):
        kwargs["window_check"] = window_check(model, "train")
    return _run(model, plan, X, y, weights, parallel, compiler, callbacks, kwargs)


def _runner(model: Any, X: Any, batch_size: int | None, parallel: Any, compile: Any) -> str | None:
    """The compiler to train with (None: eager), after the batches are checked against the layers."""
    # Dask streams the same batches (a partial batch completed across windows): its row count is known here
    check_batches(model, int(X.shape[0]), batch_size, parallel.size if parallel is not None else 1)
    compiler = compiled.choose("train", _xp.namespace(X), False if parallel and compile == "auto" else compile)
    if parallel is not None and compiler is not None:
        raise ValueError("Model.train: distributed training runs the eager step; pass compile=False")
    return compiler


def _run(model: Any, plan: Plan, X: Array, y: Array, weights: Any, parallel: Any, compiler: str | None,
         callbacks: Any, kwargs: dict[str, Any]) -> History:
    """Place the model, send the weights, run the callbacks' begin and end around the engine."""
    hooks = CallbackList(callbacks, model)
    model.network.place(X)
    plan.accuracy.init(y)
    if weights is not None:  # sent once, in the model's dtype, where X lives
        xp = _xp.namespace(X)
        plan.weights = xp.asarray(weights, dtype=_xp.float_dtype(xp, model.network.dtype()),
                                  device=_xp.array_device(X))
    hooks.begin()
    try:
        if parallel is not None:
            history = _train_distributed(model, plan, parallel, X, y, callbacks=hooks, **kwargs)
        else:
            history = fit(plan, X, y, runner=compiler or "eager", callbacks=hooks, **kwargs)
    finally:
        plan.weights = None
    hooks.end()
    return history


def _train_distributed(model: Any, plan: Plan, parallel: Any, X: Array, y: Array, *, seed: int | None,
                       verbose: bool, **kwargs: Any) -> History:
    assert plan.optimizer is not None
    if _xp.is_lazy(X) or array_api_compat.is_jax_array(X):  # immutable or lazy: no in-place all-reduce
        raise TypeError(f"Model.train: distributed training runs on NumPy, PyTorch and CuPy arrays, "
                        f"got {_xp.describe(X)}")
    parallel.broadcast(model.network, plan.optimizer)
    parallel.reseed_dropout(model.network)
    seed = parallel.seed(seed)
    model.rank = parallel.rank  # ModelCheckpoint writes on rank 0 only, for this call
    try:
        return fit(plan, X, y, seed=seed, verbose=verbose and parallel.rank == 0, parallel=parallel, **kwargs)
    except BaseException as exc:
        # met by this rank alone (a callback's bug, out of memory): the others would wait in the next collective
        if parallel.size > 1 and not distributed_.is_collective(exc):
            parallel.abort(exc)
        raise
    finally:
        model.rank = 0  # a later ordinary train on this process is a process of its own


def evaluate(model: Any, plan: Plan, X: Array, y: Array, *, batch_size: Any, compile: Any, metrics: Any) -> Any:
    """``Model.evaluate``: see its docstring.  On Dask the data are read once: the value checks, the sums and
    the metrics' counts are computed in one graph run."""
    batch_size = positive_int("Model.evaluate", "batch_size", batch_size, allow_none=True)
    lazy = _xp.is_lazy(X)
    checks = check(model, "evaluate", X, y, values=not lazy)
    xp = _xp.namespace(X)
    compiler = compiled.choose("evaluate", xp, compile)
    model.network.place(X)
    plan.accuracy.init(y)
    y_loss, y_acc = prepared_targets(plan, xp, y)
    if compiler == "jax":
        sums = compiled.evaluate_jax(plan, X, y_loss, y_acc, batch_size)
    else:  # PyTorch evaluates eagerly: torch.compile of inference costs more than it saves here
        sums = evaluate_sums(plan, X, y_loss, y_acc, batches(int(X.shape[0]), batch_size))
    scored = None
    if metrics is not None:
        checked = metrics_.check_metrics("evaluate", metrics, model.loss, model.network.n_outputs())
        scored = Scored(plan, checked, [("", X, y)], batch_size)
    counts = scored.counts(plan) if scored is not None else []
    if lazy:
        sums, counts, ok = _computed_once(list(sums), counts, checks)
        verify("evaluate", X, ok, model.network.n_outputs())
    loss, acc = _xp.to_host(xp, list(sums))
    if scored is None:
        return loss, acc
    return loss, acc, scored.values(counts)


def _computed_once(sums: list[Any], counts: list[Any], checks: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """Dask: the sums, the metrics' counts (nested lists) and the checks, computed in one graph run."""
    dask: Any = importlib.import_module("dask")
    flat = [a for per_set in counts for per_metric in per_set for a in per_metric]
    with warnings.catch_warnings():  # bad values (1e300 in a float32 model) warn in the sums: verify names them
        warnings.simplefilter("ignore", RuntimeWarning)
        values = dask.compute(*sums, *flat, *checks.values())
    sums_host, rest = list(values[:len(sums)]), iter(values[len(sums):len(sums) + len(flat)])
    counts_host = [[[next(rest) for _ in per_metric] for per_metric in per_set] for per_set in counts]
    return sums_host, counts_host, dict(zip(checks, values[len(sums) + len(flat):], strict=True))


def predict(model: Any, X: Array, *, batch_size: Any, compile: Any) -> Array:
    """``Model.predict``: see its docstring."""
    if not model.layers:
        raise RuntimeError("Model.predict: the model has no layers")
    batch_size = positive_int("Model.predict", "batch_size", batch_size, allow_none=True)
    network = model.network
    xp = check_features("predict", X, network.input_shape())
    compiler = compiled.choose("predict", xp, compile)
    if X.shape[0] == 0:
        batch_size = None  # one (empty) batch: an empty result of the right width
    network.place(X)
    if compiler == "jax" and X.shape[0] and model.plan is not None:
        return compiled.predict_jax(model.plan, X, batch_size)
    outputs = [network.infer(X[s, ...]) for s in batches(int(X.shape[0]), batch_size)]
    return outputs[0] if len(outputs) == 1 else xp.concat(outputs, axis=0)
