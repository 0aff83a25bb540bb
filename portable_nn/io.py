"""Model and parameter files: JSON architecture + arrays in one ``.npz``.

Never pickle: arrays are read with ``allow_pickle=False`` and the
architecture is JSON mapped onto a fixed registry of classes, so a file can
never run code.  Writes go to a temporary file renamed over the target
(atomic: a crash mid-save leaves the previous file intact).  Every entry's
shape and dtype is checked against the JSON before anything is assigned;
any malformed, truncated or foreign file is a ``ValueError``.
"""

from __future__ import annotations

import io as _io
import json
import os
import tempfile
from typing import Any

import numpy as np

from . import _xp
from .accuracy import CategoricalAccuracy, RegressionAccuracy
from .activations import Linear, ReLU, Sigmoid, Softmax
from .layers import OPTIMIZER_STATE, Dense, Dropout
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    MeanAbsoluteError,
    MeanSquaredError,
    SoftmaxCategoricalCrossentropy,
)
from .optimizers import SGD, Adagrad, Adam, RMSprop

__all__ = ["save_model", "load_model", "save_parameters", "load_parameters", "FORMAT_VERSION"]

FORMAT = "portable_nn"
FORMAT_VERSION = 1
HEADER = "__portable_nn__"
MAX_HEADER = 1 << 20  # 1 MiB of JSON is far beyond any real architecture

LAYERS = {c.__name__: c for c in (Dense, Dropout, ReLU, Sigmoid, Softmax, Linear)}
LOSSES = {c.__name__: c for c in (CategoricalCrossentropy, BinaryCrossentropy, MeanSquaredError,
                                  MeanAbsoluteError, SoftmaxCategoricalCrossentropy)}
OPTIMIZERS = {c.__name__: c for c in (SGD, Adagrad, RMSprop, Adam)}
ACCURACIES = {c.__name__: c for c in (CategoricalAccuracy, RegressionAccuracy)}


def _spec(obj: Any) -> dict[str, Any] | None:
    return None if obj is None else {"type": type(obj).__name__, "config": obj.get_config()}


def _trainable(model: Any) -> list[Any]:
    return [layer for layer in model.layers if getattr(layer, "trainable", False)]


def _arrays(model: Any, with_state: bool) -> dict[str, np.ndarray]:
    arrays = {}
    for i, layer in enumerate(_trainable(model)):
        names = layer.state_attributes() if with_state else layer.parameter_names
        for name in names:
            arrays[f"{i}/{name}"] = np.ascontiguousarray(_xp.to_numpy(getattr(layer, name)))
    return arrays


def _write(path: Any, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    header = dict(header, arrays={k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in arrays.items()})
    payload = {HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    payload.update(arrays)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".portable_nn-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(path: Any, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Header and arrays of a file, every shape/dtype checked; ValueError otherwise."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # OSError (missing, unreadable) propagates as is
        raw = f.read()
    try:
        with np.load(_io.BytesIO(raw), allow_pickle=False) as npz:
            if HEADER not in npz.files:
                raise ValueError("no portable_nn header")
            header_bytes = npz[HEADER]
            if header_bytes.dtype != np.uint8 or header_bytes.ndim != 1 or header_bytes.size > MAX_HEADER:
                raise ValueError("malformed header")
            header = json.loads(header_bytes.tobytes().decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError("not a portable_nn file")
            if header.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {header.get('version')!r}, this library reads {FORMAT_VERSION}")
            specs = header.get("arrays")
            if not isinstance(specs, dict) or set(specs) != set(npz.files) - {HEADER}:
                raise ValueError("the array list does not match the header")
            arrays = {}
            for name, spec in specs.items():
                value = npz[name]
                if list(value.shape) != spec.get("shape") or value.dtype.name != spec.get("dtype"):
                    raise ValueError(f"array {name!r} is {value.dtype.name}{list(value.shape)}, header says {spec}")
                if value.dtype.name not in _xp.FLOAT_NAMES:
                    raise ValueError(f"array {name!r} has dtype {value.dtype.name}")
                arrays[name] = value
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid portable_nn {kind} file ({exc})") from None
    except Exception as exc:  # a damaged zip/npy raises many kinds; all mean "bad file"
        raise ValueError(f"{path}: not a valid portable_nn {kind} file ({type(exc).__name__}: {exc})") from None
    if header.get("kind") != kind and not (kind == "parameters" and header.get("kind") == "model"):
        raise ValueError(f"{path}: a portable_nn {header.get('kind')!r} file, expected a {kind} file")
    return header, arrays


def _assign(model: Any, arrays: dict[str, np.ndarray], path: Any, with_state: bool) -> None:
    layers = _trainable(model)
    expected = {f"{i}/{n}": tuple(getattr(layer, n).shape) for i, layer in enumerate(layers)
                for n in layer.parameter_names}
    params = {k: v for k, v in arrays.items() if k in expected}
    if set(params) != set(expected) or any(tuple(v.shape) != expected[k] for k, v in params.items()):
        got = {k: tuple(v.shape) for k, v in arrays.items() if "_" not in k.split("/")[-1]}
        raise ValueError(f"{path}: parameters of another architecture: the model needs {expected}, the file has {got}")
    model.set_parameters([tuple(params[f"{i}/{n}"] for n in layer.parameter_names) for i, layer in enumerate(layers)])
    if with_state:
        for i, layer in enumerate(layers):
            for n in layer.parameter_names:
                for s in OPTIMIZER_STATE:
                    value = arrays.get(f"{i}/{n}_{s}")
                    if value is not None:
                        if value.shape != expected[f"{i}/{n}"]:
                            raise ValueError(f"{path}: optimizer state {i}/{n}_{s} has shape {value.shape}")
                        current = getattr(layer, n)
                        setattr(layer, f"{n}_{s}", _xp.move(value, _xp.namespace(current),
                                                            _xp.array_device(current), current.dtype))


def save_parameters(model: Any, path: Any) -> None:
    """Only the trainable parameters (load them into a model of the same architecture)."""
    _write(path, {"format": FORMAT, "version": FORMAT_VERSION, "kind": "parameters"}, _arrays(model, False))


def load_parameters(model: Any, path: Any) -> None:
    _, arrays = _read(path, "parameters")
    _assign(model, arrays, path, with_state=False)


def save_model(model: Any, path: Any) -> None:
    opt = model.optimizer
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "model",
        "layers": [_spec(layer) for layer in model.layers],
        "loss": _spec(model.loss),
        "accuracy": _spec(model.accuracy),
        "optimizer": None if opt is None else dict(_spec(opt), iterations=opt.iterations),
    }
    _write(path, header, _arrays(model, True))


def _build(registry: dict[str, Any], spec: Any, what: str, path: Any) -> Any:
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") not in registry or not isinstance(spec.get("config", {}), dict):
        raise ValueError(f"{path}: unknown {what} {spec!r}; known: {sorted(registry)}")
    try:
        return registry[spec["type"]](**spec.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid {what} {spec!r} ({exc})") from None


def load_model(path: Any) -> Any:
    """A finalized ``Model`` with host NumPy parameters (placed at the first forward)."""
    from .model import Model

    header, arrays = _read(path, "model")
    layers = header.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{path}: the model file lists no layers")
    model = Model()
    for spec in layers:
        model.add(_build(LAYERS, spec, "layer", path))
    model.set(loss=_build(LOSSES, header.get("loss"), "loss", path),
              accuracy=_build(ACCURACIES, header.get("accuracy"), "accuracy", path))
    opt_spec = header.get("optimizer")
    if opt_spec is not None:
        optimizer = _build(OPTIMIZERS, {k: opt_spec.get(k) for k in ("type", "config")} if isinstance(opt_spec, dict) else opt_spec, "optimizer", path)
        iterations = opt_spec.get("iterations", 0)
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"{path}: invalid optimizer iterations {iterations!r}")
        optimizer.iterations = iterations
        optimizer.pre_update_params()
        model.set(optimizer=optimizer)
    if model.loss is not None:
        try:
            model.finalize()
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    _assign(model, arrays, path, with_state=True)
    return model
