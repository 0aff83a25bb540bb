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
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _xp
from .accuracy import Accuracy
from .activations import Activation  # noqa: F401 - registers every activation class
from .files import MAX_BYTES, atomic_write, read_bounded
from .layers import Layer
from .losses import Loss
from .optimizers import Optimizer

__all__ = ["FORMAT_VERSION", "MAX_BYTES", "ModelParts", "assign_arrays", "assign_parameters", "load_parameters",
           "read_model", "save_model", "save_parameters"]

FORMAT = "portable_nn"
FORMAT_VERSION = 1
HEADER = "__portable_nn__"
MAX_HEADER = 1 << 20  # 1 MiB of JSON is far beyond any real architecture


@dataclass
class ModelParts:
    """What a model file holds: built objects and the checked host arrays."""

    layers: list[Any]
    loss: Any
    accuracy: Any
    optimizer: Any
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]


def checked_metadata(metadata: Any, where: str) -> dict[str, Any]:
    """A model's metadata: a JSON object with string keys (e.g. ``{"dataset": "digits"}``), at most 64 KiB."""
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise TypeError(f"{where}: metadata must be a dict with string keys, got {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: metadata must hold only JSON values (str, finite numbers, bool, None, "
                        f"lists, dicts): {exc}") from None
    if len(text) > 1 << 16:
        raise ValueError(f"{where}: metadata takes {len(text)} bytes as JSON; at most 65536")
    return dict(metadata)


def _spec(obj: Any) -> dict[str, Any] | None:
    return None if obj is None else {"type": type(obj).__name__, "config": obj.get_config()}


def _arrays(trainable: list[Any], with_state: bool) -> dict[str, np.ndarray]:
    arrays = {}
    for i, layer in enumerate(trainable):
        for p in layer.parameters():
            arrays[f"{i}/{p.name}"] = np.ascontiguousarray(_xp.to_numpy(p.value))
            if with_state:
                for key, value in p.state.items():
                    arrays[f"{i}/{p.name}_{key}"] = np.ascontiguousarray(_xp.to_numpy(value))
        for name, value in layer.buffers().items():  # running statistics: part of what predict computes with
            arrays[f"{i}/{name}"] = np.ascontiguousarray(_xp.to_numpy(value))
    return arrays


def _write(path: Any, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    header = dict(header, arrays={k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in arrays.items()})
    payload: dict[str, Any] = {HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    payload.update(arrays)
    atomic_write(path, lambda f: np.savez(f, **payload))


def _checked_array(name: str, value: np.ndarray, spec: Any) -> np.ndarray:
    """A stored array as its header declares it: shape, float dtype, finite values, non-negative caches."""
    if not isinstance(spec, dict) or list(value.shape) != spec.get("shape") or value.dtype.name != spec.get("dtype"):
        raise ValueError(f"array {name!r} is {value.dtype.name}{list(value.shape)}, header says {spec}")
    if value.dtype.name not in _xp.FLOAT_NAMES:
        raise ValueError(f"array {name!r} has dtype {value.dtype.name}")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"array {name!r} holds NaN or infinite values")
    if name.endswith("_cache") and np.any(value < 0):
        raise ValueError(f"optimizer state {name!r} holds negative values (a cache of squares is >= 0)")
    if name.endswith("/running_var") and np.any(value < 0):
        raise ValueError(f"array {name!r} holds negative values (a variance is >= 0)")
    return value


class _Newer(ValueError):
    """A well-formed file of a format this version does not know yet."""


def _read(path: Any, kind: str, max_bytes: int = MAX_BYTES) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Header and arrays of a file, every size, shape and dtype checked; ValueError otherwise.

    Bounded: a regular file of at most ``max_bytes``, whose zip members
    declare at most ``max_bytes`` in all, before anything is decompressed.
    """
    path = os.fspath(path)
    raw = read_bounded(path, max_bytes)  # OSError (missing, unreadable, not a file) propagates
    try:
        declared = sum(info.file_size for info in zipfile.ZipFile(_io.BytesIO(raw)).infolist())
        if declared > max_bytes:
            raise ValueError(f"its members inflate to {declared} bytes, more than the limit of {max_bytes} "
                             "(pass max_bytes= to allow it)")
        with np.load(_io.BytesIO(raw), allow_pickle=False) as npz:
            if HEADER not in npz.files:
                raise ValueError("no portable_nn header")
            header_bytes = npz[HEADER]
            if header_bytes.dtype != np.uint8 or header_bytes.ndim != 1 or header_bytes.size > MAX_HEADER:
                raise ValueError("malformed header")
            header = json.loads(header_bytes.tobytes().decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError("not a portable_nn file")
            version = header.get("version")
            if type(version) is int and version > FORMAT_VERSION:
                raise _Newer(f"{path}: saved by a newer version of portable_nn (format {version}); this is format "
                             f"{FORMAT_VERSION}: upgrade portable_nn to read it")
            if type(version) is not int or version != FORMAT_VERSION:
                raise ValueError(f"format version {header.get('version')!r}, this library reads {FORMAT_VERSION}")
            specs = header.get("arrays")
            if not isinstance(specs, dict) or set(specs) != set(npz.files) - {HEADER}:
                raise ValueError("the array list does not match the header")
            arrays = {name: _checked_array(name, npz[name], spec) for name, spec in specs.items()}
    except _Newer:
        raise
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid portable_nn {kind} file ({exc})") from None
    except Exception as exc:  # a damaged zip/npy raises many kinds; all mean "bad file"
        raise ValueError(f"{path}: not a valid portable_nn {kind} file ({type(exc).__name__}: {exc})") from None
    if header.get("kind") != kind and not (kind == "parameters" and header.get("kind") == "model"):
        raise ValueError(f"{path}: a portable_nn {header.get('kind')!r} file, expected a {kind} file")
    return header, arrays


def assign_parameters(trainable: list[Any], parameters: list[Any], owner: str) -> None:
    """Assign ``[(weight, bias), ...]``; each array moves to where its parameter lives, in its dtype."""
    if len(parameters) != len(trainable):
        raise ValueError(
            f"{owner}: the model has {len(trainable)} trainable layers, got {len(parameters)} parameter sets"
        )
    for i, (layer, given) in enumerate(zip(trainable, parameters, strict=True)):
        params, values = layer.parameters(), tuple(given)
        if len(values) != len(params):
            raise ValueError(f"{owner}: layer {i} takes {len(params)} arrays, got {len(values)}")
        for p, value in zip(params, values, strict=True):
            if tuple(value.shape) != tuple(p.value.shape):
                raise ValueError(f"{owner}: layer {i} {p.name} must have shape {tuple(p.value.shape)}, "
                                 f"got {tuple(value.shape)}")
            if not _xp.array_api_compat.is_array_api_obj(value) or not _xp.namespace(value).isdtype(
                    value.dtype, "real floating"):
                raise TypeError(f"{owner}: layer {i} {p.name} must be a float32/float64 array, "
                                f"got {getattr(value, 'dtype', type(value).__name__)}")
            current = p.value
            xp = _xp.namespace(current)
            # a copy: the model owns its arrays (another model's, or the caller's, are never shared)
            p.value = xp.asarray(_xp.move(value, xp, _xp.array_device(current), current.dtype), copy=True)


def assign_arrays(trainable: list[Any], arrays: dict[str, np.ndarray], path: Any, with_state: bool) -> None:
    """Parameters (and optimizer state) from a file's arrays, after checking they fit the layers."""
    expected = {f"{i}/{p.name}": tuple(p.value.shape) for i, layer in enumerate(trainable) for p in layer.parameters()}
    params = {k: v for k, v in arrays.items() if k in expected}
    if set(params) != set(expected) or any(tuple(v.shape) != expected[k] for k, v in params.items()):
        got = {k: tuple(v.shape) for k, v in arrays.items() if "_" not in k.split("/")[-1]}
        raise ValueError(f"{path}: parameters of another architecture: the model needs {expected}, the file has {got}")
    buffers = {f"{i}/{name}": (layer, name, tuple(value.shape)) for i, layer in enumerate(trainable)
               for name, value in layer.buffers().items()}
    for key, (layer, name, shape) in buffers.items():
        value = arrays.get(key)
        if value is None or tuple(value.shape) != shape:
            stored = None if value is None else tuple(value.shape)
            raise ValueError(f"{path}: {type(layer).__name__}'s {name} must be stored as {key} of shape {shape}, "
                             f"the file has {stored}")
    assign_parameters(trainable, [tuple(params[f"{i}/{p.name}"] for p in layer.parameters())
                                  for i, layer in enumerate(trainable)], f"{path}")
    for key, (layer, name, _) in buffers.items():
        current = getattr(layer, name)
        xp = _xp.namespace(current)
        setattr(layer, name, xp.asarray(_xp.move(arrays[key], xp, _xp.array_device(current), current.dtype),
                                        copy=True))
    if not with_state:
        return
    taken = set(expected) | set(buffers)
    for i, layer in enumerate(trainable):
        for p in layer.parameters():
            prefix = f"{i}/{p.name}_"  # the optimizer's state by its own names: "0/weight_momentum", ...
            for name, value in arrays.items():
                if not name.startswith(prefix) or name in taken:
                    continue
                key = name[len(prefix):]
                if value.shape != expected[f"{i}/{p.name}"]:
                    raise ValueError(f"{path}: optimizer state {i}/{p.name}_{key} has shape {value.shape}")
                current = p.value
                p.set_state(key, _xp.move(value, _xp.namespace(current), _xp.array_device(current), current.dtype))


def save_parameters(trainable: list[Any], path: Any) -> None:
    """Only the trainable parameters (load them into a model of the same architecture)."""
    _write(path, {"format": FORMAT, "version": FORMAT_VERSION, "kind": "parameters"}, _arrays(trainable, False))


def load_parameters(trainable: list[Any], path: Any) -> None:
    _, arrays = _read(path, "parameters")
    assign_arrays(trainable, arrays, path, with_state=False)


def save_model(path: Any, layers: list[Any], trainable: list[Any], loss: Any, accuracy: Any, optimizer: Any,
               metadata: dict[str, Any] | None = None) -> None:
    """Architecture (JSON), parameters, optimizer state and the user's metadata in one ``.npz``."""
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "model",
        "layers": [_spec(layer) for layer in layers],
        "loss": _spec(loss),
        "accuracy": _spec(accuracy),
        "optimizer": None if optimizer is None else dict(_spec(optimizer) or {}, iterations=optimizer.iterations),
        "metadata": checked_metadata(metadata or {}, "Model.save"),
    }
    _write(path, header, _arrays(trainable, True))


def _check_declared_size(path: Any, specs: list[Any], arrays: dict[str, np.ndarray]) -> None:
    """The sizes the JSON declares (``n_inputs * n_neurons``) fit the stored arrays: checked before any
    layer draws its initial weights, so a tiny file cannot ask for gigabytes."""
    declared = 0
    for spec in specs:
        config = spec.get("config") if isinstance(spec, dict) else None
        if isinstance(config, dict) and {"n_inputs", "n_neurons"} <= set(config):
            n_in, n_out = config["n_inputs"], config["n_neurons"]
            if type(n_in) is not int or type(n_out) is not int:
                raise ValueError(f"{path}: invalid layer sizes {n_in!r}, {n_out!r}")
            declared += n_in * n_out
    stored = sum(a.size for a in arrays.values())
    if declared > stored:
        raise ValueError(f"{path}: the architecture declares {declared} weights but the file stores {stored} values")


def _build(registry: dict[str, Any], spec: Any, what: str, path: Any) -> Any:
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") not in registry or not isinstance(spec.get("config", {}), dict):
        raise ValueError(f"{path}: unknown {what} {spec!r}; known: {sorted(registry)}")
    try:
        return registry[spec["type"]](**spec.get("config", {}))
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: float() of a huge JSON integer
        raise ValueError(f"{path}: invalid {what} ({type(exc).__name__}: {exc})") from None


def read_model(path: Any, max_bytes: int = MAX_BYTES) -> ModelParts:
    """The objects and arrays of a model file; every class comes from a registry, never from the file."""
    header, arrays = _read(path, "model", max_bytes)
    specs = header.get("layers")
    if not isinstance(specs, list) or not specs or not all(isinstance(spec, dict) for spec in specs):
        raise ValueError(f"{path}: the model file lists no layers, or a layer that is not an object")
    _check_declared_size(path, specs, arrays)
    layers = [_build(Layer.registry, spec, "layer", path) for spec in specs]
    optimizer = None
    opt_spec = header.get("optimizer")
    if opt_spec is not None:
        if not isinstance(opt_spec, dict):
            raise ValueError(f"{path}: unknown optimizer {opt_spec!r}; known: {sorted(Optimizer.registry)}")
        optimizer = _build(Optimizer.registry, {k: opt_spec.get(k) for k in ("type", "config")}, "optimizer", path)
        iterations = opt_spec.get("iterations", 0)
        if type(iterations) is not int or not 0 <= iterations < 2**53:
            raise ValueError(f"{path}: invalid optimizer iterations {iterations!r}")
        optimizer.iterations = iterations
        optimizer.pre_update_params()
    try:
        metadata = checked_metadata(header.get("metadata", {}), f"{path}")  # absent in files before metadata
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return ModelParts(layers, _build(Loss.registry, header.get("loss"), "loss", path),
                      _build(Accuracy.registry, header.get("accuracy"), "accuracy", path), optimizer, arrays,
                      metadata)
